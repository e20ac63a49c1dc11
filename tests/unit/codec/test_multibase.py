"""multibase: the multiformats test-suite vectors, base58btc vectors, strictness, bounds, property tests."""

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerloom.codec.multibase import (
    MAX_TEXT_LENGTH,
    MultibaseError,
    b16decode,
    b32decode,
    b32encode,
    b58decode,
    b58encode,
    multibase_decode,
    multibase_encode,
)
from peerloom.errors import ProtocolError

# multiformats/multibase tests/basic.csv, leading_zero.csv and two_leading_zeros.csv
SUITE = [
    (b"yes mani !", "base58btc", "z7paNL19xttacUY"),
    (b"yes mani !", "base32", "bpfsxgidnmfxgsibb"),
    (b"yes mani !", "base32upper", "BPFSXGIDNMFXGSIBB"),
    (b"yes mani !", "base16", "f796573206d616e692021"),
    (b"yes mani !", "base16upper", "F796573206D616E692021"),
    (b"\x00yes mani !", "base58btc", "z17paNL19xttacUY"),
    (b"\x00yes mani !", "base32", "bab4wk4zanvqw42jaee"),
    (b"\x00yes mani !", "base32upper", "BAB4WK4ZANVQW42JAEE"),
    (b"\x00yes mani !", "base16", "f00796573206d616e692021"),
    (b"\x00\x00yes mani !", "base58btc", "z117paNL19xttacUY"),
    (b"\x00\x00yes mani !", "base32", "baaahszltebwwc3tjeaqq"),
    (b"\x00\x00yes mani !", "base16upper", "F0000796573206D616E692021"),
]


@pytest.mark.parametrize(("data", "base", "text"), SUITE)
def test_multibase_suite(data, base, text):
    assert multibase_encode(data, base) == text
    assert multibase_decode(text) == data


@pytest.mark.parametrize("text", ["F68656c6c6f20776F726C64", "f68656c6c6f20776F726C64", "bnbswy3dpeB3W64TMMQ"])
def test_base16_and_base32_decode_in_any_case(text):
    # multiformats/multibase tests/case_insensitivity.csv
    assert multibase_decode(text) == b"hello world"


# base58btc vectors of the IETF base58 draft (draft-msporny-base58), bitcoin alphabet
@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", ""),
        (b"\x00", "1"),
        (b"\x00\x00\x00", "111"),
        (b"Hello World!", "2NEpo7TZRRrLZSi2U"),
        (
            b"The quick brown fox jumps over the lazy dog.",
            "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z",
        ),
        (bytes.fromhex("0000287fb4cd"), "11233QC4"),
        (b"\x39", "z"),
        (b"\x3a", "21"),
    ],
)
def test_base58btc_vectors(data, text):
    assert b58encode(data) == text
    assert b58decode(text) == data


def test_rfc4648_base32_vectors_unpadded_lower_case():
    # RFC 4648 section 10, without the padding
    for data, text in [(b"", ""), (b"f", "my"), (b"fo", "mzxq"), (b"foo", "mzxw6"), (b"foob", "mzxw6yq")]:
        assert b32encode(data) == text
        assert b32decode(text) == data
    assert b32encode(b"fooba") == "mzxw6ytb"
    assert b32encode(b"foobar") == "mzxw6ytboi"


@pytest.mark.parametrize(
    "text",
    ["0", "O", "I", "l", "+", " 1", "1\n", "é"],
)
def test_base58_refuses_characters_outside_the_alphabet(text):
    with pytest.raises(MultibaseError, match="base58btc character"):
        b58decode(text)


@pytest.mark.parametrize(
    "text",
    [
        "m",  # one character cannot hold a byte
        "mzx",  # three characters neither
        "mzxw6y",  # nor six
        "mzxw6===",  # padding is not part of the 'b' form
        "mzxw1",  # '1' is not in the alphabet
        "mz xq",
        "mz",  # 10 bits for one byte: the last two must be zero
        "mzxr",
    ],
)
def test_base32_refuses_bad_text(text):
    with pytest.raises(MultibaseError):
        b32decode(text)


@pytest.mark.parametrize("text", ["abc", "0g", " 00", "00 ", "\u0660\u0660"])
def test_base16_refuses_bad_text(text):
    with pytest.raises(MultibaseError):
        b16decode(text)


@pytest.mark.parametrize("text", ["", "m", "uAAB5ZXMgbWFuaSAh", "k2lcpzo5yikidynfl", "Qm", "Z7Pznk19XTTzBtx"])
def test_unknown_or_missing_prefixes_are_refused(text):
    with pytest.raises(MultibaseError):
        multibase_decode(text)


def test_unknown_base_to_encode_is_a_caller_error():
    with pytest.raises(ValueError):
        multibase_encode(b"x", "base64")


@pytest.mark.parametrize("decode", [b58decode, b32decode, b16decode, multibase_decode])
def test_long_text_is_refused_before_any_work(decode):
    started = time.perf_counter()
    with pytest.raises(MultibaseError, match="longer than"):
        decode("z" + "2" * 10_000_000)
    assert time.perf_counter() - started < 0.5


def test_base58_at_the_length_limit_is_cheap():
    text = "z" * MAX_TEXT_LENGTH
    started = time.perf_counter()
    assert b58encode(b58decode(text)) == text
    assert time.perf_counter() - started < 0.5


def test_multibase_error_is_a_protocol_error():
    assert issubclass(MultibaseError, ProtocolError)


@given(st.binary(max_size=200), st.sampled_from(["base58btc", "base32", "base32upper", "base16", "base16upper"]))
def test_round_trip(data, base):
    assert multibase_decode(multibase_encode(data, base)) == data


@given(st.text(max_size=80))
def test_random_text_gives_bytes_or_multibase_error(text):
    try:
        data = multibase_decode(text)
    except MultibaseError:
        return
    assert isinstance(data, bytes)


@given(st.text(alphabet="123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz", max_size=60))
def test_every_base58_string_is_canonical(text):
    assert b58encode(b58decode(text)) == text
