"""LEDBAT congestion control (RFC 6817) as uTP uses it (BEP 29, libtorrent's defaults), sans-I/O.

The sender's one-way delay comes back in every packet's `timestamp_difference`: the peer's receive clock minus
our send clock, in microseconds modulo 2^32. The clocks are not synchronised, so only the difference to the
lowest delay seen lately (the base delay, RFC 6817 section 3.4.2) means anything: it is the queuing delay our
traffic adds. The window grows while that is under the 100 ms target and shrinks above it; a loss halves it.
"""

from __future__ import annotations

from collections import deque

TARGET_DELAY_US = 100_000  # RFC 6817 section 3.3 and libtorrent's utp_target_delay: 100 ms
GAIN_BYTES_PER_RTT = 3000  # libtorrent's utp_gain_factor: the most the window grows per round trip at zero delay
LOSS_FACTOR = 0.5  # libtorrent's utp_loss_multiplier: 50 %
BASE_HISTORY = 10  # RFC 6817 section 3.4.2: the base delay is the minimum over 10 one-minute buckets
BASE_BUCKET = 60.0  # seconds
_WRAP = 1 << 32
_HALF = 1 << 31


class DelayHistory:
    """The base delay: the lowest one-way delay sample of the last `BASE_HISTORY` minutes, with the 32-bit
    wrap-around of microsecond timestamps taken into account."""

    def __init__(self) -> None:
        self._buckets: deque[int] = deque(maxlen=BASE_HISTORY)
        self._bucket_start = 0.0

    @property
    def base(self) -> int | None:
        return min(self._buckets, key=self._key) if self._buckets else None

    def _key(self, sample: int) -> int:
        """Orders samples by their distance below the newest bucket's value, so that wrapped values compare right."""
        return (sample - self._buckets[-1] + _HALF) % _WRAP

    def add(self, sample: int, now: float) -> int:
        """Records a raw delay sample and returns the queuing delay it shows (sample minus base, >= 0), in µs."""
        if not self._buckets or now - self._bucket_start >= BASE_BUCKET:
            self._buckets.append(sample)
            self._bucket_start = now
        elif (sample - self._buckets[-1]) % _WRAP >= _HALF:  # lower than this minute's minimum
            self._buckets[-1] = sample
        base = self.base
        assert base is not None
        delay = (sample - base) % _WRAP
        return 0 if delay >= _HALF else delay


class Ledbat:
    """The congestion window in bytes: slow start until the first loss or the target delay, then LEDBAT's
    linear controller (RFC 6817 section 2.4.2, with libtorrent's gain of at most 3000 bytes per round trip)."""

    def __init__(self, mss: int, max_window: int) -> None:
        self.mss = mss
        self.max_window = max_window
        self.cwnd = float(2 * mss)  # RFC 6817 section 2.4.2: INIT_CWND of 2 packets
        self.ssthresh = float(max_window)
        self.slow_start = True
        self.history = DelayHistory()
        self.queuing_delay = 0  # µs, the latest

    @property
    def window(self) -> int:
        return int(self.cwnd)

    def on_ack(self, acked_bytes: int, delay_sample: int | None, rtt_us: int | None, now: float,
               window_limited: bool) -> None:
        """New data was acknowledged: `delay_sample` is the packet's timestamp_difference (None when the peer had
        nothing to measure), `window_limited` whether the sender was held back by the window (an idle sender's
        window does not grow, as in libtorrent's cwnd_full)."""
        if delay_sample is not None:
            delay = self.history.add(delay_sample, now)
            if rtt_us is not None:
                delay = min(delay, rtt_us)  # a one-way delay is never above the round trip: clock drift otherwise
            self.queuing_delay = delay
        if not window_limited or acked_bytes <= 0:
            return
        off_target = (TARGET_DELAY_US - self.queuing_delay) / TARGET_DELAY_US
        gain = GAIN_BYTES_PER_RTT * off_target * acked_bytes / max(self.cwnd, acked_bytes)
        if self.slow_start:
            if off_target <= 0 or self.cwnd >= self.ssthresh:
                self.slow_start = False
            else:
                gain = max(gain, acked_bytes)  # doubles per round trip
        self.cwnd = min(max(self.cwnd + gain, float(self.mss)), float(self.max_window))

    def on_loss(self) -> None:
        """A packet was lost (fast retransmit): halve the window, once per window of data (the caller's rule)."""
        self.ssthresh = max(self.cwnd * LOSS_FACTOR, 2.0 * self.mss)
        self.cwnd = max(self.cwnd * LOSS_FACTOR, float(self.mss))
        self.slow_start = False

    def on_timeout(self) -> None:
        """The retransmission timer fired: back to one packet, slow start up to half the old window (TCP's rule,
        which libtorrent follows)."""
        self.ssthresh = max(self.cwnd * LOSS_FACTOR, 2.0 * self.mss)
        self.cwnd = float(self.mss)
        self.slow_start = True
