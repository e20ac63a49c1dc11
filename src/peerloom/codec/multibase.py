"""base58btc, base32 (RFC 4648, no padding) and base16, bare or behind a multibase prefix.

Multibase (multiformats/multibase, multibase.csv) names the encoding with one leading character: 'z'
base58btc, 'b'/'B' base32 lower/upper, 'f'/'F' base16 lower/upper. Decoding base32 and base16 ignores
case, as the multibase test suite asks. Text longer than MAX_TEXT_LENGTH is refused before any work, which
also bounds the quadratic big-integer arithmetic of base58.
"""

from __future__ import annotations

import base64
import binascii

from peerloom.errors import ProtocolError

MAX_TEXT_LENGTH = 1024

BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_DIGITS = {char: index for index, char in enumerate(BASE58_ALPHABET)}
_BASE32_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_BASE16_CHARS = frozenset("0123456789abcdef")
# unpadded base32 text of whole bytes never has 1, 3 or 6 characters in its last 8-character group
_BASE32_BAD_REMAINDERS = frozenset((1, 3, 6))

_PREFIXES = {"base58btc": "z", "base32": "b", "base32upper": "B", "base16": "f", "base16upper": "F"}


class MultibaseError(ProtocolError):
    """Text that is not valid in its base, carries an unknown multibase prefix, or is too long."""


def _check_length(text: str) -> None:
    if len(text) > MAX_TEXT_LENGTH:
        raise MultibaseError(f"encoded text longer than {MAX_TEXT_LENGTH} characters")


def b58encode(data: bytes) -> str:
    """base58btc (bitcoin alphabet): each leading zero byte becomes '1', the rest is a base-58 number."""
    zeros = len(data) - len(data.lstrip(b"\x00"))
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, digit = divmod(number, 58)
        digits.append(BASE58_ALPHABET[digit])
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str) -> bytes:
    """The bytes of base58btc text; MultibaseError for a character outside the alphabet."""
    _check_length(text)
    number = 0
    for char in text:
        digit = _BASE58_DIGITS.get(char)
        if digit is None:
            raise MultibaseError(f"invalid base58btc character {char!r}")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return bytes(zeros) + body


def b32encode(data: bytes) -> str:
    """RFC 4648 base32, lower case, without padding (the multibase 'b' form)."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def b32decode(text: str) -> bytes:
    """The bytes of unpadded base32 text in either case; refuses padding and non-canonical trailing bits."""
    _check_length(text)
    lower = text.lower()
    # isascii: str.lower() maps KELVIN SIGN (U+212A) to 'k', which would let non-ASCII text through
    if not text.isascii() or not _BASE32_CHARS.issuperset(lower) or len(lower) % 8 in _BASE32_BAD_REMAINDERS:
        raise MultibaseError("invalid base32 text")
    data = base64.b32decode(lower.upper() + "=" * (-len(lower) % 8))
    if b32encode(data) != lower:  # set bits after the last whole byte
        raise MultibaseError("non-canonical base32 text")
    return data


def b16decode(text: str) -> bytes:
    """The bytes of hex text in either case."""
    _check_length(text)
    lower = text.lower()
    if not _BASE16_CHARS.issuperset(lower):
        raise MultibaseError("invalid base16 text")
    try:
        return binascii.unhexlify(lower)
    except binascii.Error:
        raise MultibaseError("base16 text of odd length") from None


def multibase_encode(data: bytes, base: str = "base32") -> str:
    """data in the named base behind its multibase prefix: base58btc, base32, base32upper, base16 or base16upper."""
    prefix = _PREFIXES.get(base)
    if prefix is None:
        raise ValueError(f"unsupported multibase {base!r}")
    if base == "base58btc":
        body = b58encode(data)
    elif base.startswith("base32"):
        body = b32encode(data)
    else:
        body = data.hex()
    return prefix + (body.upper() if base.endswith("upper") else body)


def multibase_decode(text: str) -> bytes:
    """The bytes of multibase text; MultibaseError for an empty string, an unknown prefix or bad text."""
    _check_length(text)
    if not text:
        raise MultibaseError("empty multibase text")
    prefix, body = text[0], text[1:]
    if prefix == "z":
        return b58decode(body)
    if prefix in "bB":
        return b32decode(body)
    if prefix in "fF":
        return b16decode(body)
    raise MultibaseError(f"unsupported multibase prefix {prefix!r}")
