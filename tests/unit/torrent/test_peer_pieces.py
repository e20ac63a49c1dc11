"""A peer's pieces from its bitfield/have/have_all/have_none messages in any order (BEP 3, BEP 6), fed as the bytes
a peer sends, counted in a real picker: each piece the peer has is counted once, whatever the order."""

from __future__ import annotations

import pytest

from peerloom.torrent import wire
from peerloom.torrent.peer_pieces import MAX_EARLY_PIECES, PeerPieces
from peerloom.torrent.picker import PiecePicker

N = 10  # pieces: two bytes of bitfield, six spare bits


def frames(data: bytes, peer: PeerPieces, picker: PiecePicker | None) -> None:
    """Parse the bytes and apply every piece announcement they hold, as the swarm does."""
    for m in wire.WireParser().feed(data):
        if isinstance(m, wire.Bitfield):
            peer.bitfield(m.bits, picker)
        elif isinstance(m, wire.Have):
            peer.have(m.index, picker)
        elif isinstance(m, wire.HaveAll):
            peer.have_all(picker)
        elif isinstance(m, wire.HaveNone):
            peer.have_none(picker)


def ones(*pieces: int) -> list[int]:
    return [int(i in pieces) for i in range(N)]


KEEPALIVE = b"\x00\x00\x00\x00"
INTERESTED = b"\x00\x00\x00\x01\x02"
HAVE_ALL = b"\x00\x00\x00\x01\x0e"
HAVE_NONE = b"\x00\x00\x00\x01\x0f"


def bitfield(first: int, second: int) -> bytes:
    return b"\x00\x00\x00\x03\x05" + bytes([first, second])


def have(index: int) -> bytes:
    return b"\x00\x00\x00\x05\x04" + index.to_bytes(4, "big")


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (KEEPALIVE + INTERESTED + bitfield(0b1100_0000, 0), ones(0, 1)),  # late, after keep-alive and interested
        (bitfield(0b1100_0000, 0) + have(5) + have(0) + bitfield(0b0000_0001, 0b0100_0000), ones(7, 9)),
        (have(3) + bitfield(0b1000_0000, 0), ones(0)),  # a bitfield replaces the haves before it
        (bitfield(0b1000_0000, 0) + HAVE_ALL, ones(*range(N))),
        (HAVE_ALL + have(2) + HAVE_NONE + have(4), ones(4)),
        (bitfield(0xFF, 0xC0) + HAVE_NONE + bitfield(0, 0b0100_0000), ones(9)),
        (bitfield(0, 0b0111_1111), ones(9)),  # spare bits are ignored, as libtorrent does
    ],
)
@pytest.mark.parametrize("metadata_first", [True, False])
def test_any_order_counts_each_piece_once(stream: bytes, expected: list[int], metadata_first: bool) -> None:
    picker = PiecePicker([16384] * N)
    peer = PeerPieces()
    if metadata_first:
        frames(stream, peer, picker)
    else:  # a magnet: everything came before the piece count was known
        frames(stream, peer, None)
        assert picker.availability == [0] * N
        peer.metadata_known(picker)
    assert picker.availability == expected
    assert list(peer.bits) == expected and peer.count == sum(expected)
    assert peer.is_seed == all(expected)
    peer.forget(picker)
    assert picker.availability == [0] * N


def test_two_peers_are_counted_apart() -> None:
    picker = PiecePicker([16384] * N)
    a, b = PeerPieces(), PeerPieces()
    frames(bitfield(0b1110_0000, 0), a, picker)
    frames(have(1) + have(8), b, picker)
    frames(bitfield(0b0010_0000, 0), a, picker)
    assert picker.availability == [0, 1, 1, 0, 0, 0, 0, 0, 1, 0]
    a.forget(picker)
    assert picker.availability == ones(1, 8)


def test_have_returns_whether_the_piece_is_new() -> None:
    picker = PiecePicker([16384] * N)
    peer = PeerPieces()
    assert peer.have(3, picker) and not peer.have(3, picker)
    assert not peer.have(4, None)  # no picker: nothing to be interested in yet


def test_a_peer_that_told_nothing_has_no_bits_and_have_none_tells() -> None:
    picker = PiecePicker([16384] * N)
    peer = PeerPieces()
    peer.metadata_known(picker)
    assert not peer.told and peer.bits == bytearray()
    frames(HAVE_NONE, peer, picker)
    assert peer.told and list(peer.bits) == [0] * N


@pytest.mark.parametrize(
    ("stream", "metadata_first"),
    [
        (b"\x00\x00\x00\x04\x05\x00\x00\x00", True),  # 3 bytes for 10 pieces
        (b"\x00\x00\x00\x04\x05\x00\x00\x00", False),
        (b"\x00\x00\x00\x02\x05\x00", True),  # 1 byte for 10 pieces
        (b"\x00\x00\x00\x02\x05\x00", False),  # checked when the piece count becomes known
        (have(10), True),
        (have(10), False),
        (have(17), False),
    ],
)
def test_a_bitfield_of_the_wrong_size_or_a_have_out_of_range_is_an_error(stream: bytes, metadata_first: bool) -> None:
    picker = PiecePicker([16384] * N)
    peer = PeerPieces()
    with pytest.raises(wire.WireError):
        if metadata_first:
            frames(stream, peer, picker)
        else:
            frames(stream, peer, None)
            peer.metadata_known(picker)
    assert picker.availability == [0] * N


def test_haves_before_the_metadata_are_bounded() -> None:
    picker = PiecePicker([16384] * N)
    peer = PeerPieces()
    peer.have(MAX_EARLY_PIECES, None)  # beyond any torrent we take: ignored, not kept (no memory grows)
    peer.have(2**32 - 1, None)
    peer.have(2, None)
    peer.metadata_known(picker)
    assert picker.availability == ones(2)
    late = PeerPieces()
    late.have(MAX_EARLY_PIECES - 1, None)  # kept, and out of range once the piece count is known
    with pytest.raises(wire.WireError):
        late.metadata_known(picker)
