"""The peer store fed by a node's peer events, and signed peer records (BEP 44) on a loopback DHT: a node that knows
only another's PeerId resolves its addresses and connects to it."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.swarm import node

from peerloom.codec.multiaddr import Multiaddr
from peerloom.discovery.peer_dialer import connect_peer
from peerloom.discovery.peer_record import SALT, record_key
from peerloom.discovery.peerstore import PeerStore
from peerloom.discovery.peerstore_driver import PeerStoreKeeper
from peerloom.identity import Identity
from peerloom.net.host import Host
from peerloom.node import Node
from peerloom.state import State, StateError
from peerloom.torrent.magnet import Magnet

DHT = dict(dht=True, public_bootstrap=False)


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def swarm(tmp_path: Path) -> AsyncIterator[tuple[Node, Node, Node]]:
    """B: the DHT node the others bootstrap from; A: publishes its record; C: knows only A's PeerId."""
    async with node(tmp_path, "b", **DHT) as b:
        assert b.dht is not None
        boot = [("127.0.0.1", b.dht.port)]
        async with node(tmp_path, "a", bootstrap=boot, **DHT) as a, node(tmp_path, "c", bootstrap=boot, **DHT) as c:
            yield a, b, c


async def test_a_peer_id_alone_resolves_through_its_record_and_connects(swarm: tuple[Node, Node, Node]) -> None:
    a, _, c = swarm
    assert a.peer_records is not None and c.peer_records is not None and c.dht is not None
    assert await a.peer_records.wait_published(10)
    assert a.peer_records.last_put is not None and a.peer_records.last_put.stored >= 1
    await c.dht.wait_ready()
    target = a.identity.peer_id
    assert c.peers.get(target) is None and target not in c.secure_host.connections
    record = await c.peer_records.resolve(target)
    assert record is not None and record.peer == target
    assert set(record.addrs) == set(a.secure_addrs)  # loopback published: the node is only on loopback
    addrs = c.peers.addrs(target, time.time())
    assert addrs == list(record.addrs) and c.peers.get(target).addrs[addrs[0].without_p2p()].source == "record"  # type: ignore[union-attr]
    dead = Multiaddr(f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{target}")
    c.peers.add_addrs(target, [dead], "user", time.time())  # tried first, refused: backs off
    conn = await connect_peer(c.secure_host, c.peers, target)
    assert conn.remote_peer == target
    assert c.peers.addrs(target, time.time()) == addrs and c.peers.get(target).failures == 1  # type: ignore[union-attr]
    await wait_until(lambda: c.peers.get(target).protocols)  # type: ignore[union-attr]
    info = c.peers.get(target)
    assert info is not None and info.connected and info.agent == a.client_name
    assert c.peers.get(target).addrs[addrs[0].without_p2p()].last_connected is not None  # type: ignore[union-attr]


async def test_a_new_listen_address_is_published_with_a_higher_seq(swarm: tuple[Node, Node, Node]) -> None:
    a, _, c = swarm
    assert a.peer_records is not None and c.peer_records is not None
    assert await a.peer_records.wait_published(10)
    first = await c.peer_records.resolve(a.identity.peer_id)
    assert first is not None
    extra = await a.secure_host.listen("/ip4/127.0.0.2/tcp/0")
    a.peer_records.addrs_changed()
    await wait_until(lambda: a.peer_records.publisher.published_addrs is not None  # type: ignore[union-attr]
                     and len(a.peer_records.publisher.published_addrs) == 2)  # type: ignore[union-attr]
    second = await c.peer_records.resolve(a.identity.peer_id)
    assert second is not None and second.seq > first.seq and extra in second.addrs


async def test_an_unknown_peer_has_no_record_and_a_foreign_item_is_not_taken_for_one(
    swarm: tuple[Node, Node, Node],
) -> None:
    a, _, c = swarm
    assert a.dht is not None and c.peer_records is not None
    stranger = Identity.generate()
    assert await c.peer_records.resolve(stranger.peer_id) is None
    # the stranger's key holds another item (no salt, and another salt): neither is its peer record
    await a.dht.put_mutable(stranger.private_key, {b"a": [], b"t": 1}, seq=1)
    await a.dht.put_mutable(stranger.private_key, {b"x": 1}, salt=b"other", seq=1)
    assert await c.peer_records.resolve(stranger.peer_id) is None
    assert c.peers.get(stranger.peer_id) is None
    assert record_key(stranger.peer_id) == (await a.dht.get_mutable(record_key(stranger.peer_id))).key  # type: ignore[union-attr]
    assert SALT == b"peerloom-peer"


async def test_identify_feeds_the_store_and_it_is_saved_at_stop(tmp_path: Path) -> None:
    async with node(tmp_path, "x") as x, node(tmp_path, "y") as y:
        assert x.peer_records is None  # no DHT: nothing to publish in
        await y.secure_host.connect(x.secure_addrs[0])
        target = x.identity.peer_id
        await wait_until(lambda: y.peers.get(target) is not None and y.peers.get(target).protocols)  # type: ignore[union-attr]
        info = y.peers.get(target)
        assert info is not None and info.connected and "/ipfs/ping/1.0.0" in info.protocols
        assert [str(a) for a in y.peers.addrs(target, time.time())] == [str(a) for a in x.secure_addrs]
        assert y.peers.with_protocol("/ipfs/id/1.0.0") == [target]
        assert x.peers.get(y.identity.peer_id) is not None  # the accepting side learns of its peer too
    async with node(tmp_path, "y") as again:  # reopened from the home's state database
        info = again.peers.get(target)
        assert info is not None and not info.connected and info.agent == x.client_name
        assert info.addrs and next(iter(info.addrs.values())).source == "identify"


async def test_a_secure_peer_given_by_the_user_is_stored_as_user(tmp_path: Path) -> None:
    async with node(tmp_path, "seed") as seed, node(tmp_path, "leech") as leech:
        given = seed.secure_addrs[0]
        magnet = Magnet(os.urandom(20))
        await leech.add(str(magnet), tmp_path / "dst", peers=[given])
        info = leech.peers.get(seed.identity.peer_id)
        assert info is not None and info.addrs[given.without_p2p()].source == "user"


async def test_peer_records_off_publishes_nothing(tmp_path: Path) -> None:
    async with node(tmp_path, "b", **DHT) as b:
        assert b.dht is not None
        async with node(tmp_path, "quiet", bootstrap=[("127.0.0.1", b.dht.port)], peer_records=False, **DHT) as q:
            assert q.peer_records is not None and not await q.peer_records.wait_published(1.0)
            assert await b.dht.get_mutable(record_key(q.identity.peer_id), SALT) is None


async def test_the_keeper_saves_periodically_and_keeps_what_a_failed_save_missed(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite")
    store, host = PeerStore(state), Host(Identity.generate())
    fail_next = [True]

    async def run_blocking(fn: Any, *args: Any) -> Any:
        if fail_next.pop() if fail_next else False:
            raise StateError("disk full")
        return await asyncio.to_thread(fn, *args)

    keeper = PeerStoreKeeper(store, host, run_blocking, interval=0.05)
    await keeper.start()
    try:
        peer = Identity.generate().peer_id
        store.add_addrs(peer, [Multiaddr("/ip4/10.0.0.1/tcp/1")], "dht", time.time())
        saved = lambda: state.execute("SELECT COUNT(*) FROM peers_addrs")[0][0]  # noqa: E731
        await wait_until(lambda: saved() == 1)  # the first save failed; the next one wrote it
        store.add_addrs(peer, [Multiaddr("/ip4/10.0.0.2/tcp/1")], "dht", time.time())
    finally:
        await keeper.close()  # saves what is left
    assert saved() == 2 and not fail_next
    state.close()
