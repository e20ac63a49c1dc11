"""MSE/PE with libtorrent 2.1.1: its encryption policy forced both ways (`out_enc_policy`/`in_enc_policy` pe_forced,
so it speaks nothing but the encrypted handshake), `allowed_enc_level` RC4 or plaintext, against peerloom's
`require` and `prefer`, in both directions (peerloom dials libtorrent, libtorrent dials peerloom), byte-identical
files and the method both ends must have agreed on. A peer sending garbage in the handshake costs only itself.

libtorrent runs with uTP, DHT, LSD, UPnP and NAT-PMP off (see tests/support/libtorrent_peer.py).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from support.swarm import assert_same_files, make_single, node, wait_done

from peerloom.torrent.create import create
from peerloom.torrent.mse import PLAINTEXT, RC4

pytest.importorskip("libtorrent", reason="libtorrent Python bindings are not installed")
import libtorrent as lt
from support.libtorrent_peer import LibtorrentPeer

pytestmark = pytest.mark.interop

PIECE = 32768
SIZE = 2 * 1024 * 1024 + 777
LEVELS = {"rc4": (int(lt.enc_level.pe_rc4), RC4), "plaintext": (int(lt.enc_level.pe_plaintext), PLAINTEXT)}


def forced(level: str) -> dict[str, int]:
    return {
        "out_enc_policy": int(lt.enc_policy.pe_forced),
        "in_enc_policy": int(lt.enc_policy.pe_forced),
        "allowed_enc_level": LEVELS[level][0],
    }


async def first_method(torrent: object, timeout: float = 10.0) -> object:
    """The MSE method of the torrent's first peer connection, read while it lasts (two seeds hang up on each other,
    so the transfers are rate-limited to leave time to look)."""
    async with asyncio.timeout(timeout):
        while not torrent.peers:  # type: ignore[attr-defined]
            await asyncio.sleep(0.005)
    return torrent.peers[0].transport.get_extra_info("mse")  # type: ignore[attr-defined]


@pytest.mark.parametrize("policy", ["require", "prefer"])
@pytest.mark.parametrize("level", ["rc4", "plaintext"])
async def test_libtorrent_seeds_peerloom_dials_and_downloads(tmp_path: Path, level: str, policy: str) -> None:
    data = make_single(tmp_path / "src", size=SIZE)
    meta = create(data, version="hybrid", piece_length=PIECE)
    with LibtorrentPeer(**forced(level)) as lt_peer:
        handle = lt_peer.add(meta.to_bytes(), tmp_path / "src", seed_mode=True)
        await lt_peer.wait_seeding(handle)
        async with node(tmp_path, "leech", encryption=policy, download_rate_limit=4_000_000) as leecher:
            t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", lt_peer.port)])
            assert await first_method(t) == LEVELS[level][1]
            await wait_done(t, 30)
            assert t.status().hash_failures == 0
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


@pytest.mark.parametrize("policy", ["require", "prefer"])
@pytest.mark.parametrize("level", ["rc4", "plaintext"])
async def test_peerloom_seeds_libtorrent_dials_and_downloads(tmp_path: Path, level: str, policy: str) -> None:
    data = make_single(tmp_path / "src", size=SIZE)
    async with node(tmp_path, "seed", encryption=policy) as seeder:
        shared = await seeder.share(data, version="hybrid", piece_length=PIECE)
        assert shared.meta is not None
        with LibtorrentPeer(**forced(level)) as lt_peer:
            handle = lt_peer.add(shared.meta.to_bytes(), tmp_path / "dst")
            handle.set_download_limit(4_000_000)
            lt_peer.connect(handle, seeder.port)
            assert await first_method(shared) == LEVELS[level][1]
            await lt_peer.wait_finished(handle, timeout=30)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_a_garbage_handshake_is_dropped_and_libtorrent_still_gets_the_data(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=SIZE)
    async with node(tmp_path, "seed", encryption="require") as seeder:
        shared = await seeder.share(data, version="v1", piece_length=PIECE)
        assert shared.meta is not None
        rnd = random.Random(17)
        for junk in (rnd.randbytes(96 + 700), rnd.randbytes(40)):  # past the sync window; a stalled half-key
            reader, writer = await asyncio.open_connection("127.0.0.1", seeder.port)
            writer.write(junk)
            if len(junk) > 628:  # the node answers the "key" with its own, then closes
                while await asyncio.wait_for(reader.read(4096), 5):
                    pass
            writer.close()
        with LibtorrentPeer(**forced("rc4")) as lt_peer:
            handle = lt_peer.add(shared.meta.to_bytes(), tmp_path / "dst")
            lt_peer.connect(handle, seeder.port)
            await lt_peer.wait_finished(handle, timeout=30)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")
