"""uTP over IPv6: two nodes on the loopback ::1 swarm over uTP (encrypted too), and a node on every interface takes
uTP from an IPv4 and an IPv6 peer on one port number, on UDP sockets of its own and on the DHT's (BEP 32's two
families), as its TCP port takes both.

Every test skips when this machine cannot bind ::1, and only then."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.ipv6 import needs_ipv6, node6
from support.swarm import assert_same_files, make_single, wait_done

from peerloom.torrent.mse import RC4

pytestmark = needs_ipv6


async def _until(check: object, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.02)):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} within {timeout:g} s")


def carried(torrent: object) -> list[tuple[str, bool]]:
    """Each peer's address and whether uTP carries it."""
    return sorted((p.remote[0], bool(p.transport.get_extra_info("utp")))  # type: ignore[attr-defined]
                  for p in torrent.peers)  # type: ignore[attr-defined]


@pytest.mark.parametrize("encryption", ["disable", "require"])
async def test_two_nodes_swarm_over_utp_on_ipv6_loopback(tmp_path: Path, encryption: str) -> None:
    data = make_single(tmp_path / "src", size=1_500_000)
    async with (
        node6(tmp_path, "seed", encryption=encryption) as seeder,
        node6(tmp_path, "leech", utp_first=True, encryption=encryption, download_rate_limit=1_000_000) as leecher,
    ):
        shared = await seeder.share(data, version="hybrid", piece_length=65536)
        assert shared.meta is not None
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[("::1", seeder.port)])
        await _until(lambda: shared.peers and t.peers, 10, "the leecher did not connect")
        assert carried(shared) == [("::1", True)] and carried(t) == [("::1", True)]
        if encryption == "require":
            assert shared.peers[0].transport.get_extra_info("mse") == RC4
        await wait_done(t, 30)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


@pytest.mark.parametrize("dht", [False, True])
async def test_a_node_on_every_interface_takes_utp_over_ipv4_and_ipv6(tmp_path: Path, dht: bool) -> None:
    """Without the DHT the seeder's uTP has a socket per family of its own; with it, it shares the DHT's two."""
    data = make_single(tmp_path / "src", size=800_000)
    async with (
        node6(tmp_path, "seed", host="::", dht=dht) as seeder,
        node6(tmp_path, "four", host="127.0.0.1", utp_first=True, download_rate_limit=400_000) as four,
        node6(tmp_path, "six", utp_first=True, download_rate_limit=400_000) as six,
    ):  # rate limits keep both connected to the seeder for a while
        assert seeder.engine.dual_stack
        if dht:
            assert seeder.dht is not None and seeder.dht.port == seeder.port and len(seeder.dht.endpoints) == 2
        shared = await seeder.share(data, version="v1", piece_length=65536)
        assert shared.meta is not None
        t4 = await four.add(shared.meta, tmp_path / "dst4", peers=[("127.0.0.1", seeder.port)])
        t6 = await six.add(shared.meta, tmp_path / "dst6", peers=[("::1", seeder.port)])
        await _until(lambda: len(shared.peers) == 2, 10, "the seeder did not hold both leechers")
        assert carried(shared) == [("127.0.0.1", True), ("::1", True)]
        await wait_done(t4, 30)
        await wait_done(t6, 30)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst4")
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst6")
