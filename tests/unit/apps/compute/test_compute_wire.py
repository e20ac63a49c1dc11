"""The messages of /peerloom/compute/1.0.0: every message round-trips, and every malformed or oversized frame is
one ComputeWireError (a ProtocolError), raised before an oversized body is buffered."""

from __future__ import annotations

import pytest

from peerloom.apps.compute.wire import (
    MAX_CREDITS,
    Blob,
    Capacity,
    ComputeWireError,
    Credit,
    Credits,
    FrameReader,
    GetBlob,
    NoBlob,
    QueryCapacity,
    Refused,
    RunUnit,
    UnitDone,
    UnitFailed,
    decode,
    encode,
)
from peerloom.codec.varint import encode_varint
from peerloom.errors import ProtocolError

JOB = bytes(range(16))
H1, H2 = b"\x11" * 32, b"\x22" * 32
MESSAGES = [
    QueryCapacity(),
    Capacity(2, 256 << 20, 86400, True),
    Capacity(0, 0, 0, False),
    RunUnit(JOB, 7, H1, H2, 10**10, 1 << 28, 60000, 1 << 20, b"input bytes", (Credit(JOB, 3, 12345),)),
    RunUnit(JOB, 0, H1, H2, 1, 65536, 1, 0, None),
    RunUnit(JOB, 0, H1, H2, 1, 65536, 1, 0, b""),
    UnitDone(b"37 1.4e+04 14.8\n", 675920, 12),
    UnitFailed("OutOfFuel", "the unit used all of its fuel", 99),
    Refused("busy: every task slot is taken"),
    GetBlob(H1),
    Blob(b"\0asm\x01\0\0\0"),
    NoBlob(),
    Credits(tuple(Credit(JOB, i, i * 10) for i in range(MAX_CREDITS))),
    Credits(()),
]


def frame(message: object) -> bytes:
    reader = FrameReader(1 << 20)
    reader.feed(encode(message))  # type: ignore[arg-type]
    payload = reader.next_frame()
    assert payload is not None
    return payload


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message):
    assert decode(frame(message)) == message


def test_a_frame_arriving_in_pieces_is_read_whole():
    data = encode(MESSAGES[3])
    reader = FrameReader()
    for i in range(len(data)):
        assert reader.next() is None
        reader.feed(data[i:i + 1])
    assert reader.next() == MESSAGES[3]


def test_a_length_over_the_bound_fails_before_the_body_arrives():
    reader = FrameReader(max_frame=1000)
    reader.feed(encode_varint(1001))
    with pytest.raises(ComputeWireError, match="exceeds"):
        reader.next()
    assert issubclass(ComputeWireError, ProtocolError)


def test_an_output_over_the_readers_bound_is_refused():
    big = encode(UnitDone(b"x" * 5000, 1, 1))
    reader = FrameReader(max_frame=4096)
    reader.feed(big[:20])
    with pytest.raises(ComputeWireError):
        reader.next()


@pytest.mark.parametrize("payload", [
    b"",
    b"\x00",
    b"\x63",
    b"\x02\x00\x01",  # cut short
    b"\x02" + b"\x00" * 18 + b"\x02",  # a flag of 2
    bytes([1]) + b"x",  # stray bytes
    bytes([6]) + (10**6).to_bytes(4, "big"),  # a text longer than its bound
    bytes([6]) + (2).to_bytes(4, "big") + b"\xff\xfe",  # not UTF-8
    bytes([10]) + (MAX_CREDITS + 1).to_bytes(2, "big"),
    bytes([8]) + (100).to_bytes(4, "big") + b"short",
])
def test_malformed_messages_raise_one_error(payload):
    with pytest.raises(ComputeWireError):
        decode(payload)


def test_a_field_over_the_field_bound_is_refused():
    payload = frame(Blob(b"x" * 100))
    assert decode(payload, max_field=100) == Blob(b"x" * 100)
    with pytest.raises(ComputeWireError, match="bound"):
        decode(payload, max_field=99)


def test_encoding_refuses_what_the_format_cannot_say():
    with pytest.raises(ValueError):
        encode(GetBlob(b"short"))
    with pytest.raises(ValueError):
        encode(Credits(tuple(Credit(JOB, 0, 0) for _ in range(MAX_CREDITS + 1))))
