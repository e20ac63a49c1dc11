"""UDP trackers (BEP 15) and scrape (BEP 48) on loopback: the client against a real test tracker, lost and
stray datagrams, refusals, and two peerloom nodes that meet only through a UDP tracker."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from support.swarm import assert_same_files, make_single, node, wait_done
from support.trackers import HttpTracker
from support.udp_tracker_server import UdpTracker

from peerloom.torrent.tracker import AnnounceRequest, ScrapeStats, TrackerError
from peerloom.torrent.tracker_client import TrackerClient

HASH = b"\x11" * 20


def request(port: int, *, left: int = 1, event: str = "started", info_hash: bytes = HASH) -> AnnounceRequest:
    return AnnounceRequest(info_hash, b"-PL0100-" + port.to_bytes(12, "big"), port, 0, 0, left, event=event)


async def until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_announce_connects_once_and_learns_the_other_peers() -> None:
    async with UdpTracker(interval=1800) as tracker:
        client = TrackerClient(timeout=5, udp_timeout=5)
        try:
            first = await client.announce(tracker.announce_url, request(7001, left=0))
            second = await client.announce(tracker.announce_url, request(7002))
        finally:
            await client.close()
    assert first.peers == [] and first.interval == 1800 and first.complete == 1
    assert second.peers == [("127.0.0.1", 7001)] and (second.complete, second.incomplete) == (1, 1)
    assert tracker.actions == ["connect", "announce", "announce"]  # the connection id was reused
    assert [a.url_data for a in tracker.announces] == [b"/announce"] * 2  # BEP 41 path option


async def test_lost_datagrams_are_retransmitted() -> None:
    async with UdpTracker(drop=3) as tracker:  # the connect and two retransmits vanish
        client = TrackerClient(timeout=5, udp_timeout=5, udp_retransmit_base=0.05)
        try:
            resp = await client.announce(tracker.announce_url, request(7001))
        finally:
            await client.close()
    assert resp.interval == 1 and tracker.received == 5 and tracker.actions == ["connect", "announce"]


async def test_a_silent_tracker_is_a_tracker_error_within_the_timeout() -> None:
    async with UdpTracker(drop=10**6) as tracker:
        client = TrackerClient(timeout=0.6, udp_timeout=0.6, udp_retransmit_base=0.05)
        started = time.monotonic()
        try:
            with pytest.raises(TrackerError, match=r"did not answer in 0\.6 s"):
                await client.announce(tracker.announce_url, request(7001))
        finally:
            await client.close()
    assert time.monotonic() - started < 2.0
    assert tracker.received >= 4  # sends at 0, 0.05, 0.15, 0.35 s: the doubling schedule


async def test_a_refusal_is_reported_with_its_message_and_the_id_forgotten() -> None:
    async with UdpTracker(refuse="torrent not registered") as tracker:
        client = TrackerClient(timeout=5, udp_timeout=5)
        try:
            with pytest.raises(TrackerError, match="torrent not registered"):
                await client.announce(tracker.announce_url, request(7001))
            assert len(client.udp.connection_ids) == 0
            tracker.refuse = None
            await client.announce(tracker.announce_url, request(7001))
        finally:
            await client.close()
    assert tracker.actions == ["connect", "connect", "announce"]


async def test_stray_datagrams_with_other_transaction_ids_are_ignored() -> None:
    async with UdpTracker(noise=True) as tracker:
        client = TrackerClient(timeout=5, udp_timeout=5)
        try:
            resp = await client.announce(tracker.announce_url, request(7001))
        finally:
            await client.close()
    assert resp.interval == 1 and tracker.actions == ["connect", "announce"]


async def test_concurrent_announces_share_one_socket() -> None:
    async with UdpTracker() as tracker:
        client = TrackerClient(timeout=5, udp_timeout=5)
        try:
            await asyncio.gather(*(client.announce(tracker.announce_url, request(7000 + i)) for i in range(20)))
            assert len(client.udp._endpoints) == 1
        finally:
            await client.close()
    assert len(tracker.swarms[HASH]) == 20


async def test_close_closes_the_socket_and_the_client_can_start_again() -> None:
    async with UdpTracker() as tracker:
        client = TrackerClient(timeout=5, udp_timeout=5)
        await client.announce(tracker.announce_url, request(7001))
        endpoint = client.udp._endpoints[socket.AF_INET]
        await client.close()
        assert endpoint.transport is not None and endpoint.transport.is_closing()
        try:
            await client.announce(tracker.announce_url, request(7002))
        finally:
            await client.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_over_ipv6_the_peers_are_18_byte_entries() -> None:
    async with UdpTracker(host="::1") as tracker:
        client = TrackerClient(timeout=5, udp_timeout=5)
        try:
            await client.announce(tracker.announce_url, request(7001))
            resp = await client.announce(tracker.announce_url, request(7002))
        finally:
            await client.close()
    assert resp.peers == [("::1", 7001)]


async def test_udp_scrape_counts_seeders_completions_and_leechers() -> None:
    other = b"\x22" * 20
    async with UdpTracker() as tracker:
        client = TrackerClient(timeout=5, udp_timeout=5)
        try:
            for port, left, event in [(7001, 0, "started"), (7002, 0, "started"), (7003, 5, "started"),
                                      (7004, 5, "started"), (7004, 0, "completed")]:
                await client.announce(tracker.announce_url, request(port, left=left, event=event))
            await client.announce(tracker.announce_url, request(7009, info_hash=other))
            many = [HASH, other] + [bytes([i]) * 20 for i in range(100, 200)]
            stats = await client.scrape(tracker.announce_url, many)
        finally:
            await client.close()
    assert stats[HASH] == ScrapeStats(complete=3, downloaded=1, incomplete=1)
    assert stats[other] == ScrapeStats(0, 0, 1)
    assert stats[bytes([150]) * 20] == ScrapeStats(0, 0, 0) and len(stats) == 102
    assert [len(batch) for batch in tracker.scraped] == [74, 28]  # BEP 15: at most 74 per packet


async def test_http_scrape_counts_and_leaves_out_unknown_torrents() -> None:
    async with HttpTracker() as tracker:
        client = TrackerClient(timeout=5, udp_timeout=5)
        try:
            await client.announce(tracker.announce_url, request(7001, left=0))
            await client.announce(tracker.announce_url, request(7002, left=3))
            await client.announce(tracker.announce_url, request(7002, left=0, event="completed"))
            stats = await client.scrape(tracker.announce_url, [HASH, b"\x33" * 20, HASH])
            with pytest.raises(TrackerError, match="no scrape URL"):
                await client.scrape(f"http://127.0.0.1:{tracker.port}/tracker", [HASH])
            with pytest.raises(TrackerError, match="unsupported tracker scheme"):
                await client.scrape("wss://127.0.0.1/announce", [HASH])
        finally:
            await client.close()
    assert stats == {HASH: ScrapeStats(complete=2, downloaded=1, incomplete=0)}


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
async def test_peerloom_nodes_meet_through_a_udp_tracker(tmp_path: Path, version: str) -> None:
    data = make_single(tmp_path / "src", size=1024 * 1024)
    async with UdpTracker(interval=1) as tracker:
        async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
            shared = await seeder.share(data, version=version, piece_length=32768, trackers=[tracker.announce_url])
            meta = shared.meta
            assert meta is not None
            # BEP 52: a torrent with a v1 info-hash announces it; a v2-only one its v2 hash cut to 20 bytes
            announced = meta.info_hash_v1 or (meta.info_hash_v2 or b"")[:20]
            await until(lambda: ("127.0.0.1", seeder.port) in tracker.swarms.get(announced, {}))
            t = await leecher.add(meta, tmp_path / "dst")  # no peers given: the tracker is the only source
            await wait_done(t)
            await until(lambda: any(a.event == "completed" and a.info_hash == announced for a in tracker.announces))
            stats = await leecher.tracker_client.scrape(tracker.announce_url, [announced])
        assert stats == {announced: ScrapeStats(complete=2, downloaded=1, incomplete=0)}
        # a hybrid may also be announced under its truncated v2 hash, so v2-only peers find it too
        allowed = {h for h in (meta.info_hash_v1, (meta.info_hash_v2 or b"")[:20]) if h}
        hashes = {a.info_hash for a in tracker.announces}
        assert announced in hashes and hashes <= allowed
        # both nodes say goodbye when they stop
        await until(lambda: sum(a.event == "stopped" and a.info_hash == announced for a in tracker.announces) == 2)
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")
