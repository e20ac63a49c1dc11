"""Per-IP rate limiting of incoming DHT queries, in a small bounded map (sans-I/O: the time is passed in)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`rate` queries per second per IP on average, bursts of up to `burst`; at most `max_tracked` IPs remembered."""

    rate: float = 20.0
    burst: float = 60.0
    max_tracked: int = 4096


class RateLimiter:
    """A token bucket per source IP, kept as one float: the time at which the IP's bucket will be full again (the
    "theoretical arrival time" of GCRA). An IP whose bucket is full is forgotten, so the map holds only the IPs that
    queried in roughly the last `burst / rate` seconds; when it is full anyway, the longest-tracked IP goes."""

    __slots__ = ("_full_at", "_next_prune", "limit")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._full_at: dict[str, float] = {}
        self._next_prune = 16

    def __len__(self) -> int:
        return len(self._full_at)

    def allow(self, ip: str, now: float) -> bool:
        """Take one token for `ip`; False when its bucket is empty (drop the query)."""
        limit = self.limit
        table = self._full_at
        full_at = table.get(ip, now)
        if full_at < now:
            full_at = now
        if full_at - now > (limit.burst - 1.0) / limit.rate:
            return False
        if ip not in table:
            if len(table) >= self._next_prune:
                self.prune(now)
                self._next_prune = max(16, 2 * len(table))
            if len(table) >= limit.max_tracked:
                del table[next(iter(table))]
        table[ip] = full_at + 1.0 / limit.rate
        return True

    def prune(self, now: float) -> int:
        """Forget IPs whose bucket is full again; returns how many."""
        table = self._full_at
        full = [ip for ip, full_at in table.items() if full_at <= now]
        for ip in full:
            del table[ip]
        return len(full)
