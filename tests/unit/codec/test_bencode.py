"""bencode: exact encodings, every strictness rule, spans, and property tests."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerloom.codec.bencode import MAX_DEPTH, BencodeError, decode, decode_with_span, encode


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"i0e"),
        (-42, b"i-42e"),
        (2**70, b"i1180591620717411303424e"),
        (b"", b"0:"),
        (b"spam", b"4:spam"),
        ("ünï", "5:ünï".encode()),
        ([], b"le"),
        ([1, b"a", [b"b"]], b"li1e1:al1:bee"),
        ({}, b"de"),
        ({b"b": 1, "a": b"x"}, b"d1:a1:x1:bi1ee"),
    ],
)
def test_encode_known_values(value, encoded):
    assert encode(value) == encoded


def test_decode_known_values():
    assert decode(b"d3:cow3:moo4:spaml1:a1:bee") == {b"cow": b"moo", b"spam": [b"a", b"b"]}
    assert decode(b"i-3e") == -3
    assert decode(b"0:") == b""


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"", 0),
        (b"i03e", 1),  # leading zero
        (b"i-0e", 1),  # negative zero
        (b"i-e", 1),
        (b"ie", 1),
        (b"i1x2e", 1),
        (b"i12", 0),  # unterminated
        (b"03:abc", 0),  # leading zero in a length
        (b"5:abc", 0),  # length beyond the buffer
        (b"99999999999999999999:x", 0),  # absurd claimed length
        (b"-1:a", 0),
        (b"l", 1),
        (b"li1e", 4),
        (b"d1:a", 4),
        (b"di1ei2ee", 1),  # non-string key
        (b"d1:bi1e1:ai2ee", 7),  # unsorted
        (b"d1:ai1e1:ai2ee", 7),  # duplicate
        (b"i1ei2e", 3),  # trailing data
        (b"x", 0),
    ],
)
def test_decode_rejects_with_offset(data, offset):
    with pytest.raises(BencodeError) as caught:
        decode(data)
    assert caught.value.offset == offset


def test_integer_digit_bound():
    assert decode(b"i" + b"9" * 64 + b"e") == int("9" * 64)
    with pytest.raises(BencodeError, match="too long"):
        decode(b"i" + b"9" * 65 + b"e")
    with pytest.raises(ValueError):
        encode(10**70)


def test_lenient_mode_accepts_unsorted_and_duplicate_keys():
    assert decode(b"d1:bi1e1:ai2ee", strict=False) == {b"b": 1, b"a": 2}
    assert decode(b"d1:ai1e1:ai2ee", strict=False) == {b"a": 2}
    with pytest.raises(BencodeError):
        decode(b"i03e", strict=False)


def test_depth_bound():
    deep_ok = b"l" * MAX_DEPTH + b"e" * MAX_DEPTH
    assert decode(deep_ok) is not None
    too_deep = b"l" * (MAX_DEPTH + 1) + b"e" * (MAX_DEPTH + 1)
    with pytest.raises(BencodeError, match="nesting"):
        decode(too_deep)
    with pytest.raises(BencodeError, match="nesting"):
        decode(b"l" * 100_000)


def test_span_is_the_raw_bytes_of_the_value():
    data = b"d8:announce3:url4:infod4:name1:x6:lengthi1eee"  # info dict is unsorted inside
    value, span = decode_with_span(data, b"info", strict=False)
    assert data[span[0] : span[1]] == b"d4:name1:x6:lengthi1ee"
    assert value[b"info"] == {b"name": b"x", b"length": 1}
    assert decode_with_span(b"d1:ai1ee", b"info")[1] is None
    assert decode_with_span(b"li1ee", b"info")[1] is None
    # A nested key of the same name is not the top-level one.
    _, span = decode_with_span(b"d1:ad4:infoi1ee4:infoi2ee", b"info")
    assert (span[0], span[1]) == (21, 24)


def test_encode_rejects_unsupported():
    for bad in (True, 1.5, None, {1: 2}, object()):
        with pytest.raises(TypeError):
            encode(bad)
    with pytest.raises(ValueError, match="duplicate"):
        encode({"a": 1, b"a": 2})


values = st.recursive(
    st.integers(min_value=-(10**30), max_value=10**30) | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.binary(max_size=8), children, max_size=5),
    max_leaves=30,
)


@given(values)
def test_round_trip(value):
    encoded = encode(value)
    assert decode(encoded) == value
    assert encode(decode(encoded)) == encoded


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_bencode_error(data):
    try:
        value = decode(data)
    except BencodeError:
        return
    assert encode(value) == data  # whatever strict mode accepts is canonical


@given(values, st.data())
def test_mutated_encodings_raise_only_bencode_error(value, data):
    encoded = bytearray(encode(value))
    if encoded:
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(encoded)))
        with contextlib.suppress(BencodeError):
            decode(bytes(encoded[:cut]), strict=data.draw(st.booleans()))


def test_decode_prefix_returns_the_end_offset() -> None:
    from peerloom.codec.bencode import decode_prefix

    assert decode_prefix(b"d1:ai1eeRAW") == ({b"a": 1}, 8)
    with pytest.raises(BencodeError):
        decode_prefix(b"d1:ai1e")
