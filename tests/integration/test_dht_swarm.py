"""Trackerless swarms: a leecher given only a magnet's `xt` finds the seeder through the DHT (API and `peerloom get`),
and peers that meet on the wire exchange DHT ports (BEP 5 reserved bit and PORT message)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from support.swarm import assert_same_files, make_multi, make_single, node, wait_done

from peerloom.node import Node
from peerloom.torrent.magnet import Magnet

# DHT on, on loopback, never the public routers; retry lookups quickly while a torrent has no peers
DHT = dict(dht=True, public_bootstrap=False, dht_interval_few=1.0)


def bare_magnet(shared: object) -> str:
    meta = shared.meta  # type: ignore[attr-defined]
    link = str(Magnet(meta.info_hash_v1, meta.info_hash_v2))
    assert "x.pe" not in link and "tr=" not in link and "dn=" not in link
    return link


async def test_a_bare_magnet_is_found_through_the_dht_and_downloaded(tmp_path: Path) -> None:
    data = make_multi(tmp_path / "src")
    async with node(tmp_path, "seed", **DHT) as seeder:
        assert seeder.dht is not None and seeder.dht.port == seeder.port  # UDP on the BitTorrent port's number
        shared = await seeder.share(data, version="hybrid", piece_length=32768)
        async with node(tmp_path, "leech", bootstrap=[("127.0.0.1", seeder.dht.port)], **DHT) as leecher:
            t = await leecher.add(bare_magnet(shared), tmp_path / "dst")
            await wait_done(t, 20)
            assert t.dht_found >= 1 and t.first_peer_after is not None
            assert t.status().first_peer_after == t.first_peer_after
    assert shared.meta is not None
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_a_later_leecher_gets_the_seeder_without_waiting_for_a_departed_leechers_node(tmp_path: Path) -> None:
    """Issue 12: once a leecher has left, the seeder's DHT node still hands out its node (and its address as a
    peer); a later leecher bootstrapping from the seeder must get the seeder as a peer from the seeder's first reply,
    not after its queries to the departed node have timed out (a bootstrap lookup and a get_peers lookup each held
    up ~7 s by it: the first peer came after 14 s). Checked by what has happened when the first peer connects: no
    DHT query of the new leecher has timed out yet, and its lookups are still running."""
    data = make_single(tmp_path / "src", size=300_000)
    async with node(tmp_path, "seed", **DHT) as seeder:
        assert seeder.dht is not None
        shared = await seeder.share(data, version="hybrid", piece_length=32768)
        bootstrap = [("127.0.0.1", seeder.dht.port)]
        async with node(tmp_path, "gone", bootstrap=bootstrap, **DHT) as first:
            t = await first.add(bare_magnet(shared), tmp_path / "dst-gone")
            await wait_done(t, 20)
        assert first.dht is not None
        for _ in range(100):  # the seeder verified the departed leecher's DHT node: it hands it out to others
            if seeder.dht.table_size >= 1:
                break
            await asyncio.sleep(0.05)
        assert seeder.dht.table_size >= 1
        async with node(tmp_path, "later", bootstrap=bootstrap, **DHT) as later:
            assert later.dht is not None
            t = await later.add(bare_magnet(shared), tmp_path / "dst")
            async with asyncio.timeout(30):  # a safety bound only (the old code got there after 14 s)
                while t.first_peer_after is None:
                    await asyncio.sleep(0.01)
            figures = later.dht.stats()["ipv4"]
            assert figures["timeouts"] == 0, "the first peer waited for a departed node's DHT queries to time out"
            assert figures["lookups_running"] >= 1  # peers arrive as replies come, before the lookup is over
            await wait_done(t, 30)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_peers_on_the_wire_tell_each_other_their_dht_ports(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=200_000)
    async with node(tmp_path, "seed", **DHT) as seeder, node(tmp_path, "leech", **DHT) as leecher:
        assert seeder.dht is not None and leecher.dht is not None
        assert seeder.dht.table_size == leecher.dht.table_size == 0  # two separate DHTs of one node each
        shared = await seeder.share(data, version="v1", piece_length=32768)
        assert shared.meta is not None
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        await wait_done(t, 20)
        for _ in range(100):  # the PORT message led each side to ping the other's DHT node into its table
            if seeder.dht.table_size and leecher.dht.table_size:
                break
            await asyncio.sleep(0.05)
        # PORT goes only to a peer whose handshake set the DHT bit: each side saw the other's
        assert leecher.dht.table_size == seeder.dht.table_size == 1


async def test_private_torrents_stay_out_of_the_dht(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=100_000)
    async with node(tmp_path, "seed", **DHT) as seeder:
        shared = await seeder.share(data, version="v1", piece_length=32768, private=True)
        assert not shared.dht_enabled and not shared.discoverable
        await asyncio.sleep(0.2)
        assert seeder.dht is not None and seeder.dht.stats()["ipv4"]["stored_swarms"] == 0


async def test_peerloom_get_with_a_bare_magnet_finds_the_seeder(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=1_500_000)
    async with node(tmp_path, "seed", **DHT) as seeder:
        assert seeder.dht is not None
        shared = await seeder.share(data, version="v2", piece_length=65536)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "peerloom", "get", bare_magnet(shared), "-o", str(tmp_path / "dst"),
            "--listen", "127.0.0.1", "--home", str(tmp_path / "home-cli"), "--no-lsd",
            "--bootstrap", f"127.0.0.1:{seeder.dht.port}", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert "DHT on UDP port" in stderr.decode()
    final = json.loads(stdout)
    assert final["progress"] == 1.0 and final["first_peer_after"] is not None
    assert (tmp_path / "dst" / data.name).read_bytes() == data.read_bytes()


def test_settings_keep_tests_off_the_public_dht() -> None:
    from support.swarm import fast_settings

    settings = fast_settings()
    assert not settings.dht and not settings.lsd and not settings.public_bootstrap
    assert Node(settings=fast_settings(**DHT)).settings.bootstrap == []
