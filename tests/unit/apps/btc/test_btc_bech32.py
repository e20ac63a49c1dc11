"""Bech32/bech32m and segwit addresses against the test vectors of BIP 173 and BIP 350 (the lists of the
reference implementation, github.com/sipa/bech32 ref/python/tests.py, which merges both BIPs' vectors)."""

from __future__ import annotations

import pytest

from peerloom.apps.btc.bech32 import (
    BECH32_CONST,
    BECH32M_CONST,
    AddressError,
    address_for_script,
    bech32_decode,
    decode_address,
    encode_address,
    script_for_address,
)

VALID_BECH32 = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]
VALID_BECH32M = [
    "A1LQFN3A",
    "a1lqfn3a",
    "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
    "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
    "11llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllludsr8",
    "split1checkupstagehandshakeupstreamerranterredcaperredlc445v",
    "?1v759aa",
]
INVALID_STRINGS = [
    " 1nwldj5", "\x7f1axkwrx", "\x801eym55h",
    "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
    "pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v", "li1dgmt3", "de1lg7wt\xff", "A1G7SGD8", "10a06t8", "1qzzfhee",
    " 1xj0phk", "\x7f1g6xzxy", "\x801vctc34",
    "an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11d6pts4",
    "qyrz8wqd2c9m", "1qyrz8wqd2c9m", "y1b0jsk6g", "lt1igcx5c0", "in1muywd", "mm1crxm3i", "au1s5cgom", "M1VUXWEZ",
    "16plkw9", "1p2gdwpf",
]
VALID_ADDRESSES = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
     "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"),
    ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
     "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("BC1SW50QGDZ25J", "6002751e"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "5210751e76e8199196d454941c45d1b3a323"),
    ("tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
     "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    ("tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
     "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
     "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
]
INVALID_ADDRESSES = [
    "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",  # invalid HRP
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # bech32 instead of bech32m
    "tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf",
    "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",  # bech32m instead of bech32
    "tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47",
    "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",  # invalid character in checksum
    "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",  # invalid witness version
    "bc1pw5dgrnzv",  # program of 1 byte
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",  # 41 bytes
    "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",  # 16 bytes for version 0
    "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq",  # mixed case
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",  # more than 4 padding bits
    "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j",  # non-zero padding
    "bc1gmk9yu",  # empty data
]


@pytest.mark.parametrize(("text", "const"), [(t, BECH32_CONST) for t in VALID_BECH32]
                         + [(t, BECH32M_CONST) for t in VALID_BECH32M])
def test_valid_strings_decode_with_their_variant_and_one_flipped_character_fails(text: str, const: int) -> None:
    assert bech32_decode(text)[2] == const
    pos = text.rfind("1")
    with pytest.raises(AddressError):
        bech32_decode(text[:pos + 1] + chr(ord(text[pos + 1]) ^ 1) + text[pos + 2:])


@pytest.mark.parametrize("text", INVALID_STRINGS)
def test_invalid_strings_are_refused(text: str) -> None:
    with pytest.raises(AddressError):
        bech32_decode(text)


@pytest.mark.parametrize(("address", "script"), VALID_ADDRESSES)
def test_valid_addresses_give_their_script_and_encode_back(address: str, script: str) -> None:
    hrp = address.lower()[:2]
    assert script_for_address(hrp, address).hex() == script
    version, program = decode_address(hrp, address)
    assert encode_address(hrp, version, program) == address.lower()
    assert address_for_script(hrp, bytes.fromhex(script)) == address.lower()


@pytest.mark.parametrize("address", INVALID_ADDRESSES)
def test_invalid_addresses_are_refused(address: str) -> None:
    for hrp in ("bc", "tb"):
        with pytest.raises(AddressError):
            decode_address(hrp, address)


@pytest.mark.parametrize(("hrp", "version", "length"), [("BC", 0, 20), ("bc", 0, 21), ("bc", 17, 32), ("bc", 1, 1),
                                                         ("bc", 16, 41)])
def test_encoding_an_impossible_address_fails(hrp: str, version: int, length: int) -> None:
    with pytest.raises(AddressError):
        encode_address(hrp, version, bytes(length))


def test_an_address_of_another_network_is_refused() -> None:
    with pytest.raises(AddressError, match="another network"):
        decode_address("bcrt", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")
    assert address_for_script("bcrt", b"\x76\xa9\x14" + bytes(20) + b"\x88\xac") is None
