"""BitTorrent over IPv6 on the loopback ::1: a swarm of two nodes, a node on every interface taking IPv4 and IPv6
peers on one port (IPv4 ones seen as IPv4, not ::ffff:a.b.c.d), an HTTP tracker on ::1 handing out `peers6`
(BEP 7), peer exchange telling of an IPv6 peer in `added6` (BEP 11), and the DHT of a dual-stack node in both
families (BEP 32).

Every test skips when this machine cannot bind ::1, and only then."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from support.ipv6 import needs_ipv6, node6
from support.swarm import assert_same_files, make_single, wait_done
from support.trackers import HttpTracker
from support.udp_tracker_server import UdpTracker

pytestmark = needs_ipv6


async def _until(check: object, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} within {timeout:g} s")


async def test_two_nodes_swarm_over_ipv6_loopback(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=1_500_000)
    async with node6(tmp_path, "seed") as seeder, node6(tmp_path, "leech", download_rate_limit=1_000_000) as leecher:
        assert seeder.engine.families == {socket.AF_INET6}
        shared = await seeder.share(data, version="hybrid", piece_length=65536)
        assert shared.meta is not None
        t = await leecher.add(shared.meta, tmp_path / "dst", peers=[("::1", seeder.port)])
        await _until(lambda: shared.peers, 5, "the leecher did not connect")
        assert [p.remote[0] for p in shared.peers if p.remote] == ["::1"]
        await wait_done(t, 20)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_a_node_on_every_interface_takes_ipv4_and_ipv6_peers_on_one_port(tmp_path: Path) -> None:
    """The seeder listens on `::` (every interface; the leechers dial it on loopback only): one BitTorrent port
    for both families, where the IPv4 leecher is seen as 127.0.0.1, not as ::ffff:127.0.0.1."""
    data = make_single(tmp_path / "src", size=800_000)
    async with (
        node6(tmp_path, "seed", host="::") as seeder,
        node6(tmp_path, "four", host="127.0.0.1", download_rate_limit=500_000) as four,
        node6(tmp_path, "six", download_rate_limit=500_000) as six,
    ):  # rate limits keep both connected to the seeder for a while
        assert seeder.engine.dual_stack
        shared = await seeder.share(data, version="v1", piece_length=65536)
        assert shared.meta is not None
        t4 = await four.add(shared.meta, tmp_path / "dst4", peers=[("127.0.0.1", seeder.port)])
        t6 = await six.add(shared.meta, tmp_path / "dst6", peers=[("::1", seeder.port)])
        await _until(lambda: len(shared.peers) == 2, 5, "the seeder did not hold both leechers")
        assert sorted(p.remote[0] for p in shared.peers if p.remote) == ["127.0.0.1", "::1"]
        await wait_done(t4, 20)
        await wait_done(t6, 20)
        # a ban of the IPv4 leecher holds for the address the dual-stack socket reports, and back
        seeder.engine.ban(("::ffff:127.0.0.1", four.port), None)
        assert seeder.engine.is_banned(("127.0.0.1", four.port))
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst4")
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst6")


async def test_an_http_tracker_on_ipv6_hands_out_peers6(tmp_path: Path) -> None:
    """BEP 7: the tracker, reached over IPv6, tells the leecher of the seeder in `peers6`."""
    data = make_single(tmp_path / "src", size=600_000)
    async with HttpTracker(interval=1, host="::1") as tracker:
        async with node6(tmp_path, "seed") as seeder, node6(tmp_path, "leech") as leecher:
            shared = await seeder.share(data, version="v1", piece_length=65536, trackers=[tracker.announce_url])
            assert shared.meta is not None
            await _until(lambda: tracker.swarms, 5, "the seeder did not announce")
            t = await leecher.add(shared.meta, tmp_path / "dst")  # no peer given: the tracker is the only source
            await wait_done(t, 20)
            assert ("::1", seeder.port) in next(iter(tracker.swarms.values()))  # before the nodes say "stopped"
        assert tracker.peers6_sent >= 1
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_a_udp_tracker_reached_over_ipv6_answers_with_18_byte_peers(tmp_path: Path) -> None:
    """BEP 15: a tracker reached over IPv6 answers with IPv6 peers (16-byte address, 2-byte port each)."""
    data = make_single(tmp_path / "src", size=600_000)
    async with (
        UdpTracker(interval=1, host="::1") as tracker,
        node6(tmp_path, "seed") as seeder,
        node6(tmp_path, "leech") as leecher,
    ):
        shared = await seeder.share(data, version="v1", piece_length=65536, trackers=[tracker.announce_url])
        assert shared.meta is not None
        await _until(lambda: tracker.swarms, 5, "the seeder did not announce")
        t = await leecher.add(shared.meta, tmp_path / "dst")  # no peer given: the tracker is the only source
        await wait_done(t, 20)
        assert ("::1", seeder.port) in next(iter(tracker.swarms.values()))  # before the nodes say "stopped"
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_a_tracker_is_reached_over_the_family_our_port_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracker name with an IPv4 and an IPv6 address: a client whose port takes IPv6 alone announces over IPv6 (the
    tracker hands out the address it saw us come from), though the resolver lists the IPv4 address first."""
    from peerloom.torrent.tracker import AnnounceRequest
    from peerloom.torrent.tracker_client import TrackerClient

    async with UdpTracker(interval=1, host="::1") as tracker:
        async def getaddrinfo(host: str, port: int, **_: object) -> list[tuple]:
            assert host == "tracker.test"
            return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port)),
                    (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port, 0, 0))]

        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
        client = TrackerClient(udp_timeout=2.0, udp_retransmit_base=0.5, families=frozenset({socket.AF_INET6}))
        try:
            request = AnnounceRequest(b"i" * 20, b"-PL0100-" + b"p" * 12, 6881, 0, 0, 0, event="started")
            response = await client.announce(f"udp://tracker.test:{tracker.port}/announce", request)
        finally:
            await client.close()
        assert response.interval == 1 and ("::1", 6881) in tracker.swarms[b"i" * 20]


async def test_peer_exchange_tells_of_an_ipv6_peer_in_added6(tmp_path: Path) -> None:
    """B knows only A; A tells B of the seeder, an IPv6 peer, which only `added6` can carry (BEP 11)."""
    data = make_single(tmp_path / "src", size=2_000_000)
    async with (
        node6(tmp_path, "seed", pex_interval=0.2) as seeder,
        node6(tmp_path, "a", pex_interval=0.2, download_rate_limit=2_000_000) as a,
        node6(tmp_path, "b", pex_interval=0.2, download_rate_limit=1_000_000) as b,
    ):  # rate limits keep both downloading long enough for the exchange
        shared = await seeder.share(data, version="v1", piece_length=65536)
        assert shared.meta is not None
        ta = await a.add(shared.meta, tmp_path / "dst-a", peers=[("::1", seeder.port)])
        tb = await b.add(shared.meta, tmp_path / "dst-b", peers=[("::1", a.port)])
        await _until(lambda: ("::1", seeder.port) in tb.peer_table, 10,
                     "B never learnt of the seeder, which only peer exchange could tell it")
        await _until(lambda: any(p.address == ("::1", seeder.port) for p in tb.peers), 10,
                     "B did not connect to the seeder it was told of")
        await wait_done(ta, 20)
        await wait_done(tb, 20)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst-b")


async def test_a_dual_stack_node_joins_both_dhts(tmp_path: Path) -> None:
    """BEP 32: a node whose port takes both families runs an IPv4 and an IPv6 DHT node (on its own port number; the
    two tables stay apart), and a node on ::1 alone runs the IPv6 one. Neither is told of any other node here."""
    async with (
        node6(tmp_path, "both", host="::", dht=True) as both,
        node6(tmp_path, "six", dht=True) as six,
        node6(tmp_path, "four", host="127.0.0.1", dht=True) as four,
    ):
        assert both.dht is not None and six.dht is not None and four.dht is not None
        assert set(both.dht.stats()) >= {"ipv4", "ipv6"}
        assert "ipv6" in six.dht.stats() and "ipv4" not in six.dht.stats()
        node_id = both.dht.node_id
        assert await six.dht.ping(("::1", both.dht.port), timeout=3) == node_id
        assert await four.dht.ping(("127.0.0.1", both.dht.port), timeout=3) == node_id


async def test_a_dual_stack_dht_node_learns_ipv6_nodes_through_ipv4_want() -> None:
    """BEP 32 `want`: B knows C only in its IPv6 table; A, in both DHTs but bootstrapped over IPv4 alone (through B),
    asks B for both families and so learns C, which then answers A's IPv6 ping into A's IPv6 table."""
    from peerloom.dht.driver import Dht

    c, b, a = Dht(), Dht(), Dht()
    try:
        await c.start(0, "::1", wait=True)
        await b.start(0, "127.0.0.1", host6="::1", bootstrap=[("::1", c.port)], wait=True)
        assert b.stats()["ipv6"]["table_size"] == 1
        await a.start(0, "127.0.0.1", host6="::1", bootstrap=[("127.0.0.1", b.port)], wait=True)
        await a.get_peers(b"\x42" * 20, timeout=3)  # a lookup of A's: its IPv4 queries ask B for nodes6 too
        await _until(lambda: a.stats()["ipv6"]["table_size"] >= 1, 3, "A's IPv6 table stayed empty")
        assert await a.ping(("::1", c.port)) == c.node_id
    finally:
        for dht in (a, b, c):
            await dht.close()
