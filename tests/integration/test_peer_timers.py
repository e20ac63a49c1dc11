"""The peer connection's one timer, armed from its PeerWire's `next_wakeup()`: the handshake deadline, then the
keep-alive (BEP 3), both from the driver rather than from the swarm's once-a-second tick."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.raw_peer import RawPeer
from support.swarm import make_single, node

from peerloom.torrent import peer_wire, wire
from peerloom.torrent.create import create

pytestmark = pytest.mark.timeout(60)


async def test_a_peer_that_never_finishes_its_handshake_is_closed_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peer_wire, "HANDSHAKE_TIMEOUT", 0.3)
    async with node(tmp_path, "seed") as seeder:
        reader, writer = await asyncio.open_connection("127.0.0.1", seeder.port)
        try:
            writer.write(wire.PROTOCOL[:10])  # a start, then silence
            await writer.drain()
            assert await asyncio.wait_for(reader.read(100), 10) == b""  # closed by the node, without an answer
        finally:
            writer.close()


async def test_a_silent_connection_gets_keep_alives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_wire, "KEEPALIVE_EVERY", 0.3)
    data = make_single(tmp_path / "src", size=100_000)
    meta = create(data, version="v1", piece_length=32768)
    async with node(tmp_path, "seed") as seeder:
        torrent = await seeder.add(meta, data.parent)
        async with asyncio.timeout(10):
            while torrent.status().state != "seeding":
                await asyncio.sleep(0.02)
        peer = await RawPeer.connect(seeder.port, meta.info_hash_v1)
        try:
            await peer.expect(lambda m: isinstance(m, wire.HaveAll))
            await peer.expect(lambda m: isinstance(m, wire.KeepAlive), timeout=5)
            await peer.expect(lambda m: isinstance(m, wire.KeepAlive), timeout=5)  # and again: the timer re-arms
        finally:
            peer.close()
