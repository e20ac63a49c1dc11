"""peerloom and libtorrent over IPv6 on the loopback ::1: a swarm both ways, byte-identical, and swarms found from
bare magnets through a Mainline DHT that runs over IPv6 only (BEP 32: `nodes6`, peers as 18-byte values).

libtorrent listens on [::1] alone, with uTP, LSD, UPnP and NAT-PMP off; its DHT joins through peerloom's IPv6 DHT
node ([::1]:port) with its IP restrictions off, so many nodes may share ::1. Every test skips when this machine
cannot bind ::1, and only then.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.ipv6 import needs_ipv6, node6
from support.swarm import assert_same_files, make_multi, make_single, wait_done

from peerloom.torrent.create import create
from peerloom.torrent.magnet import Magnet

lt = pytest.importorskip("libtorrent", reason="libtorrent Python bindings are not installed")
from support.libtorrent_peer import LibtorrentPeer, loopback_dht_settings  # noqa: E402

pytestmark = [pytest.mark.interop, needs_ipv6]

HOST = "::1"
PIECE = 32768
LT6 = {"listen_interfaces": "[::1]:0"}
DHT = dict(dht=True, public_bootstrap=False, dht_interval_few=1.0)


async def test_libtorrent_seeds_peerloom_downloads_over_ipv6(tmp_path: Path) -> None:
    data = make_multi(tmp_path / "src")
    meta = create(data, version="hybrid", piece_length=PIECE)
    with LibtorrentPeer(**LT6) as lt_peer:
        handle = lt_peer.add(meta.to_bytes(), tmp_path / "src", seed_mode=True)
        await lt_peer.wait_seeding(handle)
        async with node6(tmp_path, "leech") as leecher:
            t = await leecher.add(meta, tmp_path / "dst", peers=[(HOST, lt_peer.port)])
            await wait_done(t, 30)
            assert t.status().hash_failures == 0
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


async def test_peerloom_seeds_libtorrent_downloads_over_ipv6(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=2 * 1024 * 1024 + 777)
    async with node6(tmp_path, "seed") as seeder:
        shared = await seeder.share(data, version="v1", piece_length=PIECE)
        assert shared.meta is not None
        with LibtorrentPeer(**LT6) as lt_peer:
            handle = lt_peer.add(shared.meta.to_bytes(), tmp_path / "dst")
            lt_peer.connect(handle, seeder.port, host=HOST)
            await lt_peer.wait_finished(handle, timeout=30)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


@contextmanager
def libtorrent_dht6(port: int) -> Iterator[tuple[LibtorrentPeer, LibtorrentPeer]]:
    """Two libtorrent sessions on [::1] whose DHTs join through the peerloom IPv6 DHT node at `port`, the second
    also through the first."""
    first = LibtorrentPeer(**LT6, **loopback_dht_settings([(HOST, port)]))
    try:
        second = LibtorrentPeer(**LT6, **loopback_dht_settings([(HOST, port), (HOST, first.port)]))
        try:
            yield first, second
        finally:
            second.close()
    finally:
        first.close()


async def test_peerloom_finds_a_libtorrent_seeder_through_the_ipv6_dht(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=700_000)
    meta = create(data, version="v1", piece_length=PIECE)
    async with node6(tmp_path, "leech", **DHT) as leecher:
        assert leecher.dht is not None and set(leecher.dht.stats()) & {"ipv4", "ipv6"} == {"ipv6"}
        with libtorrent_dht6(leecher.dht.port) as (seeder, _other):
            handle = seeder.add(meta.to_bytes(), tmp_path / "src", seed_mode=True)
            await seeder.wait_seeding(handle)
            await seeder.wait_alert(lt.dht_bootstrap_alert)
            handle.force_dht_announce()
            t = await leecher.add(str(Magnet(meta.info_hash_v1)), tmp_path / "dst")
            await wait_done(t, 20)
            assert t.dht_found >= 1
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


async def test_libtorrent_finds_a_peerloom_seeder_through_the_ipv6_dht(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=1024 * 1024 + 99)
    async with node6(tmp_path, "seed", **DHT) as seeder:
        assert seeder.dht is not None
        shared = await seeder.share(data, version="v1", piece_length=PIECE)
        assert shared.meta is not None
        with libtorrent_dht6(seeder.dht.port) as (_other, leecher):
            await leecher.wait_alert(lt.dht_bootstrap_alert)
            handle = leecher.add(str(Magnet(shared.meta.info_hash_v1)), tmp_path / "dst")
            handle.force_dht_announce()
            await leecher.wait_finished(handle, timeout=20)
            found = await leecher.wait_alert(lt.dht_reply_alert, timeout=1)  # "received DHT peers"
            assert found.num_peers >= 1
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")
