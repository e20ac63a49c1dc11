"""Transfer rate limits: token buckets the engine draws from before it requests or sends a block.

Downloads are limited at the request: a block is asked for only when its bytes are in the bucket, so
a peer never sends us more than the limit allows (plus what was already in flight). Uploads are limited
at the send: a queued request waits until its bytes are in the bucket. Each torrent has its own pair
of buckets and the node one global pair; a transfer takes from both.
"""

from __future__ import annotations

BURST_SECONDS = 1.0  # a bucket holds at most one second of its rate


class TokenBucket:
    """Bytes that may move now, refilled continuously at `rate` bytes/s (0: unlimited). Sans-I/O: the
    caller passes the current time."""

    __slots__ = ("_last", "_rate", "_tokens")

    def __init__(self, rate: int = 0) -> None:
        self._rate = 0
        self._tokens = 0.0
        self._last: float | None = None
        self.rate = rate

    @property
    def rate(self) -> int:
        return self._rate

    @rate.setter
    def rate(self, value: int) -> None:
        if value < 0:
            raise ValueError("a rate limit cannot be negative")
        self._rate = int(value)
        self._tokens = min(self._tokens, float(self._rate) * BURST_SECONDS)

    @property
    def limited(self) -> bool:
        return self._rate > 0

    def available(self, now: float) -> float:
        """Bytes that may move at `now` (infinite when unlimited)."""
        if not self._rate:
            return float("inf")
        if self._last is not None:
            self._tokens = min(self._rate * BURST_SECONDS, self._tokens + self._rate * max(0.0, now - self._last))
        self._last = now
        return self._tokens

    def take(self, amount: int) -> None:
        """Spend `amount` bytes (the bucket may go below zero by the last block; it refills from there)."""
        if self._rate:
            self._tokens -= amount


def allowance(now: float, *buckets: TokenBucket) -> float:
    """Bytes that may move now under all of the buckets."""
    return min(b.available(now) for b in buckets)


def spend(amount: int, *buckets: TokenBucket) -> None:
    for b in buckets:
        b.take(amount)
