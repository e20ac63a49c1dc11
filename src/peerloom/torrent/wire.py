"""The BitTorrent peer wire protocol (BEP 3, BEP 6 fast extension, BEP 10 framing, BEP 52 hashes), sans-I/O.

`WireParser.feed` takes bytes as they arrive and returns whole messages; every length is checked
against what its message type allows as soon as the 5-byte frame header is in, so a peer can never
make us buffer more than the largest legal frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple, Union

from peerloom.errors import ProtocolError

PROTOCOL = b"\x13BitTorrent protocol"
HANDSHAKE_LENGTH = 68
BLOCK_SIZE = 16384
MAX_HASHES = 512  # hashes per BEP 52 request (libtorrent's bound too)
MAX_PROOF_LAYERS = 64


class WireError(ProtocolError):
    """A peer broke the wire protocol; its connection is closed."""


@dataclass(frozen=True, slots=True)
class Handshake:
    info_hash: bytes
    peer_id: bytes
    reserved: bytes = bytes(8)

    @property
    def supports_dht(self) -> bool:  # BEP 5
        return bool(self.reserved[7] & 0x01)

    @property
    def supports_fast(self) -> bool:  # BEP 6
        return bool(self.reserved[7] & 0x04)

    @property
    def supports_v2(self) -> bool:  # BEP 52 upgrade bit
        return bool(self.reserved[7] & 0x10)

    @property
    def supports_extensions(self) -> bool:  # BEP 10
        return bool(self.reserved[5] & 0x10)


def make_reserved(*, dht: bool = False, fast: bool = True, extensions: bool = True, v2: bool = False) -> bytes:
    reserved = bytearray(8)
    if extensions:
        reserved[5] |= 0x10
    reserved[7] |= (0x01 if dht else 0) | (0x04 if fast else 0) | (0x10 if v2 else 0)
    return bytes(reserved)


def handshake_reserved(info_hash: bytes, info_hash_v2: bytes | None, *, dht: bool = False) -> bytes:
    """Our reserved bytes for a handshake carrying `info_hash`: fast and extensions always, and the BEP 52 upgrade
    bit only when we send the v1 hash of a torrent that has a v2 one (a hybrid), as libtorrent does
    (bt_peer_connection.cpp, write_handshake); a handshake that carries the v2 hash is already v2."""
    upgrade = info_hash_v2 is not None and info_hash != info_hash_v2[:20]
    return make_reserved(dht=dht, fast=True, extensions=True, v2=upgrade)


def answer_info_hash(theirs: Handshake, info_hash_v2: bytes | None) -> bytes:
    """The info-hash our answer to a dialler's handshake carries. BEP 52: a hybrid's peer that dials with the v1
    hash and the upgrade bit may be answered with the truncated v2 hash, which makes the connection v2. libtorrent
    answers so and, as a dialler, accepts either answer only until it has learnt the peer under the v2 hash (from a
    tracker, the DHT or PEX); from then on it takes only the v2 one (read_info_hash, associated_info_hash), and that
    can happen while its v1 handshake is on the way: a v1 answer then costs the connection ("invalid info-hash")."""
    v2 = info_hash_v2[:20] if info_hash_v2 is not None else None
    if v2 is not None and theirs.supports_v2:
        return v2
    return theirs.info_hash


def answer_accepted(sent: bytes, answer: bytes, info_hash_v2: bytes | None) -> bool:
    """Whether the answer to our handshake, which carried `sent`, is for the same torrent: the same hash, or the
    truncated v2 hash of a hybrid (BEP 52: the answering side may upgrade the connection to v2)."""
    return answer == sent or (info_hash_v2 is not None and answer == info_hash_v2[:20])


def encode_handshake(h: Handshake) -> bytes:
    if len(h.info_hash) != 20 or len(h.peer_id) != 20 or len(h.reserved) != 8:
        raise ValueError("handshake fields have the wrong size")
    return PROTOCOL + h.reserved + h.info_hash + h.peer_id


def parse_handshake(data: bytes) -> Handshake:
    if len(data) != HANDSHAKE_LENGTH or data[:20] != PROTOCOL:
        raise WireError("not a BitTorrent handshake")
    return Handshake(bytes(data[28:48]), bytes(data[48:68]), bytes(data[20:28]))


# -- messages ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeepAlive:
    pass


@dataclass(frozen=True, slots=True)
class Choke:
    pass


@dataclass(frozen=True, slots=True)
class Unchoke:
    pass


@dataclass(frozen=True, slots=True)
class Interested:
    pass


@dataclass(frozen=True, slots=True)
class NotInterested:
    pass


@dataclass(frozen=True, slots=True)
class Have:
    index: int


@dataclass(frozen=True, slots=True)
class Bitfield:
    bits: bytes


class Request(NamedTuple):
    """A block asked for. A named tuple, like `Piece`: a seeder parses one per 16 KiB it sends."""

    index: int
    begin: int
    length: int


class Piece(NamedTuple):
    """A block of a piece. A tuple rather than a frozen dataclass like the other messages: one is built per
    16 KiB received, and a frozen dataclass costs several times as much to build."""

    index: int
    begin: int
    data: bytes | memoryview  # the parser hands out a view of the received bytes


@dataclass(frozen=True, slots=True)
class Cancel:
    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True)
class Port:
    port: int


@dataclass(frozen=True, slots=True)
class SuggestPiece:
    index: int


@dataclass(frozen=True, slots=True)
class HaveAll:
    pass


@dataclass(frozen=True, slots=True)
class HaveNone:
    pass


@dataclass(frozen=True, slots=True)
class RejectRequest:
    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True)
class AllowedFast:
    index: int


@dataclass(frozen=True, slots=True)
class Extended:
    ext_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class HashRequest:
    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int


@dataclass(frozen=True, slots=True)
class Hashes:
    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int
    hashes: bytes


@dataclass(frozen=True, slots=True)
class HashReject:
    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int


Message = Union[  # noqa: UP007 - a runtime alias used in isinstance-free dispatch tables
    KeepAlive, Choke, Unchoke, Interested, NotInterested, Have, Bitfield, Request, Piece, Cancel, Port,
    SuggestPiece, HaveAll, HaveNone, RejectRequest, AllowedFast, Extended, HashRequest, Hashes, HashReject,
]

# message ids (BEP 3, BEP 6, BEP 10, BEP 52)
CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE, BITFIELD, REQUEST, PIECE, CANCEL, PORT = range(10)
SUGGEST, HAVE_ALL, HAVE_NONE, REJECT, ALLOWED_FAST = 13, 14, 15, 16, 17
EXTENDED = 20
HASH_REQUEST, HASHES, HASH_REJECT = 21, 22, 23

_I = struct.Struct(">I")
_II = struct.Struct(">II")
_III = struct.Struct(">III")
_HDR = struct.Struct(">IB")
_PIECE_HDR = struct.Struct(">IBII")  # length, id, index, begin
_REQUEST = struct.Struct(">IBIII")  # a whole request message: length (13), id, index, begin, length
_HASHREQ = struct.Struct(">32sIIII")  # pieces root, base layer, index, length, proof layers


def _frame(msg_id: int, payload: bytes = b"") -> bytes:
    return _HDR.pack(len(payload) + 1, msg_id) + payload


def encode_request(index: int, begin: int, length: int) -> bytes:
    return _REQUEST.pack(13, REQUEST, index, begin, length)


def encode_have(index: int) -> bytes:
    return b"\x00\x00\x00\x05\x04" + _I.pack(index)


def piece_header(index: int, begin: int, length: int) -> bytes:
    """The 13 bytes that precede a block's data in a Piece frame."""
    return _PIECE_HDR.pack(length + 9, PIECE, index, begin)


def encode(msg: Message) -> bytes:
    t = type(msg)
    if t is KeepAlive:
        return b"\x00\x00\x00\x00"
    if t in _EMPTY_IDS:
        return _frame(_EMPTY_IDS[t])
    if t is Have:
        return encode_have(msg.index)  # type: ignore[union-attr]
    if t is Request:
        return encode_request(msg.index, msg.begin, msg.length)  # type: ignore[union-attr]
    if t is Piece:
        return piece_header(msg.index, msg.begin, len(msg.data)) + msg.data  # type: ignore[union-attr]
    if t is Cancel:
        return _frame(CANCEL, _III.pack(msg.index, msg.begin, msg.length))  # type: ignore[union-attr]
    if t is RejectRequest:
        return _frame(REJECT, _III.pack(msg.index, msg.begin, msg.length))  # type: ignore[union-attr]
    if t is Bitfield:
        return _frame(BITFIELD, msg.bits)  # type: ignore[union-attr]
    if t is Port:
        return _frame(PORT, struct.pack(">H", msg.port))  # type: ignore[union-attr]
    if t is SuggestPiece:
        return _frame(SUGGEST, _I.pack(msg.index))  # type: ignore[union-attr]
    if t is AllowedFast:
        return _frame(ALLOWED_FAST, _I.pack(msg.index))  # type: ignore[union-attr]
    if t is Extended:
        return _frame(EXTENDED, bytes([msg.ext_id]) + msg.payload)  # type: ignore[union-attr]
    if t in (HashRequest, HashReject, Hashes):
        head = _HASHREQ.pack(msg.pieces_root, msg.base_layer, msg.index, msg.length, msg.proof_layers)  # type: ignore[union-attr]
        if t is Hashes:
            return _frame(HASHES, head + msg.hashes)  # type: ignore[union-attr]
        return _frame(HASH_REQUEST if t is HashRequest else HASH_REJECT, head)
    raise TypeError(f"not a wire message: {msg!r}")


_EMPTY_IDS = {Choke: CHOKE, Unchoke: UNCHOKE, Interested: INTERESTED, NotInterested: NOT_INTERESTED,
              HaveAll: HAVE_ALL, HaveNone: HAVE_NONE}
_EMPTY_MESSAGES = {CHOKE: Choke(), UNCHOKE: Unchoke(), INTERESTED: Interested(), NOT_INTERESTED: NotInterested(),
                   HAVE_ALL: HaveAll(), HAVE_NONE: HaveNone()}
_KEEPALIVE = KeepAlive()


class WireParser:
    """Incremental parser of the message stream that follows the handshake."""

    def __init__(self, *, max_bitfield: int = 1 << 20, max_extended: int = 1 << 20) -> None:
        self._buf = bytearray()  # an incomplete message carried over to the next feed
        # messages other than pieces and requests in the last feed's output: a state machine reading the messages
        # (`peer_wire`) need not look at a batch of only pieces and requests, most of a busy connection
        self.control = 0
        # largest payload (after the id byte) and exact sizes per message id
        hashes_max = 44 + 32 * (MAX_HASHES + MAX_PROOF_LAYERS)
        self._max = {
            CHOKE: 0, UNCHOKE: 0, INTERESTED: 0, NOT_INTERESTED: 0, HAVE_ALL: 0, HAVE_NONE: 0,
            HAVE: 4, REQUEST: 12, CANCEL: 12, REJECT: 12, PORT: 2, SUGGEST: 4, ALLOWED_FAST: 4,
            BITFIELD: max_bitfield, PIECE: 8 + BLOCK_SIZE, EXTENDED: max_extended,
            HASH_REQUEST: 48, HASH_REJECT: 48, HASHES: hashes_max,
        }
        self._exact = {CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE_ALL, HAVE_NONE, HAVE, REQUEST, CANCEL,
                       REJECT, PORT, SUGGEST, ALLOWED_FAST, HASH_REQUEST, HASH_REJECT}

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Parse every complete message in `data` (plus what an earlier call left over).

        Messages are cut straight out of `data`: a piece's payload is a memoryview of it, not a copy, so it
        is valid only as long as `data` is left unchanged (a receive buffer that is reused must not be
        refilled before the messages are handled). Only a message split across calls is copied, into a
        small carry-over buffer.
        """
        out: list[Message] = []
        self.control = 0
        view = memoryview(data)
        while self._buf:
            # finish the message the last call left incomplete, taking no more than it needs from `data`
            need = self._missing()
            if need == 0:
                carried = bytes(self._buf)
                self._buf.clear()
                self._parse_all(memoryview(carried), out)
            elif not view:
                return out
            else:
                self._buf += view[:need]
                view = view[need:]
        if view:
            tail = self._parse_all(view, out)
            if tail:
                self._buf += view[len(view) - tail :]
        return out

    def _missing(self) -> int:
        """Bytes still needed to complete the message that starts the carry-over buffer."""
        buf = self._buf
        if len(buf) < 4:
            return 4 - len(buf)
        if _I.unpack_from(buf, 0)[0] == 0:
            return 0  # keep-alive
        if len(buf) < 5:
            return 1
        (length,) = _I.unpack_from(buf, 0)
        self._check_header(length, buf[4])
        return max(0, 4 + length - len(buf))

    def _check_header(self, length: int, msg_id: int) -> None:
        limit = self._max.get(msg_id)
        if limit is None:
            raise WireError(f"unknown message id {msg_id}")
        size = length - 1
        if size > limit or (msg_id in self._exact and size != limit):
            raise WireError(f"message {msg_id} with a payload of {size} bytes")

    def _parse_all(self, buf: memoryview, out: list[Message]) -> int:
        """Append the complete messages at the start of `buf` to `out`; return how many bytes remain."""
        pos = 0
        end = len(buf)
        unpack_hdr = _HDR.unpack_from
        unpack_piece = _PIECE_HDR.unpack_from
        unpack_request = _REQUEST.unpack_from
        limits = self._max
        exact = self._exact
        piece_max = limits[PIECE]
        append = out.append
        new_tuple = tuple.__new__  # builds the Piece named tuple without its Python-level __new__
        while end - pos >= 4:
            if end - pos >= 13:
                # the common cases, a whole piece or request message: its fields in one unpack
                length, msg_id, index, begin = unpack_piece(buf, pos)
                if msg_id == PIECE and 8 < length - 1 <= piece_max and end - pos >= 4 + length:
                    start = pos + 13
                    pos += 4 + length
                    append(new_tuple(Piece, (index, begin, buf[start:pos])))
                    continue
                if msg_id == REQUEST and length == 13 and end - pos >= 17:
                    _, _, index, begin, size = unpack_request(buf, pos)
                    if 0 < size <= BLOCK_SIZE:
                        pos += 17
                        append(new_tuple(Request, (index, begin, size)))
                        continue
            (length,) = _I.unpack_from(buf, pos)
            if length == 0:
                append(_KEEPALIVE)
                self.control += 1
                pos += 4
                continue
            if end - pos < 5:
                break
            _, msg_id = unpack_hdr(buf, pos)
            limit = limits.get(msg_id)
            size = length - 1
            if limit is None or size > limit or (msg_id in exact and size != limit):
                self._check_header(length, msg_id)
            if end - pos < 4 + length:
                break
            start = pos + 5
            pos = start + size
            if msg_id == PIECE:
                if size <= 8:
                    raise WireError("empty piece message")
                index, begin = _II.unpack_from(buf, start)
                append(new_tuple(Piece, (index, begin, buf[start + 8 : pos])))
            else:
                append(self._parse(msg_id, bytes(buf[start:pos])))
                self.control += 1
        return end - pos

    @staticmethod
    def _parse(msg_id: int, p: bytes) -> Message:
        if msg_id in _EMPTY_MESSAGES:
            return _EMPTY_MESSAGES[msg_id]
        if msg_id == HAVE:
            return Have(_I.unpack(p)[0])
        if msg_id in (REQUEST, CANCEL, REJECT):
            index, begin, length = _III.unpack(p)
            if not 0 < length <= BLOCK_SIZE:
                raise WireError(f"block length {length} out of range")
            cls = Request if msg_id == REQUEST else Cancel if msg_id == CANCEL else RejectRequest
            return cls(index, begin, length)
        if msg_id == BITFIELD:
            return Bitfield(p)
        if msg_id == PORT:
            return Port(struct.unpack(">H", p)[0])
        if msg_id == SUGGEST:
            return SuggestPiece(_I.unpack(p)[0])
        if msg_id == ALLOWED_FAST:
            return AllowedFast(_I.unpack(p)[0])
        if msg_id == EXTENDED:
            if not p:
                raise WireError("extended message without an id")
            return Extended(p[0], p[1:])
        # BEP 52 hash messages
        if len(p) < 48:
            raise WireError("hash message too short")
        root, base, index, length, proofs = _HASHREQ.unpack_from(p)
        if not 0 < length <= MAX_HASHES or proofs > MAX_PROOF_LAYERS:
            raise WireError("hash request out of range")
        if msg_id == HASHES:
            hashes = p[48:]
            if len(hashes) % 32 or len(hashes) // 32 > length + proofs:
                raise WireError("hashes message of the wrong size")
            return Hashes(root, base, index, length, proofs, hashes)
        cls2 = HashRequest if msg_id == HASH_REQUEST else HashReject
        return cls2(root, base, index, length, proofs)
