"""protobuf wire helpers: the encoding guide's examples, every wire type, bounds, and property tests."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerloom.codec.protobuf import (
    Field,
    ProtobufError,
    WireType,
    encode_bytes_field,
    encode_varint_field,
    iter_fields,
)
from peerloom.errors import ProtocolError


def test_encoding_guide_examples():
    # protobuf encoding guide: `a = 150` in field 1 is 08 96 01; `b = "testing"` in field 2 is 12 07 + the text
    assert encode_varint_field(1, 150) == bytes.fromhex("089601")
    assert encode_bytes_field(2, b"testing") == bytes.fromhex("120774657374696e67")
    assert list(iter_fields(bytes.fromhex("089601120774657374696e67"))) == [
        Field(1, WireType.VARINT, 150),
        Field(2, WireType.LEN, b"testing"),
    ]


def test_large_field_numbers_and_values():
    encoded = encode_varint_field(2**29 - 1, 2**64 - 1)
    assert list(iter_fields(encoded)) == [Field(2**29 - 1, WireType.VARINT, 2**64 - 1)]
    assert encode_bytes_field(16, b"")[:2] == b"\x82\x01"  # field 16 needs a two-byte key


@pytest.mark.parametrize(("number", "value"), [(0, 1), (2**29, 1), (1, -1), (1, 2**64)])
def test_encoding_out_of_range_is_a_caller_error(number, value):
    with pytest.raises(ValueError):
        encode_varint_field(number, value)


def test_fixed_width_fields_are_read_little_endian():
    data = b"\x09" + (0x0102030405060708).to_bytes(8, "little") + b"\x15" + (0xA0B0C0D0).to_bytes(4, "little")
    assert list(iter_fields(data)) == [Field(1, WireType.I64, 0x0102030405060708), Field(2, WireType.I32, 0xA0B0C0D0)]


def test_non_minimal_and_ten_byte_varints_are_protobuf_legal():
    assert list(iter_fields(b"\x08\x81\x00")) == [Field(1, WireType.VARINT, 1)]
    assert list(iter_fields(b"\x08" + b"\xff" * 9 + b"\x01")) == [Field(1, WireType.VARINT, 2**64 - 1)]


def test_fields_arrive_in_wire_order_with_duplicates_and_unknowns():
    data = encode_bytes_field(7, b"unknown") + encode_varint_field(1, 5) + encode_varint_field(1, 6)
    assert [(field.number, field.value) for field in iter_fields(data)] == [(7, b"unknown"), (1, 5), (1, 6)]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x08", "truncated"),  # varint value missing
        (b"\x80", "truncated"),  # key cut off
        (b"\x12\x05abc", "truncated"),  # 5 bytes claimed, 3 left
        (b"\x12\xff\xff\xff\xff\x0f", "truncated"),  # a huge claimed length allocates nothing
        (b"\x09\x00\x00\x00", "truncated"),
        (b"\x0d\x00", "truncated"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10"),
        (b"\x08" + b"\xff" * 9 + b"\x02", "64 bits"),
        (b"\x0b", "wire type 3"),  # start group
        (b"\x0c", "wire type 4"),  # end group
        (b"\x0e", "wire type 6"),
        (b"\x0f", "wire type 7"),
        (b"\x00\x01", "field number 0"),
        (b"\x02\x00", "field number 0"),
        (b"\x80\x80\x80\x80\x10\x00", "out of range"),  # field number 2**29
    ],
)
def test_malformed_messages_are_refused(data, match):
    with pytest.raises(ProtobufError, match=match):
        list(iter_fields(data))


def test_fields_before_a_fault_are_yielded_first():
    fields = iter_fields(encode_varint_field(1, 1) + b"\x12\x09")
    assert next(fields) == Field(1, WireType.VARINT, 1)
    with pytest.raises(ProtobufError):
        next(fields)


def test_typed_accessors():
    varint, length_delimited = iter_fields(encode_varint_field(1, 9) + encode_bytes_field(2, b"x"))
    assert varint.as_int() == 9
    assert length_delimited.as_bytes() == b"x"
    with pytest.raises(ProtobufError, match="wire type 0"):
        varint.as_bytes()
    with pytest.raises(ProtobufError, match="wire type 2"):
        length_delimited.as_int()


def test_buffers_of_any_kind_are_read_and_values_are_bytes():
    data = encode_bytes_field(3, b"abc")
    for buffer in (data, bytearray(data), memoryview(data)):
        (field,) = iter_fields(buffer)
        assert type(field.value) is bytes and field.value == b"abc"


def test_protobuf_error_is_a_protocol_error():
    assert issubclass(ProtobufError, ProtocolError)


_fields = st.one_of(
    st.tuples(st.integers(1, 2**29 - 1), st.just(WireType.VARINT), st.integers(0, 2**64 - 1)),
    st.tuples(st.integers(1, 2**29 - 1), st.just(WireType.LEN), st.binary(max_size=40)),
)


@given(st.lists(_fields, max_size=8))
def test_round_trip(fields):
    encoded = b"".join(
        encode_varint_field(number, value) if wire_type is WireType.VARINT else encode_bytes_field(number, value)
        for number, wire_type, value in fields
    )
    assert [tuple(field) for field in iter_fields(encoded)] == fields


@given(st.binary(max_size=64))
def test_random_bytes_give_fields_or_protobuf_error(data):
    try:
        fields = list(iter_fields(data))
    except ProtobufError:
        return
    for field in fields:
        assert 1 <= field.number < 2**29
        assert isinstance(field.value, bytes if field.wire_type is WireType.LEN else int)
