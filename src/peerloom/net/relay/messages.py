"""Circuit Relay v2 wire messages (libp2p spec `relay/circuit-v2.md`, "Protobuf") and the reservation voucher,
sans-I/O.

Every message travels as a varint length prefix and a protobuf (`HopMessage` on `/libp2p/circuit/relay/0.2.0/hop`,
`StopMessage` on `/libp2p/circuit/relay/0.2.0/stop`), bounded by `MAX_MESSAGE_SIZE` (go-libp2p's 4 KiB) before
anything is buffered. The voucher is a signed envelope (RFC 0002 "Signed Envelopes") of payload type 0x0302 in the
domain "libp2p-relay-rsvp": the relay signs (relay, peer, expiration) so the reserving peer can prove it holds a
reservation. Decoders raise `RelayMessageError` (a ProtocolError) only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature

from peerloom.codec.multiaddr import MAX_MULTIADDR_BYTES, Multiaddr
from peerloom.codec.protobuf import encode_bytes_field, encode_varint_field, iter_fields
from peerloom.codec.varint import encode_varint
from peerloom.errors import ProtocolError
from peerloom.identity import Identity, PeerId, decode_public_key, encode_public_key

HOP_PROTOCOL = "/libp2p/circuit/relay/0.2.0/hop"
STOP_PROTOCOL = "/libp2p/circuit/relay/0.2.0/stop"
MAX_MESSAGE_SIZE = 4096  # go-libp2p's maxMessageSize; js's is 4096 too
MAX_ADDRS = 32  # addresses kept from one Peer or Reservation: more would only be noise
VOUCHER_DOMAIN = b"libp2p-relay-rsvp"
VOUCHER_PAYLOAD_TYPE = b"\x03\x02"  # multicodec libp2p-relay-rsvp, as go and js spell it (two raw bytes)
_MAX_UINT32 = (1 << 32) - 1


class RelayMessageError(ProtocolError):
    """A relay message or voucher that is malformed, too large, or wrongly signed."""


class HopType(enum.IntEnum):
    RESERVE = 0
    CONNECT = 1
    STATUS = 2


class StopType(enum.IntEnum):
    CONNECT = 0
    STATUS = 1


class Status(enum.IntEnum):
    UNUSED = 0
    OK = 100
    RESERVATION_REFUSED = 200
    RESOURCE_LIMIT_EXCEEDED = 201
    PERMISSION_DENIED = 202
    CONNECTION_FAILED = 203
    NO_RESERVATION = 204
    MALFORMED_MESSAGE = 400
    UNEXPECTED_MESSAGE = 401


@dataclass(frozen=True)
class Limit:
    """A relayed connection's limits: `duration` seconds and `data` bytes in each direction (0: none)."""

    duration: int = 0
    data: int = 0


@dataclass(frozen=True)
class Reservation:
    expire: int  # unix seconds
    addrs: tuple[Multiaddr, ...] = ()
    voucher: bytes = b""


@dataclass(frozen=True)
class RelayPeer:
    peer: PeerId
    addrs: tuple[Multiaddr, ...] = ()


@dataclass(frozen=True)
class HopMessage:
    type: HopType
    peer: RelayPeer | None = None
    reservation: Reservation | None = None
    limit: Limit | None = None
    status: Status | None = None


@dataclass(frozen=True)
class StopMessage:
    type: StopType
    peer: RelayPeer | None = None
    limit: Limit | None = None
    status: Status | None = None


@dataclass(frozen=True)
class Voucher:
    relay: PeerId
    peer: PeerId
    expiration: int  # unix seconds
    signer: bytes = field(default=b"", compare=False)  # the PublicKey protobuf that signed it (decoded only)


# -- encoding ------------------------------------------------------------------------------------------------
def _encode_peer(peer: RelayPeer) -> bytes:
    addrs = b"".join(encode_bytes_field(2, a.to_bytes()) for a in peer.addrs)
    return encode_bytes_field(1, peer.peer.to_bytes()) + addrs


def _encode_limit(limit: Limit) -> bytes:
    out = b""
    if limit.duration:
        out += encode_varint_field(1, min(limit.duration, _MAX_UINT32))
    if limit.data:
        out += encode_varint_field(2, limit.data)
    return out


def _encode_reservation(rsvp: Reservation) -> bytes:
    out = encode_varint_field(1, rsvp.expire) + b"".join(encode_bytes_field(2, a.to_bytes()) for a in rsvp.addrs)
    if rsvp.voucher:
        out += encode_bytes_field(3, rsvp.voucher)
    return out


def encode_hop(msg: HopMessage) -> bytes:
    """The length-prefixed HopMessage."""
    out = encode_varint_field(1, msg.type)
    if msg.peer is not None:
        out += encode_bytes_field(2, _encode_peer(msg.peer))
    if msg.reservation is not None:
        out += encode_bytes_field(3, _encode_reservation(msg.reservation))
    if msg.limit is not None:
        out += encode_bytes_field(4, _encode_limit(msg.limit))
    if msg.status is not None:
        out += encode_varint_field(5, msg.status)
    return encode_varint(len(out)) + out


def encode_stop(msg: StopMessage) -> bytes:
    """The length-prefixed StopMessage."""
    out = encode_varint_field(1, msg.type)
    if msg.peer is not None:
        out += encode_bytes_field(2, _encode_peer(msg.peer))
    if msg.limit is not None:
        out += encode_bytes_field(3, _encode_limit(msg.limit))
    if msg.status is not None:
        out += encode_varint_field(4, msg.status)
    return encode_varint(len(out)) + out


# -- decoding ------------------------------------------------------------------------------------------------
def _fields(data: bytes, what: str) -> list[tuple[int, int | bytes]]:
    if len(data) > MAX_MESSAGE_SIZE:
        raise RelayMessageError(f"{what} of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}")
    try:
        return [(f.number, f.as_int() if isinstance(f.value, int) else f.as_bytes()) for f in iter_fields(data)]
    except ProtocolError as exc:
        raise RelayMessageError(f"malformed {what}: {exc}") from None


def _int(value: int | bytes, what: str) -> int:
    if not isinstance(value, int):
        raise RelayMessageError(f"{what} is not a varint")
    return value


def _bytes(value: int | bytes, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise RelayMessageError(f"{what} is not length-delimited")
    return value


def _peer_id(raw: bytes) -> PeerId:
    try:
        return PeerId(raw)
    except ProtocolError as exc:
        raise RelayMessageError(f"bad peer id: {exc}") from None


def _addr(raw: bytes) -> Multiaddr | None:
    """A multiaddr, or None for one we cannot read (peers may announce transports we do not know: skipped)."""
    if len(raw) > MAX_MULTIADDR_BYTES:
        return None
    try:
        return Multiaddr.from_bytes(raw)
    except ProtocolError:
        return None


def _decode_peer(data: bytes) -> RelayPeer:
    peer = None
    addrs: list[Multiaddr] = []
    for number, value in _fields(data, "Peer"):
        if number == 1:
            peer = _peer_id(_bytes(value, "Peer.id"))
        elif number == 2 and len(addrs) < MAX_ADDRS and (addr := _addr(_bytes(value, "Peer.addrs"))) is not None:
            addrs.append(addr)
    if peer is None:
        raise RelayMessageError("Peer without an id")
    return RelayPeer(peer, tuple(addrs))


def _decode_limit(data: bytes) -> Limit:
    duration = amount = 0
    for number, value in _fields(data, "Limit"):
        if number == 1:
            duration = min(_int(value, "Limit.duration"), _MAX_UINT32)
        elif number == 2:
            amount = _int(value, "Limit.data")
    return Limit(duration, amount)


def _decode_reservation(data: bytes) -> Reservation:
    expire = 0
    addrs: list[Multiaddr] = []
    voucher = b""
    for number, value in _fields(data, "Reservation"):
        if number == 1:
            expire = _int(value, "Reservation.expire")
        elif number == 2 and len(addrs) < MAX_ADDRS and (addr := _addr(_bytes(value, "Reservation.addrs"))):
            addrs.append(addr)
        elif number == 3:
            voucher = _bytes(value, "Reservation.voucher")
    return Reservation(expire, tuple(addrs), voucher)


def _enum(kind: type[enum.IntEnum], value: int, what: str) -> enum.IntEnum:
    try:
        return kind(value)
    except ValueError:
        raise RelayMessageError(f"unknown {what} {value}") from None


def decode_hop(data: bytes) -> HopMessage:
    """A HopMessage (without its length prefix)."""
    kind = None
    peer = reservation = limit = status = None
    for number, value in _fields(data, "HopMessage"):
        if number == 1:
            kind = _enum(HopType, _int(value, "HopMessage.type"), "hop message type")
        elif number == 2:
            peer = _decode_peer(_bytes(value, "HopMessage.peer"))
        elif number == 3:
            reservation = _decode_reservation(_bytes(value, "HopMessage.reservation"))
        elif number == 4:
            limit = _decode_limit(_bytes(value, "HopMessage.limit"))
        elif number == 5:
            status = _status(_int(value, "HopMessage.status"))
    if kind is None:
        raise RelayMessageError("HopMessage without a type")
    return HopMessage(HopType(kind), peer, reservation, limit, status)


def decode_stop(data: bytes) -> StopMessage:
    """A StopMessage (without its length prefix)."""
    kind = None
    peer = limit = status = None
    for number, value in _fields(data, "StopMessage"):
        if number == 1:
            kind = _enum(StopType, _int(value, "StopMessage.type"), "stop message type")
        elif number == 2:
            peer = _decode_peer(_bytes(value, "StopMessage.peer"))
        elif number == 3:
            limit = _decode_limit(_bytes(value, "StopMessage.limit"))
        elif number == 4:
            status = _status(_int(value, "StopMessage.status"))
    if kind is None:
        raise RelayMessageError("StopMessage without a type")
    return StopMessage(StopType(kind), peer, limit, status)


def _status(value: int) -> Status:
    try:
        return Status(value)
    except ValueError:  # a status code from a later spec: an unknown failure, not a malformed message
        return Status.UNUSED


# -- the voucher (a signed envelope) ----------------------------------------------------------------------------
def _signed_bytes(payload: bytes) -> bytes:
    """RFC 0002: what the envelope's signature covers, each part varint-length-prefixed."""
    parts = (VOUCHER_DOMAIN, VOUCHER_PAYLOAD_TYPE, payload)
    return b"".join(encode_varint(len(p)) + p for p in parts)


def sign_voucher(identity: Identity, peer: PeerId, expiration: int) -> bytes:
    """The envelope a relay (`identity`) gives `peer` with its reservation."""
    payload = (encode_bytes_field(1, identity.peer_id.to_bytes()) + encode_bytes_field(2, peer.to_bytes())
               + encode_varint_field(3, expiration))
    return (encode_bytes_field(1, encode_public_key(identity.public_key))
            + encode_bytes_field(2, VOUCHER_PAYLOAD_TYPE) + encode_bytes_field(3, payload)
            + encode_bytes_field(5, identity.sign(_signed_bytes(payload))))


def open_voucher(data: bytes) -> Voucher:
    """A voucher whose envelope signature checks out and whose signer is its relay; RelayMessageError otherwise."""
    key = kind = payload = signature = None
    for number, value in _fields(data, "voucher envelope"):
        if number == 1:
            key = _bytes(value, "envelope public key")
        elif number == 2:
            kind = _bytes(value, "envelope payload type")
        elif number == 3:
            payload = _bytes(value, "envelope payload")
        elif number == 5:
            signature = _bytes(value, "envelope signature")
    if key is None or payload is None or signature is None or kind != VOUCHER_PAYLOAD_TYPE:
        raise RelayMessageError("voucher envelope is incomplete or of another payload type")
    try:
        public = decode_public_key(key)
        public.verify(signature, _signed_bytes(payload))
    except ProtocolError as exc:
        raise RelayMessageError(f"voucher signed by an unusable key: {exc}") from None
    except InvalidSignature:
        raise RelayMessageError("voucher signature does not verify") from None
    relay = peer = None
    expiration = 0
    for number, value in _fields(payload, "voucher"):
        if number == 1:
            relay = _peer_id(_bytes(value, "voucher relay"))
        elif number == 2:
            peer = _peer_id(_bytes(value, "voucher peer"))
        elif number == 3:
            expiration = _int(value, "voucher expiration")
    if relay is None or peer is None:
        raise RelayMessageError("voucher without relay or peer")
    if relay != PeerId.from_public_key(public):
        raise RelayMessageError("voucher not signed by its relay")
    return Voucher(relay, peer, expiration, key)
