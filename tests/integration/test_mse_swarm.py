"""MSE/PE between peerloom nodes on loopback: each pair of `encryption` policies ends with the method libtorrent's
policies would give (or no connection), byte-identical data; garbage and refused plaintext cost only that
connection; a raw MSE client (the sans-I/O core driven by hand) is answered on the plaintext port."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from support.swarm import assert_same_files, make_single, node, wait_done

from peerloom.torrent import wire
from peerloom.torrent.mse import PLAINTEXT, RC4, MseHandshake

SIZE = 1024 * 1024 + 777


async def first_method(torrent: object, timeout: float = 10.0) -> object:
    """The MSE method of the torrent's first peer connection (`mse` of its transport: None when not MSE at all), seen
    while it lasts: two seeds hang up on each other, so it is read during the (rate-limited) transfer."""
    async with asyncio.timeout(timeout):
        while not torrent.peers:  # type: ignore[attr-defined]
            await asyncio.sleep(0.005)
    return torrent.peers[0].transport.get_extra_info("mse")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("seed_policy", "leech_policy", "method"),
    [
        ("prefer", "prefer", PLAINTEXT),  # MSE handshake, then plaintext: the dialler offers both, prefer takes plain
        ("require", "require", RC4),
        ("require", "prefer", RC4),  # the seeder answers: require selects RC4
        ("prefer", "require", PLAINTEXT),
        ("disable", "prefer", None),  # the encrypted dial fails, the plaintext retry works
        ("prefer", "disable", 0),  # a plaintext dial, told apart by its first bytes
    ],
)
async def test_policies_agree_and_the_data_arrives_intact(
    tmp_path: Path, seed_policy: str, leech_policy: str, method: int | None
) -> None:
    data = make_single(tmp_path / "src", size=SIZE)
    async with node(tmp_path, "seed", encryption=seed_policy) as seeder, \
            node(tmp_path, "leech", encryption=leech_policy, download_rate_limit=4_000_000) as leecher:
        shared = await seeder.share(data, version="hybrid", piece_length=65536)
        assert shared.meta is not None
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        assert await first_method(shared) == method
        await wait_done(t, 30)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


@pytest.mark.parametrize(("seed_policy", "leech_policy"), [("require", "disable"), ("disable", "require")])
async def test_require_and_disable_never_connect(tmp_path: Path, seed_policy: str, leech_policy: str) -> None:
    data = make_single(tmp_path / "src", size=100_000)
    async with node(tmp_path, "seed", encryption=seed_policy, connect_timeout=1.0) as seeder, \
            node(tmp_path, "leech", encryption=leech_policy, connect_timeout=1.0) as leecher:
        shared = await seeder.share(data, version="v1")
        assert shared.meta is not None
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        await asyncio.sleep(1.5)
        assert not t.peers and not shared.peers and t.status().progress == 0


async def _closed_by_node(reader: asyncio.StreamReader) -> bool:
    try:
        while await asyncio.wait_for(reader.read(65536), 5):
            pass
    except ConnectionResetError:
        pass
    return True


async def test_garbage_in_the_handshake_drops_that_peer_and_the_node_goes_on(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=SIZE)
    async with node(tmp_path, "seed", encryption="prefer") as seeder, node(tmp_path, "leech") as leecher:
        shared = await seeder.share(data, version="v1")
        assert shared.meta is not None
        rnd = random.Random(5)
        for junk in (rnd.randbytes(700), bytes(96) + bytes(700), b"\x13BitTorrent protocoX" + rnd.randbytes(100)):
            reader, writer = await asyncio.open_connection("127.0.0.1", seeder.port)
            writer.write(junk)
            assert await _closed_by_node(reader)
            writer.close()
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        await wait_done(t, 30)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_require_refuses_a_plaintext_handshake(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=100_000)
    async with node(tmp_path, "seed", encryption="require") as seeder:
        shared = await seeder.share(data, version="v1")
        assert shared.meta is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", seeder.port)
        hs = wire.Handshake(shared.meta.info_hash_v1 or b"", b"-XX0001-" + bytes(12), wire.make_reserved())
        writer.write(wire.encode_handshake(hs))
        assert await reader.read(100) == b""  # closed without a word
        writer.close()


async def test_a_hand_driven_mse_client_gets_the_nodes_handshake_encrypted(tmp_path: Path) -> None:
    """The v2 hash truncated to 20 bytes finds a v2-only torrent, and the reply is RC4 under require."""
    data = make_single(tmp_path / "src", size=100_000)
    async with node(tmp_path, "seed", encryption="require") as seeder:
        shared = await seeder.share(data, version="v2")
        assert shared.meta is not None and shared.meta.info_hash_v2 is not None
        skey = shared.meta.info_hash_v2[:20]
        ours = wire.Handshake(skey, b"-XX0001-" + bytes(12), wire.make_reserved(v2=True))
        client = MseHandshake(outgoing=True, skey=skey, initial_payload=lambda: wire.encode_handshake(ours))
        reader, writer = await asyncio.open_connection("127.0.0.1", seeder.port)
        writer.write(client.start())
        while client.established is None:
            chunk = await asyncio.wait_for(reader.read(4096), 5)
            assert chunk
            writer.write(client.receive(chunk))
        done = client.established
        assert done.method == RC4 and done.decrypt is not None
        got = bytearray(done.payload)
        while len(got) < wire.HANDSHAKE_LENGTH:
            got += done.decrypt.update(await asyncio.wait_for(reader.read(4096), 5))
        answer = wire.parse_handshake(bytes(got[: wire.HANDSHAKE_LENGTH]))
        assert answer.info_hash == skey
        writer.close()


def test_the_cli_takes_only_the_three_policies(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from peerloom.cli import app

    runner = CliRunner()
    missing = str(tmp_path / "missing")
    for before in (["share", missing], ["get", f"{missing}.torrent"], ["daemon", "--home", missing]):
        result = runner.invoke(app, [*before, "--encryption", "rc4"])
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.stderr
        assert "--encryption takes prefer, require or disable" in lines[0]
