"""Unsigned varints (multiformats unsigned-varint, LEB128) and varint-length-prefixed frames.

Multiformats varints are minimally encoded and at most 9 bytes long (63 bits), and decoders must refuse
anything else (unsigned-varint spec, "Practical maximum of 9 bytes" and "minimally encoded"). Protobuf
reads the same wire format with looser rules; it passes `max_bytes=10, minimal=False`.
"""

from __future__ import annotations

from peerloom.errors import ProtocolError

MAX_VARINT_BYTES = 9

Buffer = bytes | bytearray | memoryview


class VarintError(ProtocolError):
    """A varint or a varint-length-prefixed frame is truncated, overlong, not minimal or too large."""


def encode_varint(value: int, *, max_bytes: int = MAX_VARINT_BYTES) -> bytes:
    """The minimal varint of `value`; ValueError (a caller's bug) when it is negative or needs more than max_bytes."""
    if value < 0 or value >= 1 << (7 * max_bytes):
        raise ValueError(f"{value} does not fit a {max_bytes}-byte unsigned varint")
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _scan(data: Buffer, offset: int, max_bytes: int, minimal: bool) -> tuple[int, int] | None:
    """(value, offset after it), or None when data ends inside the varint; VarintError when it is invalid."""
    value = 0
    shift = 0
    end = min(len(data), offset + max_bytes)
    pos = offset
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if minimal and byte == 0 and pos - offset > 1:
                raise VarintError("varint is not minimally encoded")
            return value, pos
        shift += 7
    if pos - offset >= max_bytes:
        raise VarintError(f"varint longer than {max_bytes} bytes")
    return None


def decode_varint(
    data: Buffer, offset: int = 0, *, max_bytes: int = MAX_VARINT_BYTES, minimal: bool = True
) -> tuple[int, int]:
    """(value, offset just past it) of the varint at `offset`; VarintError when truncated or invalid."""
    if offset < 0 or offset > len(data):
        raise ValueError("offset outside the buffer")
    result = _scan(data, offset, max_bytes, minimal)
    if result is None:
        raise VarintError("truncated varint")
    return result


def encode_frame(payload: bytes) -> bytes:
    """payload prefixed with its length as a varint (the framing of multistream-select and identify)."""
    return encode_varint(len(payload)) + payload


def read_frame(data: Buffer, max_length: int, offset: int = 0) -> tuple[bytes, int] | None:
    """(payload, offset after it) of the length-prefixed frame at `offset`, or None if data holds only part of it.

    A length over max_length raises VarintError as soon as the prefix shows it, before the payload arrives,
    so a peer cannot make the caller buffer more than max_length plus a few bytes.
    """
    if offset < 0 or offset > len(data):
        raise ValueError("offset outside the buffer")
    prefix_limit = len(encode_varint(max_length))
    result = _scan(data, offset, MAX_VARINT_BYTES, True)
    if result is None:
        if len(data) - offset >= prefix_limit:  # a longer minimal prefix can only hold a larger length
            raise VarintError(f"frame longer than the limit of {max_length} bytes")
        return None
    length, start = result
    if length > max_length:
        raise VarintError(f"frame of {length} bytes exceeds the limit of {max_length} bytes")
    if len(data) - start < length:
        return None
    return bytes(data[start : start + length]), start + length
