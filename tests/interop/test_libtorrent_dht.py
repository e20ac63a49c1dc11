"""peerloom and libtorrent in one Mainline DHT on loopback: swarms found from bare magnets both ways, and BEP 44
mutable items put by one and read (signature checked) by the other.

libtorrent joins through a peerloom DHT node (and the other libtorrent session), with its IP restrictions off so that
many nodes may share 127.0.0.1; uTP, LSD, UPnP and NAT-PMP stay off and no public router is ever configured.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.swarm import assert_same_files, make_multi, make_single, node, wait_done

from peerloom.dht.bep44 import verify_mutable
from peerloom.dht.driver import Dht, public_key
from peerloom.torrent.create import create
from peerloom.torrent.magnet import Magnet

lt = pytest.importorskip("libtorrent", reason="libtorrent Python bindings are not installed")
from support.libtorrent_peer import LibtorrentPeer, ed25519_secret_key, loopback_dht_settings  # noqa: E402

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
PIECE = 32768
DHT = dict(dht=True, public_bootstrap=False, dht_interval_few=1.0)


@contextmanager
def libtorrent_dht(port: int) -> Iterator[tuple[LibtorrentPeer, LibtorrentPeer]]:
    """Two libtorrent sessions whose DHTs join through the peerloom DHT node at `port`, the second also through
    the first."""
    first = LibtorrentPeer(**loopback_dht_settings([(HOST, port)]))
    try:
        second = LibtorrentPeer(**loopback_dht_settings([(HOST, port), (HOST, first.port)]))
        try:
            yield first, second
        finally:
            second.close()
    finally:
        first.close()


async def findable(dht: Dht, info_hash: bytes, peer: tuple[str, int], timeout: float = 20.0) -> None:
    """Wait until a get_peers lookup in `dht` returns `peer` for `info_hash` (its announce has landed)."""
    deadline = time.monotonic() + timeout
    while peer not in await dht.get_peers(info_hash):
        assert time.monotonic() < deadline, f"{peer} did not announce {info_hash.hex()} in {timeout:.0f} s"
        await asyncio.sleep(0.2)


async def test_peerloom_finds_a_libtorrent_seeder_from_a_bare_magnet(tmp_path: Path) -> None:
    data = make_multi(tmp_path / "src")
    meta = create(data, version="hybrid", piece_length=PIECE)
    async with node(tmp_path, "leech", **DHT) as leecher:
        assert leecher.dht is not None
        with libtorrent_dht(leecher.dht.port) as (seeder, _other):
            # announce once libtorrent's DHT runs, and look only once the swarm is findable: under load the leecher's
            # first lookup could otherwise come back empty and libtorrent's own lookup connect to it instead
            await seeder.wait_alert(lt.dht_bootstrap_alert)
            handle = seeder.add(meta.to_bytes(), tmp_path / "src", seed_mode=True)
            await seeder.wait_seeding(handle)
            handle.force_dht_announce()
            assert meta.info_hash_v1 is not None
            await findable(leecher.dht, meta.info_hash_v1, (HOST, seeder.port))
            t = await leecher.add(str(Magnet(meta.info_hash_v1, meta.info_hash_v2)), tmp_path / "dst")
            await wait_done(t, 20)
            assert t.dht_found >= 1 and t.meta is not None and t.meta.info_bytes == meta.info_bytes
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


async def test_libtorrent_finds_a_peerloom_seeder_from_a_bare_magnet(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=1024 * 1024 + 99)
    async with node(tmp_path, "seed", **DHT) as seeder:
        assert seeder.dht is not None
        shared = await seeder.share(data, version="v1", piece_length=PIECE)
        assert shared.meta is not None
        with libtorrent_dht(seeder.dht.port) as (_other, leecher):
            # a torrent added before libtorrent's DHT runs waits for its 15-minute announce round: ask at once
            await leecher.wait_alert(lt.dht_bootstrap_alert)
            handle = leecher.add(str(Magnet(shared.meta.info_hash_v1)), tmp_path / "dst")
            handle.force_dht_announce()
            await leecher.wait_finished(handle, timeout=20)
            found = await leecher.wait_alert(lt.dht_reply_alert, timeout=1)  # "received DHT peers"
            assert found.num_peers >= 1
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_bep44_mutable_items_between_peerloom_and_libtorrent(tmp_path: Path) -> None:
    async with node(tmp_path, "dht", **DHT) as peer:
        dht = peer.dht
        assert dht is not None
        with libtorrent_dht(dht.port) as (first, second):
            await first.wait_alert(lt.dht_bootstrap_alert)
            await second.wait_alert(lt.dht_bootstrap_alert)

            # peerloom puts, libtorrent reads
            seed, salt = os.urandom(32), b"peerloom salt"
            key = public_key(seed)
            put = await dht.put_mutable(seed, b"written by peerloom", salt=salt, seq=5)
            assert put.stored >= 1
            first.session.dht_get_mutable_item(key, salt)
            alert = await first.wait_alert(lt.dht_mutable_item_alert, lambda a: bytes(a.key) == key and a.seq == 5)
            assert lt.bencode(alert.item) == b"19:written by peerloom"
            assert bytes(alert.salt) == salt and alert.seq == 5
            assert verify_mutable(key, bytes(alert.signature), b"19:written by peerloom", 5, salt)

            # libtorrent puts, peerloom reads and checks the signature
            seed2, salt2 = os.urandom(32), b"libtorrent salt"
            key2 = public_key(seed2)
            second.session.dht_put_mutable_item(ed25519_secret_key(seed2), key2, b"written by libtorrent", salt2)
            await second.wait_alert(lt.dht_put_alert, lambda a: a.num_success > 0)
            item = await dht.get_mutable(key2, salt2)
            assert item is not None
            assert item.value == b"written by libtorrent" and item.salt == salt2 and item.key == key2
            assert item.seq >= 1 and verify_mutable(key2, item.signature, item.raw, item.seq, salt2)
