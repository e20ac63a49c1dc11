"""DCUtR, Direct Connection Upgrade through Relay (libp2p spec `relay/DCUtR.md`), sans-I/O: the messages and the
two sides' exchange.

Over a relayed connection, the peer that *accepted* it (B, the stop side) opens `/libp2p/dcutr` and sends CONNECT
with the addresses it may be reached at, timing the round trip; the other peer (A) answers CONNECT with its own;
B sends SYNC and, after half the round trip, dials A's addresses, while A dials B's as soon as SYNC arrives, so both
SYNs cross (TCP simultaneous open). Whatever socket results, A is the secure connection's initiator (client) and B
the responder (spec: "A is assumed to be the client and B the server"). B retries up to `MAX_ATTEMPTS` times.

Each message is a varint length prefix and `HolePunch { required Type type = 1; repeated bytes ObsAddrs = 2; }`
(CONNECT = 100, SYNC = 300), at most `MAX_MESSAGE_SIZE` bytes. `decode_hole_punch` raises `DcutrError` only.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from peerloom.codec.multiaddr import MAX_MULTIADDR_BYTES, Multiaddr
from peerloom.codec.protobuf import encode_bytes_field, encode_varint_field, iter_fields
from peerloom.codec.varint import encode_varint
from peerloom.errors import ProtocolError

DCUTR_PROTOCOL = "/libp2p/dcutr"
MAX_MESSAGE_SIZE = 4096  # go-libp2p's and js-libp2p's bound
MAX_ADDRS = 32  # addresses kept from one message (and sent in one)
MAX_ATTEMPTS = 3  # spec: "retry ... up to 3 times" (go-libp2p's maxRetries)
_DIALABLE_HOSTS = ("ip4", "ip6", "dns", "dns4", "dns6")


class DcutrError(ProtocolError):
    """A DCUtR message that is malformed, too large, of an unknown type, or out of order."""


class HolePunchType(enum.IntEnum):
    CONNECT = 100
    SYNC = 300


@dataclass(frozen=True)
class HolePunch:
    type: HolePunchType
    addrs: tuple[Multiaddr, ...] = ()


def encode_hole_punch(msg: HolePunch) -> bytes:
    """The length-prefixed message."""
    body = encode_varint_field(1, msg.type) + b"".join(encode_bytes_field(2, a.to_bytes()) for a in msg.addrs)
    return encode_varint(len(body)) + body


def decode_hole_punch(data: bytes) -> HolePunch:
    """A HolePunch message (without its prefix); unreadable addresses are skipped (peers may know transports we do
    not), at most MAX_ADDRS kept."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise DcutrError(f"DCUtR message of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}")
    kind = None
    addrs: list[Multiaddr] = []
    try:
        for field in iter_fields(data):
            if field.number == 1:
                kind = field.as_int()
            elif field.number == 2:
                raw = field.as_bytes()
                if len(addrs) < MAX_ADDRS and len(raw) <= MAX_MULTIADDR_BYTES:
                    try:
                        addrs.append(Multiaddr.from_bytes(raw))
                    except ProtocolError:
                        pass
    except ProtocolError as exc:
        raise DcutrError(f"malformed DCUtR message: {exc}") from None
    if kind is None:
        raise DcutrError("DCUtR message without a type")
    try:
        return HolePunch(HolePunchType(kind), tuple(addrs))
    except ValueError:
        raise DcutrError(f"unknown DCUtR message type {kind}") from None


def dialable(addrs: Iterable[Multiaddr]) -> list[Multiaddr]:
    """The addresses a TCP hole punch can dial: host + tcp (with or without /p2p), no relay circuit, each once."""
    out: list[Multiaddr] = []
    for addr in addrs:
        names = [name for name, _ in addr.components]
        if names and names[-1] == "p2p":
            names.pop()
            addr = addr.without_p2p()
        if len(names) == 2 and names[0] in _DIALABLE_HOSTS and names[1] == "tcp" and addr not in out:
            out.append(addr)
    return out[:MAX_ADDRS]


class Initiator:
    """B's side: sends CONNECT, reads the answer, sends SYNC; then dials after `dial_delay` seconds."""

    def __init__(self, own_addrs: Iterable[Multiaddr]) -> None:
        self.own_addrs = tuple(dialable(own_addrs))
        self._sent_at: float | None = None
        self.rtt: float | None = None

    def connect(self, now: float) -> bytes:
        self._sent_at = now
        return encode_hole_punch(HolePunch(HolePunchType.CONNECT, self.own_addrs))

    def on_connect(self, msg: HolePunch, now: float) -> tuple[bytes, float, list[Multiaddr]]:
        """A's CONNECT: (the SYNC to send, seconds to wait after sending it, the addresses to dial)."""
        if self._sent_at is None or self.rtt is not None or msg.type is not HolePunchType.CONNECT:
            raise DcutrError(f"unexpected DCUtR {msg.type.name}")
        self.rtt = max(0.0, now - self._sent_at)
        return encode_hole_punch(HolePunch(HolePunchType.SYNC)), self.rtt / 2, dialable(msg.addrs)


class Responder:
    """A's side: answers CONNECT with its own addresses, then dials B's at once when SYNC arrives."""

    def __init__(self, own_addrs: Iterable[Multiaddr]) -> None:
        self.own_addrs = tuple(dialable(own_addrs))
        self._remote: list[Multiaddr] | None = None

    def on_connect(self, msg: HolePunch) -> bytes:
        if self._remote is not None or msg.type is not HolePunchType.CONNECT:
            raise DcutrError(f"unexpected DCUtR {msg.type.name}: CONNECT comes first, once")
        self._remote = dialable(msg.addrs)
        return encode_hole_punch(HolePunch(HolePunchType.CONNECT, self.own_addrs))

    @property
    def remote_addrs(self) -> list[Multiaddr]:
        """B's addresses, once its CONNECT came."""
        return list(self._remote or ())

    def on_sync(self, msg: HolePunch) -> list[Multiaddr]:
        """SYNC: the addresses to dial now."""
        if self._remote is None or msg.type is not HolePunchType.SYNC:
            raise DcutrError(f"unexpected DCUtR {msg.type.name}: SYNC comes after CONNECT")
        return self._remote
