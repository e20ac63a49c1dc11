"""BEP 55 hole punching, sans-I/O: the `ut_holepunch` extension message and the bookkeeping of both roles.

Two peers behind NATs cannot dial each other, but a third peer connected to both can introduce them. The initiator
sends the relay a *rendezvous* naming the target (an address it learned by peer exchange from that relay); the relay
sends a *connect* to both, each naming the other, and both dial each other over uTP at once, so that each NAT sees
its host's packet leave before the other's arrives and lets the answer in. A relay that cannot help answers with an
*error*.

Message (BEP 55, all big-endian): msg_type u8 (0 rendezvous, 1 connect, 2 error), addr_type u8 (0 IPv4, 1 IPv6),
the address (4 or 16 bytes), port u16, err_code u32 (0 unless an error).

Bounds, because a connect makes us send packets to an address a peer chose: we act on a connect only from a peer we
are connected to in that torrent, at most one punch per address a `PUNCH_COOLDOWN`, at most `MAX_PUNCHES` in flight,
never to a port 0 or to an address we are already connected to; a rendezvous is sent at most once a
`PUNCH_COOLDOWN` per target; the addresses remembered (which relay told us of which peer) are bounded.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import OrderedDict
from dataclasses import dataclass
from enum import IntEnum
from typing import Generic, TypeVar

from peerloom.errors import ProtocolError

EXTENSION = "ut_holepunch"
PEX_HOLEPUNCH = 0x08  # BEP 11 flag: the peer supports ut_holepunch (BEP 55)
PUNCH_COOLDOWN = 60.0  # seconds between two punches (or rendezvous) towards one address
MAX_PUNCHES = 8  # punches in flight at once
MAX_SOURCES = 1000  # addresses remembered with the relay that told us of them


class HolepunchError(ProtocolError):
    """A malformed ut_holepunch message."""


class MsgType(IntEnum):
    RENDEZVOUS = 0
    CONNECT = 1
    ERROR = 2


class ErrorCode(IntEnum):
    NO_SUCH_PEER = 1  # the target endpoint is invalid
    NOT_CONNECTED = 2  # the relay is not connected to the target
    NO_SUPPORT = 3  # the target does not support ut_holepunch
    NO_SELF = 4  # the target is the relay itself


Address = tuple[str, int]
P = TypeVar("P")  # a peer connection (a relay), opaque here


@dataclass(frozen=True, slots=True)
class Holepunch:
    msg_type: MsgType
    address: Address
    error: int = 0


def encode_holepunch(msg: Holepunch) -> bytes:
    ip = ipaddress.ip_address(msg.address[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # an IPv4 peer on a dual-stack socket is sent as IPv4
    addr_type = 0 if ip.version == 4 else 1
    return struct.pack(">BB", msg.msg_type, addr_type) + ip.packed + struct.pack(">HI", msg.address[1], msg.error)


def parse_holepunch(payload: bytes) -> Holepunch:
    if len(payload) < 2:
        raise HolepunchError("ut_holepunch message too short")
    msg_type, addr_type = payload[0], payload[1]
    if msg_type > MsgType.ERROR:
        raise HolepunchError(f"unknown ut_holepunch message type {msg_type}")
    if addr_type > 1:
        raise HolepunchError(f"unknown ut_holepunch address type {addr_type}")
    size = 4 if addr_type == 0 else 16
    if len(payload) != 2 + size + 6:
        raise HolepunchError(f"ut_holepunch message of {len(payload)} bytes (expected {2 + size + 6})")
    ip = ipaddress.ip_address(bytes(payload[2 : 2 + size]))
    port, error = struct.unpack_from(">HI", payload, 2 + size)
    return Holepunch(MsgType(msg_type), (str(ip), port), error)


def canonical(address: Address) -> Address:
    """An address however it is spelt: an IPv4 peer seen on a dual-stack socket as ::ffff:a.b.c.d is a.b.c.d."""
    try:
        ip = ipaddress.ip_address(address[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (str(ip), address[1])


class HolepunchState(Generic[P]):
    """One torrent's BEP 55 bookkeeping: which peer told us of which address (a possible relay), when we last
    punched or asked for a punch towards an address, and the punches in flight. Times come in as `now`."""

    def __init__(self) -> None:
        self._sources: OrderedDict[Address, P] = OrderedDict()  # address -> the peer that told us of it
        self._last: OrderedDict[Address, float] = OrderedDict()  # address -> when we last punched/asked
        self.in_flight: set[Address] = set()
        self.punches = 0  # counters, for status and tests
        self.rendezvous_sent = 0
        self.relayed = 0
        self.errors_received = 0

    def learned(self, address: Address, source: P) -> None:
        """`source` (a connected peer that speaks ut_holepunch) told us of `address` by peer exchange."""
        key = canonical(address)
        self._sources[key] = source
        self._sources.move_to_end(key)
        while len(self._sources) > MAX_SOURCES:
            self._sources.popitem(last=False)

    def forget_source(self, source: P) -> None:
        """A peer left: it can relay no more."""
        for key in [k for k, s in self._sources.items() if s is source]:
            del self._sources[key]

    def _cool(self, key: Address, now: float) -> bool:
        last = self._last.get(key)
        return last is None or now - last >= PUNCH_COOLDOWN

    def _mark(self, key: Address, now: float) -> None:
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > MAX_SOURCES:
            self._last.popitem(last=False)

    def rendezvous_for(self, address: Address, now: float) -> tuple[P, bytes] | None:
        """After a failed dial to `address`: the relay to ask and the rendezvous to send it, or None (no relay
        known, or asked too recently)."""
        key = canonical(address)
        source = self._sources.get(key)
        if source is None or not self._cool(key, now):
            return None
        self._mark(key, now)
        self.rendezvous_sent += 1
        return source, encode_holepunch(Holepunch(MsgType.RENDEZVOUS, key))

    def may_punch(self, address: Address, now: float) -> bool:
        """Whether to dial `address` now because a relay said so; if so, it is counted in flight until `done`."""
        key = canonical(address)
        if address[1] == 0 or key in self.in_flight or len(self.in_flight) >= MAX_PUNCHES:
            return False
        if not self._cool(key, now) and key not in self._sources:
            return False  # a recent punch to an address we did not ask for: a relay hammering us
        self._mark(key, now)
        self.in_flight.add(key)
        self.punches += 1
        return True

    def done(self, address: Address) -> None:
        self.in_flight.discard(canonical(address))


def relay_answer(
    initiator: Address | None, target: Address, target_peer_supports: bool | None, is_self: bool
) -> tuple[bytes | None, bytes | None]:
    """The relay's side of a rendezvous from the peer at `initiator` naming `target`: (message to the initiator,
    message to the target). `target_peer_supports` is None when we are not connected to the target, else whether
    it speaks ut_holepunch. `initiator` is the address the target should dial (None: we do not know where it
    listens, so it cannot be introduced)."""
    target = canonical(target)

    def error(code: ErrorCode) -> tuple[bytes, None]:
        return encode_holepunch(Holepunch(MsgType.ERROR, target, code)), None

    if is_self:
        return error(ErrorCode.NO_SELF)
    if target[1] == 0 or initiator is None:
        return error(ErrorCode.NO_SUCH_PEER)
    if target_peer_supports is None:
        return error(ErrorCode.NOT_CONNECTED)
    if not target_peer_supports:
        return error(ErrorCode.NO_SUPPORT)
    return (encode_holepunch(Holepunch(MsgType.CONNECT, target)),
            encode_holepunch(Holepunch(MsgType.CONNECT, canonical(initiator))))
