"""Token buckets: refill at the rate, at most one second of burst, unlimited at 0."""

from __future__ import annotations

import math

import pytest

from peerloom.torrent.ratelimit import TokenBucket, allowance, spend


def test_unlimited_bucket_always_allows() -> None:
    bucket = TokenBucket(0)
    assert not bucket.limited and math.isinf(bucket.available(0.0))
    bucket.take(10**12)
    assert math.isinf(bucket.available(1.0))


def test_refills_at_the_rate_up_to_one_second_of_burst() -> None:
    bucket = TokenBucket(1000)
    assert bucket.available(10.0) == 0  # starts empty: no burst on the first request
    assert bucket.available(10.5) == pytest.approx(500)
    bucket.take(400)
    assert bucket.available(10.6) == pytest.approx(200)
    assert bucket.available(100.0) == pytest.approx(1000)  # capped at one second


def test_debt_is_paid_back_before_more_is_allowed() -> None:
    bucket = TokenBucket(1000)
    bucket.available(0.0)
    bucket.take(16384)  # one block more than the bucket holds
    assert bucket.available(10.0) < 0
    assert bucket.available(16.4) == pytest.approx(16.0, abs=1e-6)


def test_over_a_long_run_the_rate_is_the_limit() -> None:
    bucket, moved, now = TokenBucket(5_000_000), 0, 0.0
    while now < 10.0:
        now += 0.003
        while bucket.available(now) >= 16384:
            bucket.take(16384)
            moved += 16384
    assert moved == pytest.approx(50_000_000, rel=0.01)


def test_lowering_the_rate_drops_the_surplus_and_negative_rates_are_refused() -> None:
    bucket = TokenBucket(1000)
    bucket.available(0.0)
    bucket.available(5.0)
    bucket.rate = 100
    assert bucket.available(5.0) == pytest.approx(100)
    with pytest.raises(ValueError):
        bucket.rate = -1


def test_a_transfer_takes_from_every_bucket() -> None:
    node, torrent = TokenBucket(1000), TokenBucket(0)
    node.available(0.0)
    assert allowance(1.0, node, torrent) == pytest.approx(1000)
    spend(600, node, torrent)
    assert allowance(1.0, node, torrent) == pytest.approx(400)
