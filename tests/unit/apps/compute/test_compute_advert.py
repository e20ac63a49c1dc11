"""The volunteers' capacity adverts on pub/sub: the format round-trips and refuses what breaks its bounds; the list of
candidates a submitter keeps is bounded and asks each volunteer at most once per retry period."""

from __future__ import annotations

import struct

import pytest

from peerloom.apps.compute.advert import (
    MAX_ADDR,
    MAX_ADDRS,
    MAX_ADVERT,
    Advert,
    AdvertError,
    Candidates,
    decode_advert,
    encode_advert,
)
from peerloom.codec.multiaddr import Multiaddr
from peerloom.identity import Identity, PeerId

PEER = PeerId.from_string("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
ADDR = Multiaddr("/ip4/127.0.0.1/tcp/4001")


def test_an_advert_round_trips_without_the_p2p_part_of_its_addresses():
    advert = Advert(4, 1 << 28, 3600, (ADDR.encapsulate(f"/p2p/{PEER}"), Multiaddr("/ip6/::1/tcp/9")))
    decoded = decode_advert(encode_advert(advert))
    assert decoded == Advert(4, 1 << 28, 3600, (ADDR, Multiaddr("/ip6/::1/tcp/9")))


def test_encoding_keeps_at_most_the_bounded_number_of_addresses():
    many = tuple(Multiaddr(f"/ip4/10.0.0.{i}/tcp/1") for i in range(MAX_ADDRS + 5))
    assert len(decode_advert(encode_advert(Advert(1, 1, 1, many))).addrs) == MAX_ADDRS
    assert len(encode_advert(Advert(1, 1, 1, many))) <= MAX_ADVERT


def _head(count: int, version: int = 1) -> bytes:
    return struct.pack(">BHQQB", version, 1, 1, 1, count)


@pytest.mark.parametrize(("data", "match"), [
    (b"", "cut short"),
    (_head(0, version=2), "version 2"),
    (_head(MAX_ADDRS + 1), "addresses"),
    (_head(1), "cut short in its addresses"),
    (_head(1) + struct.pack(">H", MAX_ADDR + 1) + bytes(MAX_ADDR + 1), "at most"),
    (_head(1) + struct.pack(">H", 3) + b"\xff\xff\xff", "not a multiaddr"),
    (_head(1) + struct.pack(">H", len(ADDR.encapsulate(f"/p2p/{PEER}").to_bytes()))
     + ADDR.encapsulate(f"/p2p/{PEER}").to_bytes(), "names a peer id"),
    (_head(0) + b"x", "stray"),
    (bytes(MAX_ADVERT + 1), "at most"),
])
def test_a_bad_advert_raises_advert_error(data, match):
    with pytest.raises(AdvertError, match=match):
        decode_advert(data)


def test_candidates_are_bounded_and_asked_at_most_once_per_retry_period():
    candidates = Candidates(limit=3, retry_after=60.0)
    peers = [Identity.generate().peer_id for _ in range(5)]
    advert = Advert(2, 1 << 20, 100, (ADDR,))
    assert not candidates.heard(peers[0], Advert(0, 1, 1, (ADDR,)), 0.0)  # offers no slot
    assert not candidates.heard(peers[0], Advert(1, 1, 1, ()), 0.0)  # nowhere to dial
    for peer in peers:
        assert candidates.heard(peer, advert, 0.0)
    taken = candidates.take(0.0)
    assert [peer for peer, _ in taken] == peers[2:]  # the oldest were forgotten
    assert taken[0][1] == (ADDR.encapsulate(f"/p2p/{peers[2]}"),)  # each address can reach only the author
    assert not candidates.heard(peers[2], advert, 30.0)  # asked 30 s ago
    assert candidates.heard(peers[2], advert, 61.0)
    assert candidates.take(61.0) == [(peers[2], (ADDR.encapsulate(f"/p2p/{peers[2]}"),))]
