"""Unsigned varints: the multiformats examples, minimality and the 9-byte cap, frames, property tests."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerloom.codec.varint import (
    MAX_VARINT_BYTES,
    VarintError,
    decode_varint,
    encode_frame,
    encode_varint,
    read_frame,
)
from peerloom.errors import ProtocolError

# multiformats/unsigned-varint README, "Spec" examples
SPEC_EXAMPLES = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (255, "ff01"),
    (300, "ac02"),
    (16384, "808001"),
    (2**63 - 1, "ffffffffffffffff7f"),
]


@pytest.mark.parametrize(("value", "hex_bytes"), SPEC_EXAMPLES)
def test_spec_examples(value, hex_bytes):
    encoded = bytes.fromhex(hex_bytes)
    assert encode_varint(value) == encoded
    assert decode_varint(encoded) == (value, len(encoded))
    assert decode_varint(b"\xaa" + encoded + b"\xbb", 1) == (value, 1 + len(encoded))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "truncated"),
        (b"\x80", "truncated"),
        (b"\xff\xff", "truncated"),
        (b"\x81\x00", "minimal"),  # the spec's own example of a non-minimal 1
        (b"\x80\x00", "minimal"),
        (b"\xff\x80\x00", "minimal"),
        (b"\xff" * 8 + b"\x80", "longer than 9"),  # the 9th byte may not continue
        (b"\xff" * 9 + b"\x01", "longer than 9"),  # 2**63 needs 10 bytes
        (b"\x80" * 100, "longer than 9"),
    ],
)
def test_invalid_varints_are_refused(data, match):
    with pytest.raises(VarintError, match=match):
        decode_varint(data)


def test_protobuf_flavour_accepts_ten_bytes_and_non_minimal():
    ten = b"\xff" * 9 + b"\x01"
    assert decode_varint(ten, max_bytes=10, minimal=False) == (2**64 - 1, 10)
    assert decode_varint(b"\x81\x00", max_bytes=10, minimal=False) == (1, 2)
    assert encode_varint(2**64 - 1, max_bytes=10) == ten


@pytest.mark.parametrize("value", [-1, 2**63, 2**70])
def test_encoding_out_of_range_is_a_caller_error(value):
    with pytest.raises(ValueError):
        encode_varint(value)


def test_offset_outside_the_buffer_is_a_caller_error():
    with pytest.raises(ValueError):
        decode_varint(b"\x01", 2)
    with pytest.raises(ValueError):
        read_frame(b"\x01", 10, -1)


def test_varint_error_is_a_protocol_error():
    assert issubclass(VarintError, ProtocolError)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_round_trip_is_minimal(value):
    encoded = encode_varint(value)
    assert len(encoded) == max(1, -(-value.bit_length() // 7))
    assert len(encoded) <= MAX_VARINT_BYTES
    assert decode_varint(encoded) == (value, len(encoded))


@given(st.binary(max_size=20), st.integers(min_value=0, max_value=20))
def test_random_bytes_give_a_value_or_varint_error(data, offset):
    offset = min(offset, len(data))
    try:
        value, end = decode_varint(data, offset)
    except VarintError:
        return
    assert encode_varint(value) == data[offset:end]


# --- frames ---------------------------------------------------------------------------------------------------------


def test_frame_round_trip_and_offsets():
    buffer = encode_frame(b"/multistream/1.0.0\n") + encode_frame(b"") + encode_frame(b"x" * 300)
    first = read_frame(buffer, 1024)
    assert first == (b"/multistream/1.0.0\n", 20)
    second = read_frame(buffer, 1024, first[1])
    assert second == (b"", 21)
    third = read_frame(buffer, 1024, second[1])
    assert third == (b"x" * 300, len(buffer))
    assert encode_frame(b"x" * 300)[:2] == b"\xac\x02"


def test_every_prefix_of_a_frame_is_incomplete():
    frame = encode_frame(b"y" * 200)
    for cut in range(len(frame)):
        assert read_frame(frame[:cut], 200) is None
        assert read_frame(bytearray(frame[:cut]), 200) is None
    assert read_frame(memoryview(frame), 200) == (b"y" * 200, len(frame))


def test_frame_over_the_limit_is_refused_before_its_payload_arrives():
    with pytest.raises(VarintError, match="exceeds the limit"):
        read_frame(encode_varint(101), 100)
    # a length prefix that is already longer than the limit's own varint cannot end below the limit
    with pytest.raises(VarintError, match="longer than the limit"):
        read_frame(b"\x80\x80", 100)
    assert read_frame(b"\x80", 200) is None  # 200 needs two bytes, so one continuation byte may still fit
    with pytest.raises(VarintError, match="longer than 9"):
        read_frame(b"\x80" * 9, 2**62)


def test_non_minimal_frame_length_is_refused():
    with pytest.raises(VarintError, match="minimal"):
        read_frame(b"\x85\x00hello", 100)


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=70))
def test_random_buffers_give_a_frame_none_or_varint_error(data, max_length):
    try:
        result = read_frame(data, max_length)
    except VarintError:
        return
    if result is not None:
        payload, end = result
        assert len(payload) <= max_length
        assert encode_frame(payload) == data[:end]


@given(st.lists(st.binary(max_size=300), max_size=5), st.data())
def test_frames_split_anywhere_reassemble(payloads, data):
    stream = b"".join(encode_frame(payload) for payload in payloads)
    cut = data.draw(st.integers(min_value=0, max_value=len(stream)))
    buffer = bytearray(stream[:cut])
    received = []
    for chunk in (b"", stream[cut:]):
        buffer += chunk
        while (frame := read_frame(buffer, 300)) is not None:
            received.append(frame[0])
            del buffer[: frame[1]]
    assert received == payloads
    assert not buffer
