"""A relay's bookkeeping, sans-I/O: who holds a reservation until when, and which circuits are open, under caps.

Every cap bounds memory whatever peers do: a peer holds at most one reservation (asking again refreshes it, so a
thousand RESERVE requests from one peer cost one entry), at most `max_reservations_per_ip` peers of one IP address
hold one, and at most `max_reservations` peers in all; circuits are capped in all and per peer (as source or
destination). Time comes in as `now` (monotonic seconds); the driver calls `expire(now)` at `next_wakeup()`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from peerloom.identity import PeerId
from peerloom.net.relay.messages import Limit, Status


@dataclass
class RelayLimits:
    """A relay server's knobs (defaults: go-libp2p's resources, js's 2-minute/128 KiB circuit limit)."""

    reservation_ttl: float = 3600.0  # seconds a reservation lasts unless refreshed
    max_reservations: int = 128
    max_reservations_per_ip: int = 8
    max_circuits: int = 16
    max_circuits_per_peer: int = 4
    circuit_duration: int = 120  # seconds a relayed connection may last (0: no limit)
    circuit_data: int = 1 << 17  # bytes a relayed connection may carry in each direction (0: no limit)

    @property
    def limit(self) -> Limit:
        return Limit(self.circuit_duration, self.circuit_data)


@dataclass
class _Reservation:
    ip: str
    expires: float


class RelayTable:
    """Reservations and circuits of one relay (see the module docstring)."""

    def __init__(self, limits: RelayLimits) -> None:
        self.limits = limits
        self._reservations: dict[PeerId, _Reservation] = {}
        self._per_ip: Counter[str] = Counter()
        self._circuits: Counter[PeerId] = Counter()  # open circuits each peer is an end of
        self.circuits = 0

    def __len__(self) -> int:
        return len(self._reservations)

    def reserve(self, peer: PeerId, ip: str, now: float) -> tuple[Status, float]:
        """Grant or refresh `peer`'s reservation: (OK, its expiry) or (the refusal, 0)."""
        self.expire(now)
        expires = now + self.limits.reservation_ttl
        held = self._reservations.get(peer)
        if held is not None and held.ip == ip:
            held.expires = expires
            return Status.OK, expires
        if held is not None:  # the same peer from another address: move its reservation there
            self.remove(peer)
        if len(self._reservations) >= self.limits.max_reservations:
            return Status.RESOURCE_LIMIT_EXCEEDED, 0.0
        if self._per_ip[ip] >= self.limits.max_reservations_per_ip:
            return Status.RESOURCE_LIMIT_EXCEEDED, 0.0
        self._reservations[peer] = _Reservation(ip, expires)
        self._per_ip[ip] += 1
        return Status.OK, expires

    def has_reservation(self, peer: PeerId, now: float) -> bool:
        held = self._reservations.get(peer)
        return held is not None and held.expires > now

    def remove(self, peer: PeerId) -> None:
        """Forget `peer`'s reservation (it expired, or its connection to us closed)."""
        held = self._reservations.pop(peer, None)
        if held is not None:
            self._per_ip[held.ip] -= 1
            if self._per_ip[held.ip] <= 0:
                del self._per_ip[held.ip]

    def expire(self, now: float) -> None:
        for peer in [p for p, r in self._reservations.items() if r.expires <= now]:
            self.remove(peer)

    def next_wakeup(self) -> float | None:
        return min((r.expires for r in self._reservations.values()), default=None)

    def open_circuit(self, src: PeerId, dst: PeerId, now: float) -> Status:
        """Count a circuit from `src` to `dst`, or say why not (call `close_circuit` when it ends)."""
        if not self.has_reservation(dst, now):
            return Status.NO_RESERVATION
        if self.circuits >= self.limits.max_circuits:
            return Status.RESOURCE_LIMIT_EXCEEDED
        per_peer = self.limits.max_circuits_per_peer
        if self._circuits[src] >= per_peer or self._circuits[dst] >= per_peer:
            return Status.RESOURCE_LIMIT_EXCEEDED
        self.circuits += 1
        self._circuits[src] += 1
        self._circuits[dst] += 1
        return Status.OK

    def close_circuit(self, src: PeerId, dst: PeerId) -> None:
        self.circuits -= 1
        for peer in (src, dst):
            self._circuits[peer] -= 1
            if self._circuits[peer] <= 0:
                del self._circuits[peer]

    def state_size(self) -> int:
        """Entries held in all (what the caps bound): for tests and the status view."""
        return len(self._reservations) + len(self._per_ip) + len(self._circuits)
