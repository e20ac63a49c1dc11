"""The protobuf wire format, as much as libp2p messages need: encode varint and bytes fields, read any field.

Written from the protobuf encoding guide ("Message Structure", "Varints", "Length-Delimited Records"). A
message is a run of (key, value) records whose key is `field_number << 3 | wire_type`. Reading skips
nothing on its own: callers take the fields they know and ignore the rest, which is how protobuf treats
unknown fields. Groups (wire types 3 and 4) are refused; no libp2p message uses them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import NamedTuple

from peerloom.codec.varint import Buffer, VarintError, decode_varint, encode_varint
from peerloom.errors import ProtocolError

MAX_FIELD_NUMBER = (1 << 29) - 1  # protobuf field numbers are 29 bits
_MAX_VARINT_BYTES = 10  # a protobuf varint carries up to 64 bits and need not be minimal
_VARINT_LIMIT = 1 << 64


class ProtobufError(ProtocolError):
    """A protobuf message is truncated, uses a refused wire type, or a field has the wrong type."""


class WireType(enum.IntEnum):
    """The wire types a field may have; 3 and 4 (groups) and 6 and 7 are refused."""

    VARINT = 0
    I64 = 1
    LEN = 2
    I32 = 5


class Field(NamedTuple):
    """One record of a message: varints and fixed-width values as int (little-endian), LEN as bytes."""

    number: int
    wire_type: WireType
    value: int | bytes

    def as_int(self) -> int:
        """The value of a varint field; ProtobufError when the field was sent with another wire type."""
        if self.wire_type is not WireType.VARINT or not isinstance(self.value, int):
            raise ProtobufError(f"protobuf field {self.number} has wire type {self.wire_type.value}, not a varint")
        return self.value

    def as_bytes(self) -> bytes:
        """The value of a length-delimited field; ProtobufError when the field was sent with another wire type."""
        if self.wire_type is not WireType.LEN or not isinstance(self.value, bytes):
            raise ProtobufError(
                f"protobuf field {self.number} has wire type {self.wire_type.value}, not length-delimited"
            )
        return self.value


def _key(number: int, wire_type: WireType) -> bytes:
    if not 1 <= number <= MAX_FIELD_NUMBER:
        raise ValueError(f"protobuf field number {number} out of range")
    return encode_varint(number << 3 | wire_type, max_bytes=_MAX_VARINT_BYTES)


def encode_varint_field(number: int, value: int) -> bytes:
    """A varint field (uint32/uint64/bool/enum with a non-negative value)."""
    if not 0 <= value < _VARINT_LIMIT:
        raise ValueError(f"{value} is not a 64-bit unsigned protobuf varint")
    return _key(number, WireType.VARINT) + encode_varint(value, max_bytes=_MAX_VARINT_BYTES)


def encode_bytes_field(number: int, value: bytes) -> bytes:
    """A length-delimited field (bytes, string, embedded message)."""
    return _key(number, WireType.LEN) + encode_varint(len(value)) + value


def _read_varint(data: Buffer, pos: int) -> tuple[int, int]:
    try:
        value, pos = decode_varint(data, pos, max_bytes=_MAX_VARINT_BYTES, minimal=False)
    except VarintError as exc:
        raise ProtobufError(f"bad protobuf varint: {exc}") from None
    if value >= _VARINT_LIMIT:
        raise ProtobufError("protobuf varint exceeds 64 bits")
    return value, pos


def iter_fields(data: Buffer) -> Iterator[Field]:
    """Each field of the message in data, in wire order; ProtobufError at the first malformed record.

    Lengths are checked against the bytes left before any slice is taken, so a claimed length costs nothing.
    """
    pos = 0
    size = len(data)
    while pos < size:
        key, pos = _read_varint(data, pos)
        number, raw_type = key >> 3, key & 7
        if not 1 <= number <= MAX_FIELD_NUMBER:
            raise ProtobufError(f"protobuf field number {number} out of range")
        if raw_type == WireType.VARINT:
            value, pos = _read_varint(data, pos)
            yield Field(number, WireType.VARINT, value)
        elif raw_type == WireType.LEN:
            length, pos = _read_varint(data, pos)
            if length > size - pos:
                raise ProtobufError(f"truncated protobuf field {number}: {length} bytes claimed, {size - pos} left")
            yield Field(number, WireType.LEN, bytes(data[pos : pos + length]))
            pos += length
        elif raw_type in (WireType.I64, WireType.I32):
            width = 8 if raw_type == WireType.I64 else 4
            if width > size - pos:
                raise ProtobufError(f"truncated protobuf field {number}")
            yield Field(number, WireType(raw_type), int.from_bytes(data[pos : pos + width], "little"))
            pos += width
        else:
            raise ProtobufError(f"unsupported protobuf wire type {raw_type} (field {number})")
