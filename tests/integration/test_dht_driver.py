"""The asyncio DHT driver on loopback: nodes that bootstrap from each other, get_peers/announce, BEP 44 items between
nodes, a restart that rejoins through the saved routing table alone, and malformed datagrams."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peerloom.codec.bencode import encode as bencode
from peerloom.dht import krpc
from peerloom.dht.bep44 import verify_mutable
from peerloom.dht.driver import Dht, DhtError, public_key

HOST = "127.0.0.1"


async def start(*bootstrap: Dht, state: Path | None = None, **kwargs: object) -> Dht:
    dht = Dht(state=state, rate_limit=None, **kwargs)  # type: ignore[arg-type]
    await dht.start(0, HOST, bootstrap=[(HOST, b.port) for b in bootstrap], wait=True, timeout=10)
    return dht


@pytest.fixture
async def network() -> AsyncIterator[list[Dht]]:
    """Five nodes: each bootstraps from the ones started before it."""
    nodes: list[Dht] = []
    try:
        for _ in range(5):
            nodes.append(await start(*nodes))
        yield nodes
    finally:
        for node in nodes:
            await node.close()


async def test_nodes_bootstrap_from_each_other_and_find_announced_peers(network: list[Dht]) -> None:
    assert all(node.table_size >= 1 for node in network)
    assert network[-1].table_size == len(network) - 1  # the last one met everyone through its bootstrap lookup
    info_hash = os.urandom(20)
    result = await network[1].announce(info_hash, 6881)
    assert result.stored >= 1 and result.peers == []
    await network[2].announce(info_hash)  # implied_port: its DHT port
    for asker in (network[0], network[4]):
        peers = await asker.get_peers(info_hash)
        assert set(peers) >= {(HOST, 6881), (HOST, network[2].port)}
    assert await network[3].get_peers(os.urandom(20)) == []


async def test_ping_returns_the_node_id_and_a_silent_node_times_out(network: list[Dht]) -> None:
    assert await network[0].ping((HOST, network[3].port)) == network[3].node_id
    assert await network[0].ping(("localhost", network[2].port)) == network[2].node_id  # names are resolved
    named = Dht()
    try:
        await named.start(0, HOST, bootstrap=[("localhost", network[1].port)], wait=True)
        assert (HOST, network[1].port) in named.bootstrap_addresses and named.table_size >= 1
    finally:
        await named.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((HOST, 0))
        quick = await start(query_timeout=0.3)
        try:
            with pytest.raises(DhtError, match="no answer"):
                await quick.ping(silent.getsockname())
        finally:
            await quick.close()


async def test_bep44_immutable_and_mutable_items_travel_between_nodes(network: list[Dht]) -> None:
    value = {"name": "peerloom", "list": [1, 2, b"three"]}
    put = await network[1].put_immutable(value)
    assert put.stored >= 1
    assert await network[4].get_immutable(put.target) == {b"name": b"peerloom", b"list": [1, 2, b"three"]}
    assert await network[4].get_immutable(os.urandom(20)) is None

    secret = os.urandom(32)
    key = public_key(secret)
    first = await network[2].put_mutable(secret, b"version one", salt=b"topic")
    assert first.seq == 0 and first.stored >= 1
    second = await network[3].put_mutable(secret, b"version two", salt=b"topic")  # seq follows what the DHT holds
    assert second.seq == 1
    item = await network[0].get_mutable(key, salt=b"topic")
    assert item is not None
    assert (item.value, item.seq, item.salt, item.key) == (b"version two", 1, b"topic", key)
    assert verify_mutable(item.key, item.signature, item.raw, item.seq, item.salt)
    assert await network[0].get_mutable(key, salt=b"other topic") is None
    explicit = await network[4].put_mutable(secret, [b"seven"], seq=7)  # no salt, an explicit sequence number
    assert explicit.seq == 7
    found = await network[1].get_mutable(key)
    assert found is not None and (found.value, found.seq) == ([b"seven"], 7)


async def test_a_restarted_node_rejoins_through_its_saved_table_alone(tmp_path: Path) -> None:
    state = tmp_path / "home" / "state.sqlite"
    c, d = await start(), await start()
    b = await start(c, d)  # b has asked c and d: it hands them out
    others = [b, c, d]
    try:
        a = await start(b, state=state)
        node_id, port = a.node_id, a.port
        assert a.table_size == 3
        info_hash = os.urandom(20)
        await d.announce(info_hash, 7000)
        await a.close()
        with sqlite3.connect(state) as db:
            saved = {row[0] for row in db.execute("SELECT port FROM dht_nodes WHERE family = 4")}
        assert saved == {b.port, c.port, d.port}

        again = Dht(state=state, rate_limit=None)
        await again.start(port, HOST, bootstrap=[], wait=True, timeout=10)  # no bootstrap address at all
        try:
            assert again.node_id == node_id and again.bootstrap_addresses == []
            figures = again.stats()["ipv4"]
            assert figures["good"] == 3 and figures["responses_in"] >= 3
            assert (HOST, 7000) in await again.get_peers(info_hash)
            assert await b.ping((HOST, port)) == node_id
        finally:
            await again.close()
    finally:
        for node in others:
            await node.close()


async def test_malformed_datagrams_are_counted_and_the_node_keeps_answering(network: list[Dht]) -> None:
    target = network[0]
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.bind((HOST, 0))
        raw.setblocking(False)
        for junk in (b"\xff\x00 not bencode", b"d1:t2:aa", b"i42e", b"d1:y1:re", os.urandom(3000), b""):
            raw.sendto(junk, (HOST, target.port))
        # a query whose transaction id can be read is answered with a 203
        raw.sendto(bencode({"t": b"q1", "y": "q", "q": "find_node", "a": {"id": os.urandom(20)}}), (HOST, target.port))
        reply = krpc.decode(await asyncio.wait_for(loop.sock_recv(raw, 2048), 5))
    assert isinstance(reply, krpc.ErrorMessage) and reply.t == b"q1" and reply.code == krpc.ERROR_PROTOCOL
    assert target.stats()["ipv4"]["malformed"] >= 6
    assert target.stats()["internal_errors"] == 0
    assert await network[3].ping((HOST, target.port)) == target.node_id


async def test_peers_come_with_the_first_reply_while_a_departed_node_holds_the_lookup_up() -> None:
    """Issue 12: a request made right after start does not wait for the bootstrap lookup, and `on_peers` has the
    seeder's peers from its first reply, while the lookup still waits for the departed node it was told about."""
    seeder = await start()
    later = Dht(rate_limit=None, query_timeout=1.5)
    try:
        info_hash = os.urandom(20)
        await seeder.announce(info_hash, 7000)
        gone = await start(seeder)
        for _ in range(100):  # the seeder verified it, so it hands it out
            if seeder.stats()["ipv4"]["good"]:
                break
            await asyncio.sleep(0.02)
        await gone.close()
        assert seeder.stats()["ipv4"]["good"] == 1
        batches: list[list[tuple[str, int]]] = []
        first = asyncio.Event()

        def on_peers(peers: list[tuple[str, int]]) -> None:
            batches.append(peers)
            first.set()

        await later.start(0, HOST, bootstrap=[(HOST, seeder.port)])  # no wait for the bootstrap
        lookup = asyncio.create_task(later.get_peers(info_hash, on_peers=on_peers))
        await asyncio.wait_for(first.wait(), 30)
        assert batches == [[(HOST, 7000)]]
        assert later.stats()["ipv4"]["timeouts"] == 0 and not lookup.done()  # the departed node is still awaited
        assert await lookup == [(HOST, 7000)]
        assert later.stats()["ipv4"]["timeouts"] >= 1 and batches == [[(HOST, 7000)]]
    finally:
        await later.close()
        await seeder.close()


async def test_close_fails_waiting_requests_and_requests_after_close(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((HOST, 0))
        dht = await start()
        waiting = asyncio.create_task(dht.ping(silent.getsockname()))
        await asyncio.sleep(0.05)
        await dht.close()
        with pytest.raises(DhtError, match="closed"):
            await waiting
        with pytest.raises(DhtError, match="not running"):
            await dht.get_peers(os.urandom(20))


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_one_node_in_both_dhts_ipv4_and_ipv6() -> None:
    a = Dht()
    await a.start(0, HOST, host6="::1", wait=True)
    b = Dht()
    try:
        await b.start(0, HOST, host6="::1", bootstrap=[(HOST, a.port), ("::1", a.port)], wait=True)
        assert b.stats()["ipv4"]["table_size"] == b.stats()["ipv6"]["table_size"] == 1
        info_hash = os.urandom(20)
        assert (await a.announce(info_hash, 1234)).stored == 2  # one node in each DHT took it
        assert set(await b.get_peers(info_hash)) == {(HOST, 1234), ("::1", 1234)}
        assert await b.ping(("::1", a.port)) == a.node_id
    finally:
        await a.close()
        await b.close()


def test_the_timer_is_rearmed_for_a_wakeup_already_due_on_uvloop() -> None:
    """uvloop's `call_at` for a moment already past (or under a millisecond away) returns a plain `Handle`, which has
    no `when()`: the driver keeps its timer's deadline itself. Queries with a zero timeout are due the moment they are
    sent; a second one re-arms the timer while the first arming is still pending."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> dict[str, object]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent2:
            silent.bind((HOST, 0))
            silent2.bind((HOST, 0))
            dht = await start(query_timeout=0.0)
            try:
                dht.add_node(silent.getsockname())  # its deadline is now: the timer is armed in the past
                dht.add_node(silent2.getsockname())  # re-arms while that timer has not run yet
                for _ in range(100):
                    if dht.stats()["ipv4"]["timeouts"] >= 2:
                        break
                    await asyncio.sleep(0.01)
                return dht.stats()
            finally:
                await dht.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        figures = runner.run(main())
    assert figures["ipv4"]["timeouts"] == 2 and figures["internal_errors"] == 0  # type: ignore[index]
