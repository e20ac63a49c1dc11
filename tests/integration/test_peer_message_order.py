"""Messages in the orders deployed clients send them (BEP 3, BEP 6, BEP 10), from a scripted raw-socket peer.

A client resuming a partial download sends its bitfield after `interested`; some send it again mid-connection after
`have` messages; fast-extension peers may follow with have_all or have_none. libtorrent takes each as the peer's
whole new set of pieces, at any time, and so must we: the connection stays open and the picker counts each piece
the peer has exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from support.raw_peer import RawPeer
from support.swarm import make_single, node

from peerloom.torrent import extensions as ext
from peerloom.torrent import wire
from peerloom.torrent.create import create
from peerloom.torrent.magnet import Magnet
from peerloom.torrent.resume import pack_bits

pytestmark = pytest.mark.timeout(120)
PIECES = 12


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def bitfield(pieces: set[int]) -> wire.Bitfield:
    return wire.Bitfield(pack_bits([i in pieces for i in range(PIECES)]))


def counts(pieces: set[int]) -> list[int]:
    return [int(i in pieces) for i in range(PIECES)]


async def test_a_late_and_repeated_bitfield_replaces_the_peers_pieces(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=PIECES * 32768 - 1000)
    meta = create(data, version="v1", piece_length=32768)
    async with node(tmp_path, "leech") as leecher:
        torrent = await leecher.add(meta, tmp_path / "dst")
        await until(lambda: torrent.status().state == "downloading")
        picker = torrent.picker
        assert picker is not None
        peer = await RawPeer.connect(leecher.port, meta.info_hash_v1)
        try:
            # a keep-alive is not the peer's first message, and a client resuming says interested first
            await peer.send(wire.KeepAlive(), wire.Interested(), bitfield({0, 1}))
            await peer.expect(lambda m: isinstance(m, wire.Interested))
            await until(lambda: picker.availability == counts({0, 1}))
            await peer.send(wire.Have(2), wire.Have(3), wire.Have(1))  # a repeated have counts once
            await until(lambda: picker.availability == counts({0, 1, 2, 3}))
            await peer.send(bitfield({1, 5}))  # again, mid-connection: its whole new set, the old one uncounted
            await until(lambda: picker.availability == counts({1, 5}))
            await peer.send(wire.HaveAll())  # BEP 6, late
            await until(lambda: picker.availability == counts(set(range(PIECES))))
            await peer.send(wire.HaveNone())
            await until(lambda: picker.availability == counts(set()))
            await peer.expect(lambda m: isinstance(m, wire.NotInterested))  # nothing left to want from it
            await peer.send(wire.Have(7), bitfield({4}), wire.Have(9))
            await until(lambda: picker.availability == counts({4, 9}))
            await peer.expect(lambda m: isinstance(m, wire.Interested))
            # BEP 10: an extension handshake at any time, and a later one holds only changes (0 disables)
            await peer.send(wire.Extended(0, b"d1:md6:ut_pexi5e11:ut_metadatai6eee"))
            await peer.send(wire.Extended(0, b"d1:md6:ut_pexi0eee"))
            await until(lambda: torrent.peers[0].ext_ids == {"ut_metadata": 6})
            assert await peer.still_open()
            assert len(torrent.peers) == 1
        finally:
            peer.close()
        await until(lambda: not torrent.peers)
        assert picker.availability == counts(set())  # its pieces leave with it, each exactly once


async def test_pieces_announced_before_the_metadata_are_counted_when_it_arrives(tmp_path: Path) -> None:
    """A magnet: the peer's bitfield and haves come before we know how many pieces there are; another bitfield
    comes once we do."""
    data = make_single(tmp_path / "src", size=PIECES * 32768 - 1000)
    meta = create(data, version="v1", piece_length=32768)
    info = meta.info_bytes
    async with node(tmp_path, "leech") as leecher:
        torrent = await leecher.add(str(Magnet.from_metainfo(meta)), tmp_path / "dst")
        peer = await RawPeer.connect(leecher.port, meta.info_hash_v1)
        try:
            our_metadata_id = 3
            await peer.send(wire.Have(6), bitfield({0, 2}), wire.KeepAlive(), wire.Have(4),
                            wire.Extended(0, ext.encode_ext_handshake(ext.ExtHandshake(
                                ids={"ut_metadata": our_metadata_id}, metadata_size=len(info)))))
            theirs = await peer.expect(lambda m: isinstance(m, wire.Extended) and m.ext_id == 0)
            await peer.send(wire.Request(0, 0, 16384))  # not servable yet: rejected (BEP 6), not closed
            assert await peer.expect(lambda m: isinstance(m, wire.RejectRequest)) == wire.RejectRequest(0, 0, 16384)
            their_metadata_id = ext.parse_ext_handshake(theirs.payload).ids["ut_metadata"]  # type: ignore[union-attr]
            assert len(info) <= ext.METADATA_PIECE  # one request, one answer
            ask = await peer.expect(lambda m: isinstance(m, wire.Extended) and m.ext_id == our_metadata_id)
            assert ext.parse_metadata(ask.payload) == ext.MetadataRequest(0)  # type: ignore[union-attr]
            await peer.send(wire.Extended(their_metadata_id, ext.encode_metadata(ext.MetadataData(0, len(info), info))))
            await until(lambda: torrent.meta is not None)
            picker = torrent.picker
            assert picker is not None
            await until(lambda: picker.availability == counts({0, 2, 4}))  # the have before the bitfield is gone
            await peer.send(bitfield({3, 11}))
            await until(lambda: picker.availability == counts({3, 11}))
            assert await peer.still_open()
        finally:
            peer.close()
        await until(lambda: not torrent.peers)
        assert picker.availability == counts(set())



async def test_a_v1_magnet_of_a_hybrid_takes_v2_handshakes_once_its_metadata_is_known(tmp_path: Path) -> None:
    """A btih-only magnet learns from the metadata that the torrent is a hybrid: from then on a dialler that knows
    it under the v2 hash reaches it, and one that dials v1 with the upgrade bit is answered v2 (BEP 52)."""
    data = make_single(tmp_path / "src", size=PIECES * 32768 - 1000)
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        shared = await seeder.share(data, version="hybrid", piece_length=32768)
        meta = shared.meta
        assert meta is not None and meta.info_hash_v2 is not None
        magnet = Magnet(meta.info_hash_v1, peers=(("127.0.0.1", seeder.port),))  # no btmh: v2 unknown at first
        torrent = await leecher.add(str(magnet), tmp_path / "dst")
        await until(lambda: torrent.meta is not None)
        v2 = meta.info_hash_v2[:20]
        for sent, upgrade in ((v2, False), (meta.info_hash_v1, True)):
            peer = await RawPeer.connect(leecher.port, sent, v2=upgrade)
            try:
                assert peer.handshake is not None and peer.handshake.info_hash == v2
                assert await peer.still_open()
            finally:
                peer.close()


@pytest.mark.parametrize("message", [wire.HaveAll(), wire.HaveNone(), wire.AllowedFast(1), wire.SuggestPiece(1),
                                     wire.RejectRequest(0, 0, 16384)])
async def test_fast_extension_messages_without_the_fast_bit_close_the_connection(
    tmp_path: Path, message: wire.Message
) -> None:
    """BEP 6's messages exist only when both handshakes set its bit; libtorrent closes a connection that breaks
    that (errors::invalid_have_all and friends), and so do we. With the bit, each is taken (see above)."""
    data = make_single(tmp_path / "src", size=PIECES * 32768 - 1000)
    meta = create(data, version="v1", piece_length=32768)
    async with node(tmp_path, "leech") as leecher:
        torrent = await leecher.add(meta, tmp_path / "dst")
        await until(lambda: torrent.status().state == "downloading")
        peer = await RawPeer.connect(leecher.port, meta.info_hash_v1, fast=False)
        try:
            await peer.send(bitfield({0}))
            await peer.expect(lambda m: isinstance(m, wire.Interested))
            await peer.send(message)
            await until(lambda: not torrent.peers)
            assert not await peer.still_open()
        finally:
            peer.close()
