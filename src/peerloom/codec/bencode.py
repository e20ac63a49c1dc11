"""Bencode (BEP 3), sans-I/O: `encode` and a strict, bounded `decode`.

Decoded values are `int`, `bytes`, `list` and `dict` with `bytes` keys. The decoder never allocates
more than the input it was given: a string's claimed length is checked against the bytes left before
it is sliced, integers have a bounded number of digits and nesting has a bounded depth.

`decode_with_span` also returns where one top-level key's value sits in the input, because a
torrent's info-hash is the hash of the info dictionary's bytes exactly as they came, not of a
re-encoding of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peerloom.errors import ProtocolError

MAX_DEPTH = 64
"""Deepest nesting of lists and dicts accepted by default (real torrents need fewer than 20)."""

MAX_INT_DIGITS = 64
"""Longest integer accepted, in decimal digits; real values fit in 64 bits (20 digits)."""

_MAX_LEN_DIGITS = 16  # a string length of 16 digits is already far beyond any buffer

_DIGITS = frozenset(b"0123456789")


class BencodeError(ProtocolError):
    """Input that is not valid bencode; `offset` is where in the input the fault was found."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset


def encode(value: Any) -> bytes:
    """Bencode `value` (int, bytes, str as UTF-8, list/tuple, dict with bytes or str keys).

    Dict keys are written sorted by their raw bytes, as BEP 3 requires.
    """
    out: list[bytes] = []
    _encode_into(value, out, 0)
    return b"".join(out)


def _encode_into(value: Any, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("bencode: value nested too deeply")
    if isinstance(value, bool):
        raise TypeError("bencode: bool is not a bencode type (use 0 or 1)")
    if isinstance(value, int):
        text = str(value).encode()
        if len(text.lstrip(b"-")) > MAX_INT_DIGITS:
            raise ValueError("bencode: integer too large")
        out += (b"i", text, b"e")
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        out += (str(len(raw)).encode(), b":", raw)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out += (str(len(raw)).encode(), b":", raw)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode_into(item, out, depth + 1)
        out.append(b"e")
    elif isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            raw_key = key.encode("utf-8") if isinstance(key, str) else key
            if not isinstance(raw_key, bytes):
                raise TypeError(f"bencode: dict key must be bytes or str, not {type(key).__name__}")
            items.append((raw_key, item))
        items.sort(key=lambda pair: pair[0])
        out.append(b"d")
        previous = None
        for raw_key, item in items:
            if raw_key == previous:
                raise ValueError(f"bencode: duplicate dict key {raw_key!r}")
            previous = raw_key
            out += (str(len(raw_key)).encode(), b":", raw_key)
            _encode_into(item, out, depth + 1)
        out.append(b"e")
    else:
        raise TypeError(f"bencode: cannot encode {type(value).__name__}")


def decode(data: bytes, *, strict: bool = True, max_depth: int = MAX_DEPTH) -> Any:
    """Decode one bencoded value that must fill `data` exactly.

    With `strict`, dict keys must be sorted and unique (BEP 3); without it, unsorted keys are
    accepted and a repeated key keeps its last value. Everything else is always enforced.
    """
    value, _ = decode_with_span(data, None, strict=strict, max_depth=max_depth)
    return value


def decode_with_span(
    data: bytes, key: bytes | None, *, strict: bool = True, max_depth: int = MAX_DEPTH
) -> tuple[Any, tuple[int, int] | None]:
    """Decode like `decode`, and return the (start, end) offsets of the top-level dict's `key` value.

    The span is None when the input is not a dict or has no such key.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    decoder = _Decoder(data, strict, max_depth, key)
    value = decoder.value(0)
    if decoder.pos != len(data):
        raise BencodeError("trailing data after the value", decoder.pos)
    return value, decoder.span


def decode_prefix(data: bytes, *, strict: bool = False, max_depth: int = MAX_DEPTH) -> tuple[Any, int]:
    """Decode the value at the start of `data`; return it and the offset where it ends (data may follow,
    as in BEP 9 metadata messages)."""
    if not isinstance(data, bytes):
        data = bytes(data)
    decoder = _Decoder(data, strict, max_depth, None)
    value = decoder.value(0)
    return value, decoder.pos


class _Decoder:
    __slots__ = ("data", "end", "max_depth", "pos", "span", "span_key", "strict")

    def __init__(self, data: bytes, strict: bool, max_depth: int, span_key: bytes | None) -> None:
        self.data = data
        self.end = len(data)
        self.pos = 0
        self.strict = strict
        self.max_depth = max_depth
        self.span_key = span_key
        self.span: tuple[int, int] | None = None

    def value(self, depth: int) -> Any:
        if self.pos >= self.end:
            raise BencodeError("unexpected end of input", self.pos)
        lead = self.data[self.pos]
        if lead in _DIGITS:
            return self.string()
        if lead == 0x69:  # i
            return self.integer()
        if lead == 0x6C or lead == 0x64:  # l d
            if depth >= self.max_depth:
                raise BencodeError(f"nesting deeper than {self.max_depth}", self.pos)
            return self.list(depth) if lead == 0x6C else self.dict(depth)
        raise BencodeError(f"unexpected byte {bytes([lead])!r}", self.pos)

    def integer(self) -> int:
        start = self.pos + 1
        stop = self.data.find(b"e", start, start + MAX_INT_DIGITS + 2)
        if stop < 0:
            if self.data.find(b"e", start) < 0:
                raise BencodeError("unterminated integer", self.pos)
            raise BencodeError("integer too long", self.pos)
        text = self.data[start:stop]
        digits = text[1:] if text[:1] == b"-" else text
        if not digits or not all(c in _DIGITS for c in digits):
            raise BencodeError("malformed integer", start)
        if len(digits) > MAX_INT_DIGITS:
            raise BencodeError("integer too long", self.pos)
        if digits[0] == 0x30 and (len(digits) > 1 or text[:1] == b"-"):
            raise BencodeError("integer with a leading zero or negative zero", start)
        self.pos = stop + 1
        return int(text)

    def string(self) -> bytes:
        start = self.pos
        colon = self.data.find(b":", start, start + _MAX_LEN_DIGITS + 1)
        if colon < 0:
            raise BencodeError("malformed string length", start)
        digits = self.data[start:colon]
        if not all(c in _DIGITS for c in digits):
            raise BencodeError("malformed string length", start)
        if digits[0] == 0x30 and len(digits) > 1:
            raise BencodeError("string length with a leading zero", start)
        length = int(digits)
        begin = colon + 1
        if length > self.end - begin:
            raise BencodeError(f"string of {length} bytes runs past the end of input", start)
        self.pos = begin + length
        return self.data[begin : self.pos]

    def list(self, depth: int) -> list[Any]:
        self.pos += 1
        items = []
        while True:
            if self.pos >= self.end:
                raise BencodeError("unterminated list", self.pos)
            if self.data[self.pos] == 0x65:  # e
                self.pos += 1
                return items
            items.append(self.value(depth + 1))

    def dict(self, depth: int) -> dict[bytes, Any]:
        self.pos += 1
        result: dict[bytes, Any] = {}
        previous: bytes | None = None
        watch = depth == 0 and self.span_key is not None
        while True:
            if self.pos >= self.end:
                raise BencodeError("unterminated dict", self.pos)
            if self.data[self.pos] == 0x65:  # e
                self.pos += 1
                return result
            key_at = self.pos
            if self.data[key_at] not in _DIGITS:
                raise BencodeError("dict key is not a string", key_at)
            key = self.string()
            if self.strict and previous is not None and key <= previous:
                problem = "duplicate" if key == previous else "unsorted"
                raise BencodeError(f"{problem} dict key {key[:40]!r}", key_at)
            previous = key
            value_at = self.pos
            result[key] = self.value(depth + 1)
            if watch and key == self.span_key:
                self.span = (value_at, self.pos)
