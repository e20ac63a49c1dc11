"""The exit's policy (sans-I/O): who may use it, to which ports and addresses, how fast.

Destinations are checked AFTER name resolution, on each address the name resolved to, and the exit connects only
to an address that passed (never resolving again): a name that resolves to 127.0.0.1 is refused like the literal,
and a second lookup cannot swap in another address (DNS rebinding). By default every address that is not global
unicast is refused: loopback, private (RFC 1918, ULA), link-local, shared (RFC 6598), documentation, unspecified,
reserved and multicast, also inside an IPv4-mapped IPv6 address; `allow_private` lifts that for labs and tests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from peerloom.identity import PeerId
from peerloom.torrent.ratelimit import TokenBucket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public_address(ip: IPAddress) -> bool:
    """Global unicast: what an exit reaches by default."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(ip.ipv4_mapped)
        if ip.sixtofour is not None or ip.teredo is not None:  # tunnels whose inner address we do not police
            return False
    return ip.is_global and not ip.is_multicast


@dataclass
class ExitPolicy:
    """Who may use this node as an exit and where to. No allowed peer: the node is not an exit."""

    allowed_peers: frozenset[PeerId] = frozenset()
    ports: frozenset[int] = frozenset()  # empty: every port
    allow_private: bool = False  # reach loopback / private / link-local destinations (labs and tests only)
    rate: int = 0  # bytes/s per peer and direction (0: unlimited)

    @classmethod
    def build(cls, peers: Iterable[str | PeerId] = (), ports: Iterable[int] = (), *, allow_private: bool = False,
              rate: int = 0) -> ExitPolicy:
        """From the text forms settings and commands carry; raises ValueError on a bad peer id or port."""
        allowed = frozenset(p if isinstance(p, PeerId) else PeerId.from_string(p) for p in peers)
        port_set = frozenset(int(p) for p in ports)
        if any(not 0 < p < 65536 for p in port_set):
            raise ValueError("a port is 1-65535")
        if rate < 0:
            raise ValueError("a rate limit cannot be negative")
        return cls(allowed, port_set, allow_private, rate)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExitPolicy:
        """From `as_json()`'s shape (the API's and the saved form)."""
        return cls.build(data.get("allowed_peers", ()), data.get("ports", ()),
                         allow_private=bool(data.get("allow_private", False)), rate=int(data.get("rate", 0)))

    @property
    def serving(self) -> bool:
        return bool(self.allowed_peers)

    def admits(self, peer: PeerId) -> bool:
        return peer in self.allowed_peers

    def port_allowed(self, port: int) -> bool:
        return not self.ports or port in self.ports

    def address_allowed(self, ip: IPAddress) -> bool:
        return self.allow_private or is_public_address(ip)

    def as_json(self) -> dict[str, object]:
        return {"serving": self.serving, "allowed_peers": sorted(str(p) for p in self.allowed_peers),
                "ports": sorted(self.ports), "allow_private": self.allow_private, "rate": self.rate}


@dataclass
class PeerBuckets:
    """One peer's two token buckets (towards the destination, from it), shared by all of its connections."""

    up: TokenBucket = field(default_factory=TokenBucket)
    down: TokenBucket = field(default_factory=TokenBucket)


def wait_for(bucket: TokenBucket, amount: int, now: float) -> float:
    """Seconds to wait before `amount` bytes may move through `bucket` (0: now); spends them when it answers 0."""
    if not bucket.limited:
        return 0.0
    available = bucket.available(now)
    if available >= min(amount, bucket.rate):  # a chunk larger than one second's rate goes once the bucket is full
        bucket.take(amount)
        return 0.0
    return (min(amount, bucket.rate) - available) / bucket.rate
