"""Peer wire codec: round trips in any split, bounds, and random bytes raising only WireError."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerloom.torrent import wire

MESSAGES = [
    wire.KeepAlive(), wire.Choke(), wire.Unchoke(), wire.Interested(), wire.NotInterested(), wire.Have(7),
    wire.Bitfield(b"\xff\x80"), wire.Request(1, 16384, 16384), wire.Piece(2, 0, b"x" * 16384),
    wire.Cancel(1, 0, 100), wire.Port(6881), wire.SuggestPiece(3), wire.HaveAll(), wire.HaveNone(),
    wire.RejectRequest(4, 0, 16384), wire.AllowedFast(5), wire.Extended(0, b"d1:md11:ut_metadatai2eee"),
    wire.HashRequest(b"r" * 32, 2, 0, 4, 3), wire.Hashes(b"r" * 32, 2, 0, 4, 1, b"h" * 32 * 5),
    wire.HashReject(b"r" * 32, 2, 0, 4, 3),
]


def test_every_message_round_trips_in_random_splits() -> None:
    stream = b"".join(wire.encode(m) for m in MESSAGES)
    rng = random.Random(1)
    for _ in range(20):
        parser = wire.WireParser()
        got = []
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, 300)
            got += parser.feed(stream[pos : pos + step])
            pos += step
        assert got == MESSAGES
        assert parser.buffered == 0


def test_fast_encoders_match_encode() -> None:
    assert wire.encode_request(1, 2, 3) == wire.encode(wire.Request(1, 2, 3))
    assert wire.encode_have(9) == wire.encode(wire.Have(9))
    assert wire.piece_header(1, 2, 3) + b"abc" == wire.encode(wire.Piece(1, 2, b"abc"))


def test_handshake_round_trip_and_flags() -> None:
    h = wire.Handshake(b"i" * 20, b"p" * 20, wire.make_reserved(fast=True, extensions=True, v2=True))
    parsed = wire.parse_handshake(wire.encode_handshake(h))
    assert parsed == h and parsed.supports_fast and parsed.supports_extensions and parsed.supports_v2
    assert not parsed.supports_dht
    with pytest.raises(wire.WireError):
        wire.parse_handshake(b"\x13BitTorrent protocoX" + bytes(48))


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00\x00\x00\x02\x04\x00",  # have of the wrong size
        b"\x00\x00\x00\x0d\x06" + bytes(8) + b"\x00\x00\x40\x01",  # request of 16385 bytes
        b"\x00\x00\x00\x0d\x06" + bytes(12),  # request of 0 bytes
        b"\x00\x00\x00\x01\x63",  # unknown id 99
        b"\x00\x00\x00\x01\x14",  # extended without an id
    ],
)
def test_bad_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.WireParser().feed(frame)


def test_oversized_length_is_refused_before_the_body_arrives() -> None:
    with pytest.raises(wire.WireError):
        wire.WireParser().feed(b"\x7f\xff\xff\xff\x07")  # a 2 GiB "piece": refused after 5 bytes


@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_wire_errors(data: bytes) -> None:
    try:
        wire.WireParser().feed(data)
    except wire.WireError:
        pass
