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


# -- BEP 52: which info-hash a hybrid's handshakes carry ----------------------------------------------
V1, V2 = bytes(range(20)), bytes(range(100, 132))
ME = b"-PL0100-" + bytes(12)


def dialler(info_hash: bytes, *, upgrade: bool) -> wire.Handshake:
    return wire.Handshake(info_hash, b"-LT2110-" + bytes(12), wire.make_reserved(fast=True, v2=upgrade))


def test_a_hybrids_dialler_with_the_upgrade_bit_is_answered_with_the_v2_hash() -> None:
    """libtorrent may have learnt us under the v2 hash while its v1 handshake was on the way: it then takes only the
    v2 answer, and answering v2 is what BEP 52 allows and libtorrent itself does."""
    assert wire.answer_info_hash(dialler(V1, upgrade=True), V2) == V2[:20]
    assert wire.answer_info_hash(dialler(V2[:20], upgrade=False), V2) == V2[:20]
    assert wire.answer_info_hash(dialler(V1, upgrade=False), V2) == V1  # a v1-only client keeps v1
    assert wire.answer_info_hash(dialler(V1, upgrade=True), None) == V1  # a v1 torrent has no v2 hash to give


def test_the_upgrade_bit_goes_only_with_a_hybrids_v1_hash() -> None:
    assert wire.Handshake(V1, ME, wire.handshake_reserved(V1, V2)).supports_v2
    assert not wire.Handshake(V2[:20], ME, wire.handshake_reserved(V2[:20], V2)).supports_v2  # already v2
    assert not wire.Handshake(V1, ME, wire.handshake_reserved(V1, None)).supports_v2  # v1 only
    reserved = wire.Handshake(V1, ME, wire.handshake_reserved(V1, V2, dht=True))
    assert reserved.supports_fast and reserved.supports_extensions and reserved.supports_dht


def test_a_dialler_accepts_the_hash_it_sent_or_the_hybrids_v2_hash() -> None:
    assert wire.answer_accepted(V1, V1, V2)
    assert wire.answer_accepted(V1, V2[:20], V2)  # upgraded by the answering side
    assert wire.answer_accepted(V2[:20], V2[:20], V2)
    assert not wire.answer_accepted(V2[:20], V1, V2)  # we dialled v2: a v1 answer is a downgrade nobody allows
    assert not wire.answer_accepted(V1, V2[:20], None)
    assert not wire.answer_accepted(V1, bytes(20), V2)


def test_an_answer_to_our_upgrade_is_taken_end_to_end() -> None:
    """The answering side's choice, fed to the dialler's check, for every kind of dialler."""
    for sent, upgrade in ((V1, True), (V1, False), (V2[:20], False)):
        answer = wire.answer_info_hash(dialler(sent, upgrade=upgrade), V2)
        assert wire.answer_accepted(sent, answer, V2)
