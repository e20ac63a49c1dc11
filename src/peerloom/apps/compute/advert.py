"""Volunteers found through pub/sub: the capacity advert a volunteer publishes on `ADVERT_TOPIC`, and the bounded
list of candidates a submitter keeps from the adverts it hears (sans-I/O: bytes and the current time in).

The advert needs no signature of its own: GossipSub signs every message with its author's key (StrictSign) and the
router checks it, so the author is the volunteer. What it claims is never trusted beyond choosing whom to ask: a
submitter dials the advertised addresses (each bound to the author's id, so a dial can only reach the author) and
asks the volunteer for its capacity over `/peerloom/compute/1.0.0`; that answer, not the advert, decides.

Format (integers big-endian): version (1 byte, 1), slots (2), memory per task (8), CPU seconds left today (8), then
the number of addresses (1 byte, at most `MAX_ADDRS`) and each address's binary multiaddr behind a 2-byte length
(at most `MAX_ADDR` bytes). An advert is at most `MAX_ADVERT` bytes; anything else raises `AdvertError`.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

from peerloom.codec.multiaddr import Multiaddr, MultiaddrError
from peerloom.errors import ProtocolError
from peerloom.identity import PeerId

ADVERT_TOPIC = "/peerloom/compute/volunteers/1"
VERSION = 1
MAX_ADDRS = 8
MAX_ADDR = 256
MAX_ADVERT = 19 + 1 + MAX_ADDRS * (2 + MAX_ADDR)
_HEAD = struct.Struct(">BHQQB")


class AdvertError(ProtocolError):
    """A capacity advert that breaks the format or its bounds."""


@dataclass(frozen=True)
class Advert:
    """What a volunteer says it offers (a hint for whom to ask, never a promise) and where to dial it."""

    slots: int
    memory_bytes: int
    cpu_seconds_left: int
    addrs: tuple[Multiaddr, ...]


def encode_advert(advert: Advert) -> bytes:
    """The advert's bytes; addresses past `MAX_ADDRS` or longer than `MAX_ADDR` are left out, their /p2p/ part too
    (the reader binds each address to the message's author)."""
    addrs = [a.without_p2p().to_bytes() for a in advert.addrs]
    addrs = [a for a in addrs if len(a) <= MAX_ADDR][:MAX_ADDRS]
    head = _HEAD.pack(VERSION, min(advert.slots, 0xFFFF), advert.memory_bytes, advert.cpu_seconds_left, len(addrs))
    return head + b"".join(struct.pack(">H", len(a)) + a for a in addrs)


def decode_advert(data: bytes) -> Advert:
    """The advert in `data`; `AdvertError` for anything but a well-formed version-1 advert within its bounds."""
    if len(data) > MAX_ADVERT:
        raise AdvertError(f"an advert of {len(data)} bytes (at most {MAX_ADVERT})")
    if len(data) < _HEAD.size:
        raise AdvertError("an advert cut short")
    version, slots, memory, left, count = _HEAD.unpack_from(data)
    if version != VERSION:
        raise AdvertError(f"an advert of version {version} (this node reads version {VERSION})")
    if count > MAX_ADDRS:
        raise AdvertError(f"an advert with {count} addresses (at most {MAX_ADDRS})")
    pos, addrs = _HEAD.size, []
    for _ in range(count):
        if pos + 2 > len(data):
            raise AdvertError("an advert cut short in its addresses")
        (size,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if size > MAX_ADDR or pos + size > len(data):
            raise AdvertError(f"an advertised address of {size} bytes (at most {MAX_ADDR}, within the advert)")
        try:
            addr = Multiaddr.from_bytes(data[pos:pos + size])
        except MultiaddrError as exc:
            raise AdvertError(f"an advertised address is not a multiaddr: {exc}") from None
        if addr.peer_id is not None:
            raise AdvertError("an advertised address names a peer id (the author is the only peer it may reach)")
        addrs.append(addr)
        pos += size
    if pos != len(data):
        raise AdvertError(f"{len(data) - pos} stray bytes after the advert")
    return Advert(slots, memory, left, tuple(addrs))


class Candidates:
    """Volunteers heard of and not yet asked: at most `limit` kept (the oldest forgotten first), and each asked at
    most once every `retry_after` seconds, so a flood of adverts costs a bounded list and a bounded rate of dials."""

    def __init__(self, limit: int = 64, retry_after: float = 60.0) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self._waiting: OrderedDict[PeerId, tuple[Multiaddr, ...]] = OrderedDict()
        self._asked: OrderedDict[PeerId, float] = OrderedDict()  # peer -> when it was last asked

    def heard(self, peer: PeerId, advert: Advert, now: float) -> bool:
        """Note `peer`'s advert; True if it is worth asking now (it offers something, has addresses to dial, and was
        not asked within `retry_after`)."""
        if advert.slots == 0 or advert.cpu_seconds_left == 0 or not advert.addrs:
            return False
        asked = self._asked.get(peer)
        if asked is not None and now - asked < self.retry_after:
            return False
        self._waiting[peer] = tuple(a.encapsulate(f"/p2p/{peer}") for a in advert.addrs)
        self._waiting.move_to_end(peer)
        while len(self._waiting) > self.limit:
            self._waiting.popitem(last=False)
        return True

    def take(self, now: float) -> list[tuple[PeerId, tuple[Multiaddr, ...]]]:
        """The candidates to ask now (each marked asked), oldest first."""
        out = list(self._waiting.items())
        self._waiting.clear()
        for peer, _ in out:
            self._asked[peer] = now
            self._asked.move_to_end(peer)
        while len(self._asked) > 4 * self.limit:
            self._asked.popitem(last=False)
        return out
