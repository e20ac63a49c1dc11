"""peerloom and libtorrent meeting only through a UDP tracker (BEP 15) on loopback.

libtorrent runs with uTP, DHT, LSD, UPnP and NAT-PMP off (see tests/support/libtorrent_peer.py), so
the tracker is the only way either side learns of the other.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from support.swarm import assert_same_files, make_single, node, wait_done
from support.udp_tracker_server import UdpTracker

from peerloom.torrent.create import create

pytest.importorskip("libtorrent", reason="libtorrent Python bindings are not installed")
from support.libtorrent_peer import LibtorrentPeer

pytestmark = pytest.mark.interop

PIECE = 32768
# closing a session blocks the event loop, so this test tracker cannot answer libtorrent's "stopped"
# announce; libtorrent then waits stop_tracker_timeout (5 s by default) before it lets go
LT_SETTINGS = {"stop_tracker_timeout": 1}


async def until(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout:g} s"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("version", ["v1", "hybrid"])
async def test_libtorrent_seeder_found_through_the_udp_tracker(tmp_path: Path, version: str) -> None:
    data = make_single(tmp_path / "src", size=1024 * 1024)
    async with UdpTracker(interval=1) as tracker:
        meta = create(data, version=version, piece_length=PIECE, trackers=[tracker.announce_url])
        with LibtorrentPeer(**LT_SETTINGS) as lt_seed:
            handle = lt_seed.add(meta.to_bytes(), tmp_path / "src", seed_mode=True)
            await lt_seed.wait_seeding(handle)
            lt_addr = ("127.0.0.1", lt_seed.port)
            await until(lambda: lt_addr in tracker.swarms.get(meta.info_hash_v1 or b"", {}), "libtorrent's announce")
            async with node(tmp_path, "leech") as leecher:
                t = await leecher.add(meta, tmp_path / "dst")  # no peers given: the tracker is the only source
                await wait_done(t)
                assert t.status().hash_failures == 0
    lt_announces = [a for a in tracker.announces if a.port == lt_addr[1]]
    assert lt_announces and lt_announces[0].event == "started" and lt_announces[0].left == 0
    assert lt_announces[0].url_data == b"/announce"  # libtorrent sends the BEP 41 path option too
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


async def test_libtorrent_leecher_finds_peerloom_through_the_udp_tracker(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=1024 * 1024)
    async with UdpTracker(interval=1) as tracker, node(tmp_path, "seed") as seeder:
        shared = await seeder.share(data, version="hybrid", piece_length=PIECE, trackers=[tracker.announce_url])
        meta = shared.meta
        assert meta is not None and meta.info_hash_v1 is not None
        await until(lambda: ("127.0.0.1", seeder.port) in tracker.swarms.get(meta.info_hash_v1, {}),
                    "peerloom's announce")
        with LibtorrentPeer(**LT_SETTINGS) as lt_leech:
            handle = lt_leech.add(meta.to_bytes(), tmp_path / "dst")
            await lt_leech.wait_finished(handle, timeout=60)
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")
