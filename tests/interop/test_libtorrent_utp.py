"""peerloom and libtorrent 2.1.1 over uTP only (libtorrent's TCP off both ways), byte-identical both directions, in
plaintext and with libtorrent's encryption forced to RC4 (MSE over uTP, against peerloom's `require` and `prefer`),
over IPv4 and over the IPv6 loopback ::1.

libtorrent listens for uTP on the UDP port of its listen port's number, as peerloom does; with its TCP off, a
download that completes went over uTP. DHT, LSD, UPnP and NAT-PMP stay off (tests/support/libtorrent_peer.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.ipv6 import needs_ipv6, node6
from support.swarm import assert_same_files, make_single, node, wait_done

from peerloom.torrent.create import create
from peerloom.torrent.mse import RC4

pytest.importorskip("libtorrent", reason="libtorrent Python bindings are not installed")
from support.libtorrent_peer import LibtorrentPeer

pytestmark = pytest.mark.interop

UTP_ONLY = {
    "enable_outgoing_utp": True,
    "enable_incoming_utp": True,
    "enable_outgoing_tcp": False,
    "enable_incoming_tcp": False,
}
PIECE = 32768


async def first_peers_over_utp(torrent: object) -> list[bool]:
    async with asyncio.timeout(20):
        while not torrent.peers:  # type: ignore[attr-defined]
            await asyncio.sleep(0.005)
    return [bool(p.transport.get_extra_info("utp")) for p in torrent.peers]  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", ["v1", "hybrid"])
async def test_libtorrent_seeds_peerloom_downloads_over_utp(tmp_path: Path, version: str) -> None:
    data = make_single(tmp_path / "src", size=2 * 1024 * 1024 + 777)
    meta = create(data, version=version, piece_length=PIECE)
    with LibtorrentPeer(**UTP_ONLY) as lt_peer:
        handle = lt_peer.add(meta.to_bytes(), tmp_path / "src", seed_mode=True)
        await lt_peer.wait_seeding(handle)
        async with node(tmp_path, "leech", utp_first=True) as leecher:
            t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", lt_peer.port)])
            assert await first_peers_over_utp(t) == [True]
            await wait_done(t, 120)
            assert t.status().hash_failures == 0
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


@pytest.mark.parametrize("version", ["v1", "hybrid"])
async def test_peerloom_seeds_libtorrent_downloads_over_utp(tmp_path: Path, version: str) -> None:
    data = make_single(tmp_path / "src", size=2 * 1024 * 1024 + 777)
    async with node(tmp_path, "seed") as seeder:
        shared = await seeder.share(data, version=version, piece_length=PIECE)
        assert shared.meta is not None
        with LibtorrentPeer(**UTP_ONLY) as lt_peer:
            handle = lt_peer.add(shared.meta.to_bytes(), tmp_path / "dst")
            lt_peer.connect(handle, seeder.port)
            assert await first_peers_over_utp(shared) == [True]
            await lt_peer.wait_finished(handle, timeout=120)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


def forced_rc4() -> dict[str, int]:
    """libtorrent speaks nothing but the encrypted handshake, and only RC4 (tests/interop/test_libtorrent_mse.py)."""
    import libtorrent as lt

    return {"out_enc_policy": int(lt.enc_policy.pe_forced), "in_enc_policy": int(lt.enc_policy.pe_forced),
            "allowed_enc_level": int(lt.enc_level.pe_rc4)}


def mse_methods(torrent: object) -> list[object]:
    return [p.transport.get_extra_info("mse") for p in torrent.peers]  # type: ignore[attr-defined]


@pytest.mark.parametrize("policy", ["require", "prefer"])
async def test_libtorrent_seeds_peerloom_dials_mse_over_utp(tmp_path: Path, policy: str) -> None:
    data = make_single(tmp_path / "src", size=2 * 1024 * 1024 + 777)
    meta = create(data, version="hybrid", piece_length=PIECE)
    with LibtorrentPeer(**UTP_ONLY, **forced_rc4()) as lt_peer:
        handle = lt_peer.add(meta.to_bytes(), tmp_path / "src", seed_mode=True)
        await lt_peer.wait_seeding(handle)
        async with node(tmp_path, "leech", utp_first=True, encryption=policy) as leecher:
            t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", lt_peer.port)])
            assert await first_peers_over_utp(t) == [True]
            assert mse_methods(t) == [RC4]
            await wait_done(t, 120)
            assert t.status().hash_failures == 0
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


@pytest.mark.parametrize("policy", ["require", "prefer"])
async def test_libtorrent_dials_mse_over_utp_and_downloads(tmp_path: Path, policy: str) -> None:
    data = make_single(tmp_path / "src", size=2 * 1024 * 1024 + 777)
    async with node(tmp_path, "seed", encryption=policy) as seeder:
        shared = await seeder.share(data, version="hybrid", piece_length=PIECE)
        assert shared.meta is not None
        with LibtorrentPeer(**UTP_ONLY, **forced_rc4()) as lt_peer:
            handle = lt_peer.add(shared.meta.to_bytes(), tmp_path / "dst")
            lt_peer.connect(handle, seeder.port)
            assert await first_peers_over_utp(shared) == [True]
            assert mse_methods(shared) == [RC4]
            await lt_peer.wait_finished(handle, timeout=120)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


UTP6 = {**UTP_ONLY, "listen_interfaces": "[::1]:0"}


@needs_ipv6
async def test_libtorrent_seeds_peerloom_downloads_over_utp_on_ipv6(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=2 * 1024 * 1024 + 777)
    meta = create(data, version="hybrid", piece_length=PIECE)
    with LibtorrentPeer(**UTP6) as lt_peer:
        handle = lt_peer.add(meta.to_bytes(), tmp_path / "src", seed_mode=True)
        await lt_peer.wait_seeding(handle)
        async with node6(tmp_path, "leech", utp_first=True) as leecher:
            t = await leecher.add(meta, tmp_path / "dst", peers=[("::1", lt_peer.port)])
            assert await first_peers_over_utp(t) == [True]
            assert [p.remote[0] for p in t.peers] == ["::1"]
            await wait_done(t, 120)
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


@needs_ipv6
async def test_peerloom_seeds_libtorrent_downloads_over_utp_on_ipv6(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=2 * 1024 * 1024 + 777)
    async with node6(tmp_path, "seed") as seeder:
        shared = await seeder.share(data, version="hybrid", piece_length=PIECE)
        assert shared.meta is not None
        with LibtorrentPeer(**UTP6) as lt_peer:
            handle = lt_peer.add(shared.meta.to_bytes(), tmp_path / "dst")
            lt_peer.connect(handle, seeder.port, host="::1")
            assert await first_peers_over_utp(shared) == [True]
            assert [p.remote[0] for p in shared.peers] == ["::1"]
            await lt_peer.wait_finished(handle, timeout=120)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")
