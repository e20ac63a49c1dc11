"""peerloom and libtorrent in one swarm on loopback, each asserting byte-identical downloads.

libtorrent runs with uTP, DHT, LSD, UPnP and NAT-PMP off (see tests/support/libtorrent_peer.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.swarm import assert_same_files, make_multi, make_single, node, wait_done

from peerloom.torrent.create import create
from peerloom.torrent.magnet import Magnet

pytest.importorskip("libtorrent", reason="libtorrent Python bindings are not installed")
from support.libtorrent_peer import LibtorrentPeer

pytestmark = pytest.mark.interop

PIECE = 32768


def dataset(root: Path, layout: str) -> Path:
    return make_single(root, size=2 * 1024 * 1024 + 777) if layout == "single" else make_multi(root)


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
@pytest.mark.parametrize("layout", ["single", "multi"])
async def test_libtorrent_seeds_peerloom_downloads(tmp_path: Path, version: str, layout: str) -> None:
    data = dataset(tmp_path / "src", layout)
    meta = create(data, version=version, piece_length=PIECE)
    with LibtorrentPeer() as lt_peer:
        handle = lt_peer.add(meta.to_bytes(), tmp_path / "src", seed_mode=True)
        await lt_peer.wait_seeding(handle)
        async with node(tmp_path, "leech") as leecher:
            t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", lt_peer.port)])
            await wait_done(t)
            assert t.status().hash_failures == 0
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
@pytest.mark.parametrize("layout", ["single", "multi"])
async def test_peerloom_seeds_libtorrent_downloads(tmp_path: Path, version: str, layout: str) -> None:
    data = dataset(tmp_path / "src", layout)
    async with node(tmp_path, "seed") as seeder:
        shared = await seeder.share(data, version=version, piece_length=PIECE)
        assert shared.meta is not None
        with LibtorrentPeer() as lt_peer:
            handle = lt_peer.add(shared.meta.to_bytes(), tmp_path / "dst")
            lt_peer.connect(handle, seeder.port)
            await lt_peer.wait_finished(handle, timeout=60)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


@pytest.mark.parametrize("version", ["v1", "hybrid"])
async def test_magnet_from_libtorrent_seeder_fetches_metadata_then_data(tmp_path: Path, version: str) -> None:
    data = make_multi(tmp_path / "src")
    meta = create(data, version=version, piece_length=PIECE)
    with LibtorrentPeer() as lt_peer:
        handle = lt_peer.add(meta.to_bytes(), tmp_path / "src", seed_mode=True)
        await lt_peer.wait_seeding(handle)
        link = Magnet(meta.info_hash_v1, meta.info_hash_v2, peers=(("127.0.0.1", lt_peer.port),))
        async with node(tmp_path, "leech") as leecher:
            t = await leecher.add(str(link), tmp_path / "dst")
            await wait_done(t)
            assert t.meta is not None and t.meta.info_bytes == meta.info_bytes
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


async def test_libtorrent_fetches_a_magnet_from_peerloom(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=1024 * 1024)
    async with node(tmp_path, "seed") as seeder:
        shared = await seeder.share(data, version="v1", piece_length=PIECE)
        assert shared.meta is not None
        with LibtorrentPeer() as lt_peer:
            handle = lt_peer.add(str(Magnet(shared.meta.info_hash_v1)), tmp_path / "dst")
            lt_peer.connect(handle, seeder.port)
            await lt_peer.wait_finished(handle, timeout=60)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_mixed_swarm_two_seeders_three_leechers(tmp_path: Path) -> None:
    """libtorrent seeder + peerloom seeder -> two peerloom leechers + one libtorrent leecher."""
    data = make_single(tmp_path / "src", size=4 * 1024 * 1024)
    meta = create(data, version="hybrid", piece_length=PIECE)
    with LibtorrentPeer() as lt_seed, LibtorrentPeer() as lt_leech:
        seed_handle = lt_seed.add(meta.to_bytes(), tmp_path / "src", seed_mode=True)
        await lt_seed.wait_seeding(seed_handle)
        async with (
            node(tmp_path, "pl-seed") as pl_seed,
            node(tmp_path, "pl-leech1") as leech1,
            node(tmp_path, "pl-leech2") as leech2,
        ):
            await pl_seed.add(meta, tmp_path / "src", trusted_complete=True)
            seeds = [("127.0.0.1", lt_seed.port), ("127.0.0.1", pl_seed.port)]
            t1 = await leech1.add(meta, tmp_path / "dst1", peers=seeds)
            t2 = await leech2.add(meta, tmp_path / "dst2", peers=[*seeds, ("127.0.0.1", leech1.port)])
            lt_handle = lt_leech.add(meta.to_bytes(), tmp_path / "dst3")
            for port in (lt_seed.port, pl_seed.port, leech1.port, leech2.port):
                lt_leech.connect(lt_handle, port)
            await asyncio.gather(wait_done(t1), wait_done(t2), lt_leech.wait_finished(lt_handle, 60))
    for target in ("dst1", "dst2", "dst3"):
        assert_same_files(meta, tmp_path / "src", tmp_path / target)
async def test_http_tracker_introduces_the_peers(tmp_path: Path) -> None:
    from support.trackers import HttpTracker

    data = make_single(tmp_path / "src", size=1024 * 1024)
    async with HttpTracker(interval=1) as tracker:
        meta = create(data, version="hybrid", piece_length=PIECE, trackers=[tracker.announce_url])
        with LibtorrentPeer() as lt_seed:
            handle = lt_seed.add(meta.to_bytes(), tmp_path / "src", seed_mode=True)
            await lt_seed.wait_seeding(handle)
            async with node(tmp_path, "leech") as leecher:
                t = await leecher.add(meta, tmp_path / "dst")  # no --peer: the tracker is the only source
                await wait_done(t)
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")
