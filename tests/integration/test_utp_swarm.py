"""Two peerloom nodes swarming over uTP on loopback: the peer wire runs over it unchanged, a dial prefers uTP and
falls back to TCP, uTP shares the DHT's UDP socket (and leaves it as it found it), a peer sending
wild uTP packets is dropped, and MSE runs over uTP under every pair of encryption policies as it does over TCP."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from support.swarm import assert_same_files, make_single, node, wait_done

from peerloom.dht.driver import Dht
from peerloom.torrent.mse import PLAINTEXT, RC4
from peerloom.torrent.utp_driver import pmtu_mode
from peerloom.torrent.utp_packet import PacketType, encode_header


def over_utp(torrent: object) -> list[bool]:
    return [bool(p.transport.get_extra_info("utp")) for p in torrent.peers]  # type: ignore[attr-defined]


async def first_peers(torrent: object) -> list[bool]:
    """How the torrent's first connected peers are carried (a finished download drops its seeders: look early)."""
    async with asyncio.timeout(10):
        while not torrent.peers:  # type: ignore[attr-defined]
            await asyncio.sleep(0.002)
    return over_utp(torrent)


async def test_peerloom_to_peerloom_over_utp(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src")
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech", utp_first=True) as leecher:
        shared = await seeder.share(data, version="hybrid", piece_length=65536)
        assert shared.meta is not None
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        assert await first_peers(t) == [True] and await first_peers(shared) == [True]
        await wait_done(t, 30)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_a_peer_without_utp_is_reached_over_tcp(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=300_000)
    async with node(tmp_path, "seed", utp=False) as seeder, node(tmp_path, "leech", utp_first=True) as leecher:
        shared = await seeder.share(data, piece_length=32768)
        assert shared.meta is not None
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        assert await first_peers(t) == [False]
        await wait_done(t, 30)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_utp_shares_the_dht_socket(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=500_000)
    async with node(tmp_path, "seed", dht=True) as seeder, node(tmp_path, "leech", utp_first=True) as leecher:
        assert seeder.dht is not None and seeder.dht.port == seeder.port
        shared = await seeder.share(data, piece_length=32768)
        assert shared.meta is not None
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        assert await first_peers(t) == [True]
        await wait_done(t, 30)
        sockets = seeder.dht.shared_sockets()
        assert set(sockets) == {socket.AF_INET}
        dht_socket = sockets[socket.AF_INET][0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fresh:  # uTP's datagrams went with don't-fragment
            assert pmtu_mode(dht_socket) == pmtu_mode(fresh)  # (the NAT lab sees it), the DHT's keep the default
        seeder.engine.close_utp()  # the socket stays the DHT's: uTP going away leaves it open, and KRPC still flows
        assert dht_socket.fileno() != -1 and seeder.dht.shared_sockets() == sockets
        async with Dht() as probe:
            await probe.start(0, "127.0.0.1")
            assert await probe.ping(("127.0.0.1", seeder.dht.port), timeout=5) == seeder.dht.node_id
        assert seeder.dht.internal_errors == 0
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_a_peer_sending_wild_utp_packets_is_dropped_and_the_node_stays_up(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=300_000)
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech", utp_first=True) as leecher:
        shared = await seeder.share(data, piece_length=32768)
        assert shared.meta is not None
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.bind(("127.0.0.1", 0))
        try:
            target = ("127.0.0.1", seeder.port)
            raw.sendto(encode_header(PacketType.SYN, 900, 1, 0, 1 << 20, 0, 0), target)
            raw.sendto(encode_header(PacketType.DATA, 901, 1, 0xFFF0, 0, 0, 0) + b"x", target)  # acks the future
            raw.sendto(b"\x01\x02" + bytes(18) + b"\x02\x00" * 30, target)  # a wild extension chain
            raw.sendto(encode_header(PacketType.SYN, 902, 1, 0, 0xFFFFFFFF, 0, 0), target)
            raw.sendto(encode_header(PacketType.DATA, 903, 40_000, 0, 0, 0, 0), target)  # seq far past the window
            await asyncio.sleep(0.3)
        finally:
            raw.close()
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        assert await first_peers(t) == [True]
        await wait_done(t, 30)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_peers_learnt_over_pex_with_the_utp_flag_are_dialled_over_utp(tmp_path: Path) -> None:
    """A reaches the seeder and B over uTP and tells each of the other with BEP 11's uTP flag. Neither the seeder
    nor B dials uTP first for peers it knows nothing of, so whichever of them dials the other does it over uTP only
    because of the flag."""
    data = make_single(tmp_path / "src")
    async with (
        node(tmp_path, "seed", pex_interval=0.2) as seeder,
        node(tmp_path, "a", pex_interval=0.2, download_rate_limit=2_000_000, utp_first=True) as a,
        node(tmp_path, "b", pex_interval=0.2, download_rate_limit=1_000_000) as b,
    ):  # rate limits keep both downloading long enough for the exchange
        shared = await seeder.share(data, version="hybrid", piece_length=65536)
        assert shared.meta is not None
        tb = await b.add(shared.meta, tmp_path / "dst-b")
        await a.add(shared.meta, tmp_path / "dst-a", peers=[("127.0.0.1", seeder.port), ("127.0.0.1", b.port)])
        async with asyncio.timeout(10):
            while not any(p.peer_id == seeder.peer_id for p in tb.peers):
                await asyncio.sleep(0.02)
        (link,) = [p for p in tb.peers if p.peer_id == seeder.peer_id]
        assert link.transport.get_extra_info("utp")
        await wait_done(tb)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst-b")


@pytest.mark.parametrize(
    ("seed_policy", "leech_policy", "method"),
    [
        ("require", "require", RC4),
        ("require", "prefer", RC4),  # the seeder answers: require selects RC4
        ("prefer", "prefer", PLAINTEXT),  # the MSE handshake, then plaintext: prefer takes it when offered
        ("disable", "prefer", None),  # the encrypted uTP dial fails; the plaintext retry goes over uTP too
        ("prefer", "disable", 0),  # a plaintext uTP dial, told apart by its first bytes
    ],
)
async def test_mse_runs_over_utp_as_over_tcp(tmp_path: Path, seed_policy: str, leech_policy: str,
                                            method: int | None) -> None:
    data = make_single(tmp_path / "src", size=1024 * 1024 + 777)
    async with node(tmp_path, "seed", encryption=seed_policy) as seeder, \
            node(tmp_path, "leech", encryption=leech_policy, utp_first=True, download_rate_limit=4_000_000) as leecher:
        shared = await seeder.share(data, version="hybrid", piece_length=65536)
        assert shared.meta is not None
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        assert await first_peers(t) == [True] and await first_peers(shared) == [True]
        assert shared.peers[0].transport.get_extra_info("mse") == method
        assert t.peers[0].transport.get_extra_info("mse") == (method or None)  # None: no MSE on the dialler's side
        await wait_done(t, 30)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_require_over_utp_never_falls_back_to_plaintext(tmp_path: Path) -> None:
    """A uTP peer that refuses MSE is not dialled in plaintext by a "require" node, over uTP or TCP."""
    data = make_single(tmp_path / "src", size=100_000)
    async with node(tmp_path, "seed", encryption="disable", connect_timeout=1.0) as seeder, \
            node(tmp_path, "leech", encryption="require", utp_first=True, connect_timeout=1.0) as leecher:
        shared = await seeder.share(data, version="v1")
        assert shared.meta is not None
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        await asyncio.sleep(1.5)
        assert not t.peers and not shared.peers and t.status().progress == 0
