"""The peer store: addresses by source, backoff of failed dials, bounds and eviction, saving and loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerloom.codec.multiaddr import Multiaddr
from peerloom.discovery.peerstore import BACKOFF_BASE, BACKOFF_MAX, PeerStore, usable_addrs
from peerloom.identity import Identity, PeerId
from peerloom.state import State


def peer() -> PeerId:
    return Identity.generate().peer_id


def tcp(port: int, host: str = "10.0.0.1") -> Multiaddr:
    return Multiaddr(f"/ip4/{host}/tcp/{port}")


def test_addresses_come_back_with_the_peer_id_best_first() -> None:
    store, p = PeerStore(), peer()
    store.add_addrs(p, [tcp(1)], "dht", 100.0)
    store.add_addrs(p, [tcp(2)], "identify", 101.0)
    store.add_addrs(p, [tcp(3).encapsulate(f"/p2p/{p}")], "user", 99.0)
    assert store.addrs(p, 200.0) == [tcp(3).encapsulate(f"/p2p/{p}"), tcp(2).encapsulate(f"/p2p/{p}"),
                                     tcp(1).encapsulate(f"/p2p/{p}")]
    info = store.get(p)
    assert info is not None and set(info.addrs) == {tcp(1), tcp(2), tcp(3)}  # kept without /p2p/
    store.add_addrs(p, [tcp(1)], "identify", 150.0)  # told again by a more trusted source
    assert info.addrs[tcp(1)].source == "identify" and info.addrs[tcp(1)].last_seen == 150.0
    store.add_addrs(p, [tcp(1)], "px", 160.0)  # a less trusted one does not downgrade it
    assert info.addrs[tcp(1)].source == "identify"
    assert store.addrs(peer(), 0.0) == []


def test_an_address_of_another_peer_or_an_unknown_source_is_refused() -> None:
    store, p, other = PeerStore(), peer(), peer()
    store.add_addrs(p, [tcp(1).encapsulate(f"/p2p/{other}")], "dht", 1.0)
    assert store.addrs(p, 2.0) == []
    with pytest.raises(ValueError):
        store.add_addrs(p, [tcp(1)], "gossip", 1.0)


def test_failed_dials_back_off_exponentially_and_a_connection_forgives_them() -> None:
    store, p = PeerStore(), peer()
    store.add_addrs(p, [tcp(1), tcp(2)], "identify", 0.0)
    bad = tcp(1).encapsulate(f"/p2p/{p}")
    good = tcp(2).encapsulate(f"/p2p/{p}")
    assert store.dial_failed(p, bad, 10.0) == 10.0 + BACKOFF_BASE
    assert store.addrs(p, 11.0) == [good]  # in backoff: not offered
    assert store.addrs(p, 10.0 + BACKOFF_BASE) == [good, bad]  # out of it, after the one that never failed
    assert store.dial_failed(p, bad, 20.0) == 20.0 + 2 * BACKOFF_BASE
    assert store.dial_failed(p, bad, 30.0) == 30.0 + 4 * BACKOFF_BASE
    for _ in range(40):
        until = store.dial_failed(p, bad, 40.0)
    assert until == 40.0 + BACKOFF_MAX
    info = store.get(p)
    assert info is not None and info.failures == 43
    store.connected(p, tcp(1), 50.0)
    assert store.addrs(p, 50.0) == [bad, good]  # it connected: first, failures forgiven
    assert info.failures == 0 and info.connected
    store.disconnected(p, 60.0)
    assert not info.connected
    assert store.dial_failed(peer(), bad, 1.0) == 1.0  # an unknown peer or address: nothing to back off


def test_an_accepted_connections_address_is_not_added() -> None:
    store, p = PeerStore(), peer()
    store.connected(p, tcp(40000), 1.0)
    assert store.addrs(p, 1.0) == [] and store.get(p) is not None


def test_protocols_and_agent_are_bounded_and_found_by_protocol() -> None:
    store, a, b = PeerStore(), peer(), peer()
    store.set_protocols(a, ["/meshsub/1.2.0", "/ipfs/id/1.0.0", "/x" * 200], "js-libp2p/3.2.0", 1.0)
    store.set_protocols(b, ["/ipfs/id/1.0.0"], "x" * 1000, 2.0)
    assert store.get(a).protocols == ("/meshsub/1.2.0", "/ipfs/id/1.0.0")  # type: ignore[union-attr]
    assert len(store.get(b).agent or "") == 256  # type: ignore[union-attr]
    assert store.with_protocol("/meshsub/1.2.0") == [a]
    assert store.with_protocol("/ipfs/id/1.0.0") == [b, a]  # the most recently seen first


def test_the_least_recently_seen_peers_and_addresses_are_evicted_first() -> None:
    store = PeerStore(max_peers=3, max_addrs=2)
    peers = [peer() for _ in range(4)]
    for i, p in enumerate(peers[:3]):
        store.add_addrs(p, [tcp(i + 1)], "dht", float(i))
    store.connected(peers[0], None, 5.0)  # connected: kept although seen first...
    store.disconnected(peers[0], 5.0)
    store.connected(peers[0], None, 6.0)
    store.add_addrs(peers[2], [tcp(9)], "dht", 7.0)
    store.add_addrs(peers[3], [tcp(4)], "dht", 8.0)
    assert len(store) == 3 and peers[1] not in store  # ...the least recently seen disconnected one goes
    store.add_addrs(peers[3], [tcp(5, "10.0.0.2")], "user", 9.0)
    store.add_addrs(peers[3], [tcp(6, "10.0.0.3")], "dht", 10.0)
    info = store.get(peers[3])
    assert info is not None and set(info.addrs) == {tcp(5, "10.0.0.2"), tcp(6, "10.0.0.3")}  # user-given kept
    store.add_addrs(peers[3], [tcp(7, "10.0.0.4")], "dht", 11.0)
    assert set(info.addrs) == {tcp(5, "10.0.0.2"), tcp(7, "10.0.0.4")}


def test_the_store_is_saved_in_batches_and_comes_back_after_a_reopen(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite")
    store, a, b = PeerStore(state, max_peers=2), peer(), peer()
    store.add_addrs(a, [tcp(1)], "identify", 100.0)
    store.set_protocols(a, ["/meshsub/1.2.0"], "peerloom/0.1.0", 100.0)
    store.connected(a, tcp(1), 101.0)  # still connected when saved
    store.add_addrs(b, [tcp(2)], "record", 90.0)
    store.dial_failed(b, tcp(2), 95.0)
    assert state.execute("SELECT COUNT(*) FROM peers_peers")[0][0] == 0  # nothing written per event
    store.save(store.changes())
    assert not store.changes()  # nothing left to write
    store.add_addrs(peer(), [tcp(3)], "dht", 200.0)  # evicts b (max_peers=2): deleted at the next save
    store.save(store.changes())
    state.close()

    state = State(tmp_path / "state.sqlite")
    again = PeerStore(state)
    assert len(again) == 2 and b not in again
    info = again.get(a)
    assert info is not None and info.protocols == ("/meshsub/1.2.0",) and info.agent == "peerloom/0.1.0"
    assert info.addrs[tcp(1)].source == "identify" and info.addrs[tcp(1)].last_connected == 101.0
    assert not info.connected  # the process that held the connection is gone
    state.close()


def test_saved_backoff_survives_a_reopen(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite")
    store, p = PeerStore(state), peer()
    store.add_addrs(p, [tcp(1)], "dht", 0.0)
    until = store.dial_failed(p, tcp(1), 10.0)
    store.save(store.changes())
    again = PeerStore(state)
    assert again.addrs(p, until - 1) == [] and again.addrs(p, until) == [tcp(1).encapsulate(f"/p2p/{p}")]
    state.close()


def test_a_wildcard_listen_address_becomes_the_connections_host() -> None:
    addrs = [Multiaddr("/ip4/0.0.0.0/tcp/4001"), Multiaddr("/ip6/::/tcp/4001"), tcp(4002, "192.168.1.5")]
    assert usable_addrs(addrs, "10.1.2.3") == [Multiaddr("/ip4/10.1.2.3/tcp/4001"), tcp(4002, "192.168.1.5")]
    assert usable_addrs(addrs, "fd00::1") == [Multiaddr("/ip6/fd00::1/tcp/4001"), tcp(4002, "192.168.1.5")]
    assert usable_addrs(addrs, None) == [tcp(4002, "192.168.1.5")]


def test_a_loopback_listen_address_is_kept_only_for_a_peer_on_loopback() -> None:
    addrs = [tcp(4001, "127.0.0.1"), tcp(4002, "192.168.1.5")]
    assert usable_addrs(addrs, "192.168.1.5") == [tcp(4002, "192.168.1.5")]
    assert usable_addrs(addrs, "127.0.0.1") == addrs
    assert usable_addrs(addrs, None) == addrs


def test_a_full_store_evicts_a_tenth_at_once() -> None:
    store = PeerStore(max_peers=20)
    peers = [peer() for _ in range(21)]
    for i, p in enumerate(peers):
        store.add_addrs(p, [tcp(1)], "dht", float(i))
    assert len(store) == 18 and all(p not in store for p in peers[:3]) and peers[3] in store
