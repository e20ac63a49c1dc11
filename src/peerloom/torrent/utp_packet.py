"""uTP packets (BEP 29): the 20-byte header, the extension chain and the selective-ack bitmask, sans-I/O.

A packet is one UDP datagram: a fixed header, then zero or more extensions (each `next type, length, data`, the
chain ending at type 0), then the payload. `parse_packet` bounds everything before it allocates and raises
`UtpError` for anything a version-1 peer cannot have sent; `encode_packet` writes the very bytes it read back.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

from peerloom.errors import ProtocolError

VERSION = 1
HEADER = struct.Struct(">BBHIIIHH")  # type|version, extension, connection id, timestamp, delay, wnd, seq, ack
HEADER_SIZE = HEADER.size  # 20
SEQ_MASK = 0xFFFF  # BEP 29: sequence and ack numbers wrap modulo 2^16
TIMESTAMP_MASK = 0xFFFFFFFF  # microseconds, modulo 2^32
EXT_NONE = 0
EXT_SACK = 1  # BEP 29 selective ack
# peerloom's own, in a SYN and the ST_STATE answering it: "I take datagrams up to N bytes" (4 bytes, big-endian).
# Other implementations skip extensions they do not know (libtorrent and libutp do); see UtpConfig.large_payload.
EXT_DATAGRAM = 0x70
MAX_EXTENSIONS = 8  # deployed peers send at most two (sack, libtorrent's close reason); a longer chain is hostile
SACK_BYTES = 32  # the bitmask we send: 256 packets past ack_nr + 1, a multiple of 4 bytes as BEP 29 asks
MAX_DATAGRAM = 65_507  # the largest UDP payload over IPv4


class UtpError(ProtocolError):
    """A datagram that is not a well-formed uTP version-1 packet, or a peer that broke the uTP rules."""


class PacketType(IntEnum):
    """BEP 29 packet types (the high nibble of the first byte)."""

    DATA = 0
    FIN = 1
    STATE = 2
    RESET = 3
    SYN = 4


class Packet(NamedTuple):
    """One uTP packet. `extensions` keeps every extension in the order it came (unknown ones too, so that a
    packet re-encodes to its own bytes); `sack` is the selective-ack bitmask, if the packet carries one. A named
    tuple: one is built per datagram, and a tuple is the cheapest immutable record to build."""

    type: PacketType
    connection_id: int
    seq_nr: int
    ack_nr: int
    wnd_size: int = 0
    timestamp: int = 0
    timestamp_difference: int = 0
    extensions: tuple[tuple[int, bytes], ...] = ()
    payload: bytes | memoryview = b""

    @property
    def sack(self) -> bytes | None:
        for kind, data in self.extensions:
            if kind == EXT_SACK:
                return data
        return None

    @property
    def max_datagram(self) -> int | None:
        """The largest datagram the sender takes, if it said (EXT_DATAGRAM)."""
        for kind, data in self.extensions:
            if kind == EXT_DATAGRAM and len(data) == 4:
                return int.from_bytes(data, "big")
        return None


_TYPES = tuple(PacketType(value) for value in range(PacketType.SYN + 1))  # by value: no Enum call per packet


def is_utp_datagram(datagram: bytes | memoryview) -> bool:
    """Whether a datagram on a shared UDP socket is for uTP: a version-1 header (low nibble 1, type 0-4 in the
    high nibble) of at least 20 bytes. A bencoded KRPC message starts with `d` (0x64: version 4), so the two
    never collide; this is how libtorrent demultiplexes its one UDP socket."""
    if len(datagram) < HEADER_SIZE:
        return False
    first = datagram[0]
    return first & 0x0F == VERSION and first >> 4 <= PacketType.SYN


def parse_packet(datagram: bytes | memoryview) -> Packet:
    """The packet in `datagram`; UtpError when the header, the extension chain or a SACK bitmask is malformed.
    The payload is a view of `datagram` (no copy)."""
    if len(datagram) < HEADER_SIZE:
        raise UtpError(f"uTP packet of {len(datagram)} bytes is shorter than its header")
    if len(datagram) > MAX_DATAGRAM:
        raise UtpError(f"uTP packet of {len(datagram)} bytes is larger than a UDP datagram")
    first, ext, conn_id, ts, ts_diff, wnd, seq, ack = HEADER.unpack_from(datagram)
    if first & 0x0F != VERSION:
        raise UtpError(f"uTP version {first & 0x0F} is not 1")
    if first >> 4 > PacketType.SYN:
        raise UtpError(f"unknown uTP packet type {first >> 4}")
    view = memoryview(datagram)
    pos = HEADER_SIZE
    extensions: list[tuple[int, bytes]] = []
    while ext != EXT_NONE:
        if len(extensions) == MAX_EXTENSIONS:
            raise UtpError(f"uTP extension chain longer than {MAX_EXTENSIONS}")
        if pos + 2 > len(view):
            raise UtpError("uTP extension header runs past the end of the packet")
        next_ext, length = view[pos], view[pos + 1]
        if pos + 2 + length > len(view):
            raise UtpError(f"uTP extension {ext} of {length} bytes runs past the end of the packet")
        if ext == EXT_SACK:
            # BEP 29 asks for a multiple of 4 bytes, but libtorrent sends (span + 7) / 8 bytes: accept any length
            if length == 0:
                raise UtpError("uTP selective ack of 0 bytes")
            if any(kind == EXT_SACK for kind, _ in extensions):
                raise UtpError("uTP packet with two selective acks")
        extensions.append((ext, bytes(view[pos + 2 : pos + 2 + length])))
        pos += 2 + length
        ext = next_ext
    return Packet(_TYPES[first >> 4], conn_id, seq, ack, wnd, ts, ts_diff, tuple(extensions), view[pos:])


def encode_header(
    kind: PacketType,
    connection_id: int,
    seq_nr: int,
    ack_nr: int,
    wnd_size: int,
    timestamp: int,
    timestamp_difference: int,
    sack: bytes | None = None,
    max_datagram: int = 0,
) -> bytes:
    """The header and extensions (a SACK, our largest datagram) of an outgoing packet: the hot path's encoder."""
    first = EXT_SACK if sack else EXT_DATAGRAM if max_datagram else EXT_NONE
    head = HEADER.pack(
        kind << 4 | VERSION, first, connection_id, timestamp & TIMESTAMP_MASK,
        timestamp_difference & TIMESTAMP_MASK, wnd_size, seq_nr & SEQ_MASK, ack_nr & SEQ_MASK,
    )
    if sack:
        head += bytes((EXT_DATAGRAM if max_datagram else EXT_NONE, len(sack))) + sack
    if max_datagram:
        head += bytes((EXT_NONE, 4)) + max_datagram.to_bytes(4, "big")
    return head


def encode_packet(packet: Packet) -> bytes:
    """The datagram for `packet`, extensions in its order; ValueError for a packet no peer may send."""
    exts = packet.extensions
    if len(exts) > MAX_EXTENSIONS or any(not 0 < kind < 256 or len(data) > 255 for kind, data in exts):
        raise ValueError("uTP extensions must be at most 8, of types 1-255 and at most 255 bytes")
    out = [
        HEADER.pack(
            packet.type << 4 | VERSION, exts[0][0] if exts else EXT_NONE, packet.connection_id, packet.timestamp,
            packet.timestamp_difference, packet.wnd_size, packet.seq_nr, packet.ack_nr,
        )
    ]
    for i, (_, data) in enumerate(exts):
        out.append(bytes((exts[i + 1][0] if i + 1 < len(exts) else EXT_NONE, len(data))))
        out.append(data)
    out.append(bytes(packet.payload))
    return b"".join(out)


def sack_bitmask(ack_nr: int, received: set[int] | dict[int, object], max_bytes: int = SACK_BYTES) -> bytes | None:
    """BEP 29 selective ack for the packets received past `ack_nr + 1`: bit k (least significant first within
    each byte) of the mask stands for sequence number ack_nr + 2 + k. None when nothing past the gap arrived."""
    bits = 0
    limit = max_bytes * 8
    for seq in received:
        k = (seq - ack_nr - 2) & SEQ_MASK
        if k < limit:
            bits |= 1 << k
    if not bits:
        return None
    top = bits.bit_length() - 1
    size = (top // 32 + 1) * 4
    return bits.to_bytes(size, "little")


def sacked(ack_nr: int, mask: bytes) -> list[int]:
    """The sequence numbers a selective-ack bitmask (read relative to `ack_nr`) says were received."""
    bits = int.from_bytes(mask, "little")
    out = []
    k = 0
    while bits:
        if bits & 1:
            out.append((ack_nr + 2 + k) & SEQ_MASK)
        bits >>= 1
        k += 1
    return out
