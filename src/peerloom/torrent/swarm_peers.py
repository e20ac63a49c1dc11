"""A torrent's peers: the connected ones, and one record per address we know of (when to dial it next, how often
dialling failed, whether it refused our key, whether a dial is under way).

A part of `Torrent`, sans-I/O: it decides whom to dial and when; the torrent dials. Addresses come from trackers,
the DHT, LSD, peer exchange, magnet links and the user; a failed dial backs off (2 s * 3^failures, at most 5 min)
and the fifth failure forgets the address; a connected one is not dialled again for a minute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peerloom.codec.compact import canonical_address
from peerloom.codec.multiaddr import Multiaddr
from peerloom.errors import AccessRefused

if TYPE_CHECKING:
    from peerloom.torrent.peer import PeerConnection

Address = tuple[str, int] | Multiaddr

BAN_AFTER = 2  # pieces proven bad before a peer is banned
MAX_FAILURES = 5  # dials that failed in a row before an address is forgotten
REDIAL_CONNECTED = 60.0  # seconds before an address we connected to is tried again (once that connection is gone)
BACKOFF_BASE = 2.0
BACKOFF_MAX = 300.0


@dataclass(slots=True)
class PeerRecord:
    """What we know of one address."""

    next_attempt: float  # monotonic time of the earliest next dial
    failures: int = 0  # dials that failed since the last one that worked
    refusal: AccessRefused | None = None  # the peer refused our key when we last dialled it
    dialling: bool = False


class Peers:
    """The connected peers and the known addresses of one torrent (see the module docstring)."""

    def __init__(self, *, max_known: int, max_connected: int, secure: bool,
                 excluded: Callable[[Address], bool]) -> None:
        self.max_known = max_known
        self.max_connected = max_connected
        self.secure = secure  # a private swarm of the secure layer: multiaddrs only, never plain BitTorrent
        self.excluded = excluded  # banned, or our own address
        self.connected: list[PeerConnection] = []
        self.known: dict[Address, PeerRecord] = {}
        self.strikes: dict[Any, int] = {}  # pieces proven bad, per peer id (or address)
        self.banned_count = 0

    def __contains__(self, address: object) -> bool:
        return address in self.known

    def add(self, addresses: list[Address], now: float) -> None:
        """Addresses to try, dialled from `now` on; ones already known keep their record (and backoff)."""
        known = self.known
        for addr in addresses:
            if len(known) >= self.max_known:
                break
            if self.secure and not isinstance(addr, Multiaddr):
                continue
            if not isinstance(addr, Multiaddr):
                addr = canonical_address(addr)  # one record per peer, however its IP is spelt
            record = known.get(addr)
            if record is None:
                if not self.excluded(addr):
                    known[addr] = PeerRecord(now)
            elif record.next_attempt == math.inf:  # given up on, and now heard of again
                record.next_attempt = now
                record.failures = 0

    def joined(self, peer: PeerConnection) -> None:
        """The peer finished its handshake and was admitted."""
        self.connected.append(peer)

    def left(self, peer: PeerConnection) -> None:
        if peer in self.connected:
            self.connected.remove(peer)

    def forget(self, address: Any) -> None:
        self.known.pop(address, None)

    def strike(self, who: Any) -> int:
        """One more piece proven bad from this peer (its peer id, or its address): how many so far."""
        count = self.strikes[who] = self.strikes.get(who, 0) + 1
        return count

    def banned(self, address: Any) -> None:
        """The peer at this address was banned: never dial it again."""
        self.banned_count += 1
        self.forget(address)

    def retry_all(self, now: float) -> None:
        """Dial every known address again from `now` (after a pause, say)."""
        for record in self.known.values():
            record.next_attempt = now

    @property
    def dialling(self) -> int:
        return sum(1 for r in self.known.values() if r.dialling)

    def to_dial(self, now: float) -> Iterator[Address]:
        """The addresses to dial now, as many as there is room for; each is marked as being dialled."""
        room = self.max_connected - len(self.connected) - self.dialling
        if room <= 0:
            return
        connected = {p.key for p in self.connected} | {p.remote for p in self.connected}
        for addr, record in list(self.known.items()):
            if room <= 0:
                break
            if record.next_attempt > now or record.dialling or addr in connected:
                continue
            room -= 1
            record.dialling = True
            yield addr

    def dial_succeeded(self, address: Address, now: float) -> None:
        record = self.known.get(address)
        if record is None:
            record = self.known[address] = PeerRecord(now)
        record.dialling = False
        record.failures = 0
        record.refusal = None
        record.next_attempt = now + REDIAL_CONNECTED

    def dial_failed(self, address: Address, now: float, refusal: AccessRefused | None = None) -> None:
        record = self.known.get(address)
        if record is None:
            return
        record.dialling = False
        record.failures += 1
        if refusal is not None:
            record.refusal = refusal
        if record.failures >= MAX_FAILURES:
            if record.refusal is None:
                del self.known[address]
            else:  # kept, to say it refused us, but no longer dialled until someone tells us of it again
                record.next_attempt = math.inf
        else:
            record.next_attempt = now + min(BACKOFF_MAX, BACKOFF_BASE * 3**record.failures)

    def dial_abandoned(self, address: Address) -> None:
        """A dial cancelled before it ended (the torrent paused or stopped)."""
        record = self.known.get(address)
        if record is not None:
            record.dialling = False

    @property
    def refusals(self) -> dict[Address, AccessRefused]:
        """The addresses whose peer refused our key when we last dialled it."""
        return {addr: r.refusal for addr, r in self.known.items() if r.refusal is not None}

    @property
    def refused_everywhere(self) -> bool:
        """Every known address refused our key, none is being dialled and no peer is connected."""
        return (bool(self.known) and not self.connected
                and all(r.refusal is not None and not r.dialling for r in self.known.values()))
