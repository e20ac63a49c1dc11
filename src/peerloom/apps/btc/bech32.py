"""Bech32 and bech32m (BIP 173, BIP 350) and segwit addresses: witness version 0 in bech32, versions 1 to 16
(taproot is 1) in bech32m, with each network's human-readable part.

    address = encode_address("bcrt", 0, program)       # 'bcrt1q...'
    version, program = decode_address("bcrt", address)  # AddressError for anything else

Decoding is strict as BIP 173/350 require: at most 90 characters, one case, a valid checksum of the right
variant for the version, program lengths 2 to 40 (20 or 32 for version 0), no padding beyond 4 zero bits.
"""

from __future__ import annotations

from peerloom.errors import ProtocolError

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BECH32_CONST = 1
BECH32M_CONST = 0x2BC830A3
MAX_LENGTH = 90
HRP_BY_NETWORK = {"mainnet": "bc", "testnet4": "tb", "signet": "tb", "regtest": "bcrt"}
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_VALUES = {c: i for i, c in enumerate(CHARSET)}


class AddressError(ProtocolError):
    """Text that is not a valid bech32/bech32m string or segwit address (for this network)."""


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GEN[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def bech32_encode(hrp: str, data: list[int], const: int) -> str:
    """`hrp` + '1' + `data` (5-bit values) + the 6-character checksum of the variant `const`."""
    poly = _polymod(_hrp_expand(hrp) + data + [0] * 6) ^ const
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[d] for d in data + checksum)


def bech32_decode(text: str) -> tuple[str, list[int], int]:
    """(hrp, 5-bit data without checksum, variant constant) of a bech32 or bech32m string."""
    if len(text) > MAX_LENGTH:
        raise AddressError(f"longer than {MAX_LENGTH} characters")
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise AddressError("character outside US-ASCII 33-126")
    if text.lower() != text and text.upper() != text:
        raise AddressError("mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise AddressError("no separator, empty human-readable part or short checksum")
    hrp = text[:pos]
    try:
        data = [_VALUES[c] for c in text[pos + 1:]]
    except KeyError as exc:
        raise AddressError(f"invalid data character {exc.args[0]!r}") from None
    const = _polymod(_hrp_expand(hrp) + data)
    if const not in (BECH32_CONST, BECH32M_CONST):
        raise AddressError("bad checksum")
    return hrp, data[:-6], const


def convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    """Regroup `from_bits`-bit values into `to_bits`-bit ones (BIP 173's convertbits)."""
    acc = bits = 0
    out = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = acc << from_bits | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append(acc >> bits & maxv)
    if pad:
        if bits:
            out.append(acc << (to_bits - bits) & maxv)
    elif bits >= from_bits or acc << (to_bits - bits) & maxv:
        raise AddressError("invalid padding")
    return out


def encode_address(hrp: str, version: int, program: bytes) -> str:
    """The segwit address of witness `version` and `program` (bech32 for v0, bech32m after)."""
    const = BECH32_CONST if version == 0 else BECH32M_CONST
    address = bech32_encode(hrp, [version, *convert_bits(program, 8, 5, True)], const)
    decode_address(hrp, address)  # refuses a program no address may carry
    return address


def decode_address(hrp: str, address: str) -> tuple[int, bytes]:
    """(witness version, program) of a segwit address of the network whose prefix is `hrp`."""
    got, data, const = bech32_decode(address)
    if got != hrp:
        raise AddressError(f"address for another network (prefix {got!r}, expected {hrp!r})")
    if not data or data[0] > 16:
        raise AddressError("missing or invalid witness version")
    version = data[0]
    program = bytes(convert_bits(data[1:], 5, 8, False))
    if not 2 <= len(program) <= 40 or (version == 0 and len(program) not in (20, 32)):
        raise AddressError(f"invalid witness program length {len(program)}")
    if const != (BECH32_CONST if version == 0 else BECH32M_CONST):
        raise AddressError("wrong checksum variant for the witness version (BIP 350)")
    return version, program


def script_for_address(hrp: str, address: str) -> bytes:
    """The output script paying `address`: OP_n <program>."""
    version, program = decode_address(hrp, address)
    return bytes((0x50 + version if version else 0, len(program))) + program


def address_for_script(hrp: str, script: bytes) -> str | None:
    """The address of a witness output script, None for any other script."""
    if 4 <= len(script) <= 42 and script[1] == len(script) - 2 and (script[0] == 0 or 0x51 <= script[0] <= 0x60):
        try:
            return encode_address(hrp, script[0] - 0x50 if script[0] else 0, script[2:])
        except AddressError:
            return None
    return None
