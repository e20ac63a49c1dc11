"""Private swarms: the BitTorrent peer wire over Noise + yamux streams, only between allowed keys."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from support.cli import peerloom
from support.swarm import make_single, node, wait_done

from peerloom.cli.demo import sha256_of
from peerloom.errors import AccessRefused
from peerloom.identity import Identity
from peerloom.torrent import wire
from peerloom.torrent.magnet import Magnet

pytestmark = pytest.mark.timeout(300)


async def test_private_transfer_of_256_mib_between_allowed_keys(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = src / "big.bin"
    with data.open("wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        shared = await seeder.share(data, allow=[leecher.identity.peer_id])
        assert shared.meta is not None and shared.meta.private
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[seeder.secure_addrs[0]], allow=[])
        await wait_done(t, timeout=240)
        assert t.status().progress == 1.0 and t.status().hash_failures == 0
        assert all(p.secure_key == seeder.identity.peer_id for p in t.peers)  # only the secure link was used
    assert sha256_of(tmp_path / "dst" / "big.bin") == sha256_of(data)


async def test_a_key_that_is_not_allowed_gets_nothing(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src")
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "friend") as friend, node(tmp_path, "x") as stranger:
        shared = await seeder.share(data, allow=[friend.identity.peer_id])
        assert shared.meta is not None
        t = await stranger.add(shared.meta, tmp_path / "dst-x", peers=[seeder.secure_addrs[0]], allow=[])
        async with asyncio.timeout(20):  # until its every dial was refused: the event, not a fixed 2 s
            while not t.refused_everywhere:
                await asyncio.sleep(0.05)
        assert t.status().have_bytes == 0 and not t.peers
        assert stranger.identity.peer_id in seeder.secure_host.connections  # refused per protocol, not connection
        assert t.peer_table.known and all(r.failures for r in t.peer_table.known.values())  # its dials were refused
        assert t.refused_everywhere and all(isinstance(e, AccessRefused) for e in t.refusals.values())
        ok = await friend.add(shared.meta, tmp_path / "dst-f", peers=[seeder.secure_addrs[0]], allow=[])
        await wait_done(ok)


async def test_a_private_torrent_refuses_plain_bittorrent(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src")
    async with node(tmp_path, "seed") as seeder:
        shared = await seeder.share(data, allow=[])
        reader, writer = await asyncio.open_connection("127.0.0.1", seeder.port)
        hs = wire.Handshake(shared.wire_hash, b"-XX0000-" + os.urandom(12), wire.make_reserved(fast=True))
        writer.write(wire.encode_handshake(hs))
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 5.0)  # the seeder closes without answering
        assert reply == b""
        writer.close()


async def test_get_from_a_seeder_that_refuses_our_key_says_so_and_fails(tmp_path: Path) -> None:
    """`peerloom get --private` with a key the seeder does not allow: one line naming both keys, a non-zero exit,
    soon (every given peer refused and a private swarm has no other source), not "fetching metadata" for ever."""
    data = make_single(tmp_path / "src")
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "friend") as friend:
        shared = await seeder.share(data, allow=[friend.identity.peer_id])
        assert shared.meta is not None
        stranger_home = tmp_path / "stranger"
        stranger = Identity.load_or_create(stranger_home)
        magnet = str(Magnet.from_metainfo(shared.meta))
        code, _, err = await peerloom(
            "get", magnet, "--private", "--peer", str(seeder.secure_addrs[0]), "-o", str(tmp_path / "dst"),
            "--home", str(stranger_home), "--listen", "127.0.0.1", "--no-dht", "--no-lsd", "--no-daemon", timeout=60,
        )
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1, err
    assert len(errors) == 1 and "Traceback" not in err, err
    ours, theirs = str(stranger.peer_id), str(seeder.identity.peer_id)
    assert f"peer {theirs} refused our key {ours}" in errors[0] and f"--allow {ours}" in errors[0], errors[0]
