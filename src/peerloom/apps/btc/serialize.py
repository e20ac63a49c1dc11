"""Bitcoin's wire serialization: little-endian integers, CompactSize lengths, length-prefixed bytes, and
double-SHA-256.

`Reader` is bounded: every length it reads is checked against the bytes actually left (and a caller's
maximum) before anything is sliced or allocated, and every failure is one `BtcError`.
"""

from __future__ import annotations

import hashlib
import struct

from peerloom.errors import ProtocolError

MAX_COMPACT_SIZE = 0x02000000  # Core's MAX_SIZE (serialize.h): no CompactSize above 32 MiB is accepted


class BtcError(ProtocolError):
    """Bitcoin data that breaks the format or a consensus/protocol rule: its sender is at fault."""


def sha256d(data: bytes | memoryview) -> bytes:
    """SHA-256 applied twice: Bitcoin's hash of headers, transactions, merkle nodes and message checksums."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def hash_hex(digest: bytes) -> str:
    """A hash as Bitcoin displays it: the little-endian digest byte-reversed, in hex."""
    return digest[::-1].hex()


def hash_from_hex(text: str) -> bytes:
    """The inverse of `hash_hex`."""
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("a hash is 32 bytes")
    return raw[::-1]


def compact_size(n: int) -> bytes:
    """The CompactSize encoding of `n` (1, 3, 5 or 9 bytes, the shortest that holds it)."""
    if n < 0:
        raise ValueError("CompactSize is unsigned")
    if n < 0xFD:
        return bytes((n,))
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def var_bytes(data: bytes) -> bytes:
    """`data` prefixed with its CompactSize length."""
    return compact_size(len(data)) + data


class Reader:
    """Reads Bitcoin-serialized fields from a buffer, front to back, never past its end."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self._data = memoryview(data).cast("B")
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def bytes(self, n: int) -> bytes:
        """The next `n` bytes; a `BtcError` if fewer are left."""
        if n < 0 or n > self.remaining:
            raise BtcError(f"truncated: wanted {n} bytes, {self.remaining} left")
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += n
        return out

    def u8(self) -> int:
        return self.bytes(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.bytes(2), "little")

    def u16be(self) -> int:
        return int.from_bytes(self.bytes(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.bytes(4), "little")

    def i32(self) -> int:
        return struct.unpack("<i", self.bytes(4))[0]

    def u64(self) -> int:
        return int.from_bytes(self.bytes(8), "little")

    def i64(self) -> int:
        return struct.unpack("<q", self.bytes(8))[0]

    def compact_size(self, maximum: int = MAX_COMPACT_SIZE) -> int:
        """A CompactSize, required to be canonical (shortest form) and at most `maximum`."""
        first = self.u8()
        if first < 0xFD:
            n = first
        elif first == 0xFD:
            n = self.u16()
            if n < 0xFD:
                raise BtcError("non-canonical CompactSize")
        elif first == 0xFE:
            n = self.u32()
            if n <= 0xFFFF:
                raise BtcError("non-canonical CompactSize")
        else:
            n = self.u64()
            if n <= 0xFFFFFFFF:
                raise BtcError("non-canonical CompactSize")
        if n > maximum:
            raise BtcError(f"CompactSize {n} is above the limit {maximum}")
        return n

    def count(self, item_size: int, maximum: int = MAX_COMPACT_SIZE) -> int:
        """A CompactSize count of items at least `item_size` bytes each, bounded by the bytes left, so a
        claimed count can never make the caller loop (or allocate) beyond what the buffer holds."""
        n = self.compact_size(maximum)
        if n * max(item_size, 1) > self.remaining:
            raise BtcError(f"count {n} of {item_size}-byte items exceeds the {self.remaining} bytes left")
        return n

    def var_bytes(self, maximum: int = MAX_COMPACT_SIZE) -> bytes:
        """CompactSize-prefixed bytes, the length checked against what is left before slicing."""
        return self.bytes(self.count(1, maximum))

    def end(self) -> None:
        """Require that every byte has been read (trailing data is malformed)."""
        if self.remaining:
            raise BtcError(f"{self.remaining} trailing bytes")
