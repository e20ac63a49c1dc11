"""LEDBAT (RFC 6817) as uTP runs it: the base delay over wrapping µs timestamps, growth under the target,
shrinking above it, halving on a loss, one packet after a timeout."""

from __future__ import annotations

from peerloom.torrent.utp_ledbat import BASE_BUCKET, BASE_HISTORY, TARGET_DELAY_US, DelayHistory, Ledbat

MSS = 1000


def test_base_delay_is_the_lowest_sample_and_handles_wraparound() -> None:
    h = DelayHistory()
    assert h.add(5_000_000, 0.0) == 0
    assert h.add(5_030_000, 1.0) == 30_000
    assert h.add(4_990_000, 2.0) == 0 and h.base == 4_990_000
    wrap = DelayHistory()
    wrap.add(2**32 - 1000, 0.0)
    assert wrap.add(500, 1.0) == 1500  # past the 32-bit wrap, still 1.5 ms above the base


def test_base_delay_forgets_old_minutes() -> None:
    h = DelayHistory()
    h.add(1000, 0.0)
    for minute in range(1, BASE_HISTORY + 1):
        h.add(50_000, minute * BASE_BUCKET)
    assert h.base == 50_000  # the low sample from 10+ minutes ago no longer counts


def test_window_grows_below_target_and_shrinks_above() -> None:
    cc = Ledbat(MSS, 1 << 20)
    start = cc.window
    for i in range(20):
        cc.on_ack(MSS, 10_000, None, float(i), window_limited=True)
    assert cc.window > start and cc.slow_start
    grown = cc.window
    for i in range(20):
        cc.on_ack(MSS, 10_000 + 2 * TARGET_DELAY_US, None, 20.0 + i, window_limited=True)
    assert cc.window < grown and not cc.slow_start


def test_an_idle_sender_does_not_grow_its_window() -> None:
    cc = Ledbat(MSS, 1 << 20)
    start = cc.window
    cc.on_ack(MSS, 10_000, None, 0.0, window_limited=False)
    assert cc.window == start


def test_loss_halves_and_timeout_restarts_from_one_packet() -> None:
    cc = Ledbat(MSS, 1 << 20)
    for i in range(10):
        cc.on_ack(10 * MSS, 1000, None, float(i), window_limited=True)
    before = cc.window
    cc.on_loss()
    assert cc.window == before // 2 and not cc.slow_start
    cc.on_timeout()
    assert cc.window == MSS and cc.slow_start and cc.ssthresh >= 2 * MSS
