"""Iterative lookups (BEP 5, BEP 44) over an in-memory network of 200 `DhtCore` nodes: packets are delivered
synchronously through a dict of addresses on a fake clock. find_node converges to the true k closest nodes, get_peers
finds announced peers, BEP 44 items are stored and found, and dead nodes are timed out. The `Lookup` state machine is
also driven directly, against an oracle network, and a core alone packet by packet for the short timeout."""

from __future__ import annotations

import random
from collections import deque

import pytest

from peerloom.codec.bencode import encode as bencode
from peerloom.dht.bep44 import Item, mutable_item
from peerloom.dht.krpc import Address, Response, SampleInfohashes, decode, encode
from peerloom.dht.lookup import QUERY_TRIES, CandidateState, Lookup, LookupKind
from peerloom.dht.node import DhtCore, LookupDone, PeersFound, QueryDone, StoreDone, random_node_id

SIZE = 200
K = 8


class Network:
    """DhtCore nodes keyed by address; `run` delivers queued packets until none are left (dead nodes drop them)."""

    def __init__(self, size: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.nodes: dict[Address, DhtCore] = {}
        for i in range(size):
            addr = (f"10.{i >> 8}.{i & 255}.1", 6881)
            self.nodes[addr] = DhtCore(random_node_id(self.rng), now=0.0, rng=random.Random(seed * 1000 + i))
        self.dead: set[Address] = set()
        self.queue: deque[tuple[Address, Address, bytes]] = deque()
        self.delivered = 0

    def send(self, src: Address, packets: list[tuple[bytes, Address]]) -> None:
        self.queue.extend((src, dst, data) for data, dst in packets)

    def run(self) -> None:
        while self.queue:
            src, dst, data = self.queue.popleft()
            node = self.nodes.get(dst)
            if node is None or dst in self.dead:
                continue
            self.delivered += 1
            self.send(dst, node.receive(data, src, self.now))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for addr, node in self.nodes.items():
            if addr not in self.dead:
                self.send(addr, node.tick(self.now))
        self.run()

    def bootstrap(self) -> None:
        addrs = list(self.nodes)
        for i, addr in enumerate(addrs[1:], 1):
            seeds = [addrs[0], addrs[self.rng.randrange(i)]]
            self.send(addr, self.nodes[addr].bootstrap(seeds, self.now)[1])
            self.run()
        for addr in addrs:  # a second round, as bucket refreshes would do: every table learns the late joiners
            self.send(addr, self.nodes[addr].bootstrap([], self.now)[1])
            self.run()
        for node in self.nodes.values():
            node.pop_events()

    def wait(self, addr: Address, lookup_id: int, kind: type = LookupDone) -> object:
        """Run (advancing the clock for timeouts) until `addr`'s node reports `kind` for `lookup_id`."""
        node = self.nodes[addr]
        events: list[object] = []
        for _ in range(20):
            self.run()
            events += node.pop_events()
            for event in events:
                if isinstance(event, kind) and getattr(event, "lookup_id", None) == lookup_id:
                    return event
            self.advance(node.query_timeout)
        raise AssertionError(f"no {kind.__name__} for lookup {lookup_id}")

    def true_closest(self, target: bytes, exclude: Address, n: int = K) -> list[bytes]:
        alive = [node.node_id for addr, node in self.nodes.items() if addr not in self.dead and addr != exclude]
        goal = int.from_bytes(target, "big")
        return sorted(alive, key=lambda node_id: int.from_bytes(node_id, "big") ^ goal)[:n]


@pytest.fixture(scope="module")
def net() -> Network:
    network = Network(SIZE, seed=42)
    network.bootstrap()
    return network


def lookup(net: Network, addr: Address, kind: LookupKind, target: bytes, **kwargs: object) -> LookupDone:
    lookup_id, packets = net.nodes[addr].start_lookup(kind, target, net.now, **kwargs)  # type: ignore[arg-type]
    net.send(addr, packets)
    done = net.wait(addr, lookup_id)
    assert isinstance(done, LookupDone)
    return done


def test_bootstrap_fills_every_table(net: Network) -> None:
    sizes = [node.table.size for node in net.nodes.values()]
    assert min(sizes) >= K and sum(sizes) / len(sizes) > 2 * K


def test_find_node_converges_to_the_true_k_closest(net: Network) -> None:
    addrs = list(net.nodes)
    for _ in range(8):
        origin = net.rng.choice(addrs)
        target = random_node_id(net.rng)
        done = lookup(net, origin, LookupKind.FIND_NODE, target)
        assert [node_id for node_id, _, _ in done.result.nodes] == net.true_closest(target, origin)
        assert 1 <= done.result.hops <= 6 and done.result.messages >= K and done.result.timeouts == 0


def test_find_node_for_an_existing_id_finds_that_node_first(net: Network) -> None:
    origin, other = list(net.nodes)[5], list(net.nodes)[150]
    done = lookup(net, origin, LookupKind.FIND_NODE, net.nodes[other].node_id)
    assert done.result.nodes[0] == (net.nodes[other].node_id, *other)


def test_get_peers_finds_announced_peers(net: Network) -> None:
    addrs = list(net.nodes)
    info_hash = random_node_id(net.rng)
    seeder, implied, leecher = addrs[10], addrs[20], addrs[30]
    for addr, port in ((seeder, 7000), (implied, None)):
        lookup_id, packets = net.nodes[addr].announce(info_hash, net.now, port=port)
        net.send(addr, packets)
        stored = net.wait(addr, lookup_id, StoreDone)
        assert isinstance(stored, StoreDone) and stored.kind == "announce_peer"
        assert len(stored.stored) == K and stored.failed == 0
        assert {node_id for node_id, _, _ in stored.stored} == set(net.true_closest(info_hash, addr))
    done = lookup(net, leecher, LookupKind.GET_PEERS, info_hash)
    assert set(done.result.peers) == {(seeder[0], 7000), implied}  # implied_port: the DHT port itself
    holders = sum(node.peers.count(info_hash) > 0 for node in net.nodes.values())
    assert holders >= K


def test_sample_infohashes_lists_what_a_node_stores(net: Network) -> None:
    info_hash = random_node_id(net.rng)
    origin = list(net.nodes)[40]
    lookup_id, packets = net.nodes[origin].announce(info_hash, net.now, port=1234)
    net.send(origin, packets)
    stored = net.wait(origin, lookup_id, StoreDone)
    assert isinstance(stored, StoreDone)
    _, host, port = stored.stored[0]
    asker = net.nodes[list(net.nodes)[41]]
    request_id, packets = asker.query(SampleInfohashes(t=b"", node_id=asker.node_id, target=info_hash),
                                      (host, port), net.now)
    net.send(list(net.nodes)[41], packets)
    net.run()
    (event,) = [e for e in asker.pop_events() if isinstance(e, QueryDone) and e.request_id == request_id]
    assert isinstance(event.reply, Response) and event.reply.samples is not None
    assert info_hash in event.reply.samples and (event.reply.num or 0) >= 1 and event.reply.nodes


def test_bep44_immutable_put_and_get(net: Network) -> None:
    addrs = list(net.nodes)
    item = Item(bencode({"note": b"hello DHT", "n": 3}))
    lookup_id, packets = net.nodes[addrs[50]].put(item, net.now)
    net.send(addrs[50], packets)
    stored = net.wait(addrs[50], lookup_id, StoreDone)
    assert isinstance(stored, StoreDone) and stored.kind == "put" and len(stored.stored) == K
    done = lookup(net, addrs[60], LookupKind.GET, item.target)
    assert done.result.item == item


def test_bep44_mutable_put_and_get_with_salt_and_seq(net: Network) -> None:
    addrs = list(net.nodes)
    seed = bytes(range(32))
    for seq, cas in ((1, None), (2, 1)):
        item = mutable_item(seed, bencode(b"version %d" % seq), seq, b"profile")
        lookup_id, packets = net.nodes[addrs[70]].put(item, net.now, cas=cas)
        net.send(addrs[70], packets)
        stored = net.wait(addrs[70], lookup_id, StoreDone)
        assert isinstance(stored, StoreDone) and len(stored.stored) == K and stored.failed == 0
    done = lookup(net, addrs[80], LookupKind.GET, item.target, salt=b"profile")
    assert done.result.item == item and done.result.item.seq == 2
    assert lookup(net, addrs[80], LookupKind.GET, item.target, salt=b"other").result.item is None  # cannot verify
    assert lookup(net, addrs[80], LookupKind.GET, item.target, salt=b"profile", seq=2).result.item is None  # not newer
    stale = mutable_item(seed, bencode(b"version 1"), 1, b"profile")
    lookup_id, packets = net.nodes[addrs[90]].put(stale, net.now)
    net.send(addrs[90], packets)
    stored = net.wait(addrs[90], lookup_id, StoreDone)
    assert isinstance(stored, StoreDone) and stored.stored == [] and stored.failed == K  # 302 everywhere


def test_dead_nodes_time_out_and_the_lookup_still_converges() -> None:
    net = Network(120, seed=7)
    net.bootstrap()
    addrs = list(net.nodes)
    origin = addrs[3]
    net.dead = {addr for addr in addrs if addr != origin and net.rng.random() < 0.3}
    target = random_node_id(net.rng)
    done = lookup(net, origin, LookupKind.FIND_NODE, target)
    assert done.result.timeouts > 0
    assert [node_id for node_id, _, _ in done.result.nodes] == net.true_closest(target, origin)
    assert done.result.duration >= net.nodes[origin].query_timeout
    node = net.nodes[origin]
    assert node.stats.timeouts == done.result.timeouts and node.pending_queries == 0
    dead_ids = {net.nodes[addr].node_id for addr in net.dead}
    assert any(entry.fails >= 1 for entry in node.table if entry.node_id in dead_ids)
    assert all(entry.fails == 0 for entry in node.table if entry.node_id not in dead_ids)


# -- the Lookup state machine on its own -----------------------------------------------------------------------------
class Oracle:
    """A network where every node answers with the 16 truly closest nodes to the target (enough to hold the 8
    closest live ones), and a fifth of the nodes never answer."""

    def __init__(self, size: int, seed: int) -> None:
        rng = random.Random(seed)
        self.ids = [rng.getrandbits(160) for _ in range(size)]
        self.addr = {node_id: (f"10.1.{i >> 8}.{i & 255}", 1) for i, node_id in enumerate(self.ids)}
        self.silent = set(rng.sample(self.ids, size // 5))

    def answer(self, node_id: int, target: int) -> Response:
        closest = sorted(self.ids, key=lambda other: other ^ target)[: 2 * K]
        nodes = tuple((other.to_bytes(20, "big"), *self.addr[other]) for other in closest)
        return Response(t=b"", node_id=node_id.to_bytes(20, "big"), nodes=nodes, token=b"tok")


def test_lookup_keeps_alpha_in_flight_and_converges() -> None:
    oracle = Oracle(500, seed=3)
    target = random.Random(4).getrandbits(160)
    seeds = [(node_id, oracle.addr[node_id]) for node_id in oracle.ids[:3]]
    lookup = Lookup(target.to_bytes(20, "big"), LookupKind.GET_PEERS, seeds, own_id=b"\x00" * 20, now=0.0)
    now = 0.0
    outstanding: list = []
    sent = 0
    while not lookup.done:
        batch = lookup.next_queries(now)
        sent += len(batch)
        outstanding += batch
        assert lookup.in_flight == len(outstanding) <= 3
        cand, query = outstanding.pop(0)
        assert query.t == b"" and cand.state is CandidateState.PENDING
        now += 1.0
        if cand.id in oracle.silent:
            lookup.on_timeout(cand, now)
        else:
            lookup.on_response(cand, oracle.answer(cand.id, target), now)
    alive = [node_id for node_id in oracle.ids if node_id not in oracle.silent]
    expected = sorted(alive, key=lambda node_id: node_id ^ target)[:K]
    result = lookup.result()
    assert [int.from_bytes(node_id, "big") for node_id, _, _ in result.nodes] == expected
    assert [cand.token for cand in lookup.store_targets()] == [b"tok"] * K
    assert result.messages == sent and result.timeouts > 0
    assert result.duration == now and lookup.next_queries(now) == []


def test_lookup_with_no_seeds_is_done_at_once() -> None:
    lookup = Lookup(b"\x01" * 20, LookupKind.FIND_NODE, [], own_id=b"\x00" * 20, now=5.0)
    assert lookup.done and lookup.next_queries(5.0) == [] and lookup.result().nodes == []


def test_a_responder_with_another_id_is_not_trusted() -> None:
    seeds = [(1, ("10.0.0.1", 1)), (None, ("10.0.0.2", 2))]
    lookup = Lookup(b"\x00" * 19 + b"\x03", LookupKind.FIND_NODE, seeds, own_id=b"\xff" * 20, now=0.0)
    (a, _), (b, _) = lookup.next_queries(0.0)
    liar = Response(t=b"", node_id=(9).to_bytes(20, "big"), nodes=((b"\x00" * 19 + b"\x07", "10.0.0.7", 7),))
    lookup.on_response(a, liar, 1.0)
    assert a.state is CandidateState.FAILED  # asked node 1, node 9 answered: its nodes are ignored
    lookup.on_response(b, Response(t=b"", node_id=(2).to_bytes(20, "big")), 1.0)  # a bootstrap address learns its id
    assert b.state is CandidateState.RESPONDED and b.id == 2
    assert lookup.done and [n for n, _, _ in lookup.result().nodes] == [(2).to_bytes(20, "big")]


def test_a_silent_candidate_is_asked_again_before_it_counts_as_failed() -> None:
    target = b"\x00" * 19 + b"\x01"
    seeds = [((1).to_bytes(20, "big"), ("10.0.0.1", 1))]
    lookup = Lookup(target, LookupKind.FIND_NODE, seeds, own_id=b"\xff" * 20, now=0.0)
    (cand, _), = lookup.next_queries(0.0)
    lookup.on_timeout(cand, 5.0)  # one lost datagram
    assert not lookup.done
    (again, _), = lookup.next_queries(5.0)
    assert again is cand and lookup.messages == 2
    lookup.on_response(cand, Response(t=b"", node_id=(1).to_bytes(20, "big")), 5.1)
    assert lookup.done and [c.id for c in lookup.closest_responded()] == [1]

    lookup = Lookup(target, LookupKind.FIND_NODE, seeds, own_id=b"\xff" * 20, now=0.0)
    for attempt in range(QUERY_TRIES):
        assert not lookup.done
        (cand, _), = lookup.next_queries(5.0 * attempt)
        lookup.on_timeout(cand, 5.0 * attempt + 5.0)
    assert lookup.done and lookup.next_queries(20.0) == [] and lookup.result().timeouts == QUERY_TRIES


def test_a_slow_query_frees_its_slot_and_its_late_answer_is_still_used() -> None:
    seeds = [(i.to_bytes(20, "big"), (f"10.0.0.{i}", 1)) for i in (1, 2)]
    lookup = Lookup(b"\x00" * 20, LookupKind.FIND_NODE, seeds, own_id=b"\xff" * 20, now=0.0, alpha=1)
    (slow, _), = lookup.next_queries(0.0)
    assert slow.id == 1 and lookup.next_queries(0.5) == []  # alpha 1: its query holds the only slot
    lookup.on_slow(slow)  # the short timeout: it is asked again, and the next candidate too
    (retry, _), (quick, _) = lookup.next_queries(1.0)
    assert retry is slow and slow.state is CandidateState.SLOW and quick.id == 2 and lookup.in_flight == 1
    lookup.on_response(quick, Response(t=b"", node_id=(2).to_bytes(20, "big")), 1.1)
    assert not lookup.done  # the closer, slow node is still awaited
    late = Response(t=b"", node_id=(1).to_bytes(20, "big"), nodes=(((3).to_bytes(20, "big"), "10.0.0.3", 1),))
    lookup.on_response(slow, late, 3.0)  # the first query, before its full timeout: what it says is used
    (learnt, _), = lookup.next_queries(3.0)
    assert learnt.id == 3 and lookup.in_flight == 1
    lookup.on_timeout(slow, 6.0)  # the retry, lost: too late to matter
    lookup.on_response(learnt, Response(t=b"", node_id=(3).to_bytes(20, "big")), 6.1)
    assert lookup.done and [c.id for c in lookup.closest_responded()] == [1, 2, 3]
    assert lookup.in_flight == 0 and lookup.result().timeouts == 0 and lookup.result().messages == 4


TARGET, NEAR_ID, FAR_ID = b"\x00" * 20, b"\x00" * 19 + b"\x01", b"\x00" * 19 + b"\x02"
NEAR, FAR = ("10.0.0.1", 6881), ("10.0.0.2", 6881)


def core_with(*nodes: tuple[bytes, Address], alpha: int = 3) -> DhtCore:
    """A node whose table holds `nodes` (verified), for lookups driven packet by packet on a fake clock."""
    node = DhtCore(b"\xff" * 20, now=0.0, alpha=alpha, rng=random.Random(1))
    for node_id, addr in nodes:
        node.table.on_response(node_id, addr, 0.0)
    return node


def test_a_silent_node_frees_its_slot_at_the_short_timeout_and_fails_only_at_the_full_one() -> None:
    node = core_with((NEAR_ID, NEAR), (FAR_ID, FAR), alpha=1)
    lookup_id, packets = node.start_lookup(LookupKind.FIND_NODE, TARGET, 0.0)
    assert [to for _, to in packets] == [NEAR]
    assert node.next_wakeup() == node.short_timeout < node.query_timeout  # the driver wakes up for it
    assert node.tick(node.short_timeout - 0.01) == []
    packets = node.tick(node.short_timeout)  # asked again, and the next candidate without waiting for it
    assert [to for _, to in packets] == [NEAR, FAR]
    node.receive(encode(Response(t=decode(packets[1][0]).t, node_id=FAR_ID)), FAR, 1.1)
    assert node.pop_events() == []  # the closer one is still awaited
    assert node.next_wakeup() == 2 * node.short_timeout
    assert [to for _, to in node.tick(2 * node.short_timeout)] == [NEAR]  # the retry went unanswered too: a third try
    assert node.tick(node.query_timeout) == [] and node.pop_events() == []  # its later tries are still out
    assert node.tick(node.short_timeout + node.query_timeout) == [] and node.pop_events() == []
    last = 2 * node.short_timeout + node.query_timeout
    node.tick(last)
    (done,) = node.pop_events()
    assert isinstance(done, LookupDone) and done.lookup_id == lookup_id
    assert [node_id for node_id, _, _ in done.result.nodes] == [FAR_ID]
    assert done.result.timeouts == QUERY_TRIES and done.result.messages == QUERY_TRIES + 1
    assert done.result.duration == last


def test_a_lost_datagram_costs_the_short_timeout_and_does_not_mark_the_node_failed() -> None:
    node = core_with((NEAR_ID, NEAR))
    node.start_lookup(LookupKind.FIND_NODE, TARGET, 0.0)
    (retry, to), = node.tick(node.short_timeout)
    node.receive(encode(Response(t=decode(retry).t, node_id=NEAR_ID)), to, 1.2)
    (done,) = node.pop_events()
    assert isinstance(done, LookupDone) and done.result.duration == 1.2 and done.result.timeouts == 0
    node.tick(node.query_timeout)  # the first query times out: a lost datagram, the node answered its retry
    entry = node.table.find(NEAR_ID)
    assert node.stats.timeouts == 1 and entry is not None and entry.fails == 0


def test_get_peers_hands_out_each_replys_peers_before_a_silent_node_has_timed_out() -> None:
    node = core_with((NEAR_ID, NEAR), (FAR_ID, FAR))  # NEAR is gone: it never answers
    lookup_id, packets = node.start_lookup(LookupKind.GET_PEERS, TARGET, 0.0)
    assert sorted(to for _, to in packets) == [NEAR, FAR]
    query = next(decode(data) for data, to in packets if to == FAR)
    peers = (("10.1.1.1", 7000), ("10.1.1.2", 7000))
    node.receive(encode(Response(t=query.t, node_id=FAR_ID, token=b"tk", values=peers)), FAR, 0.01)
    (found,) = node.pop_events()
    assert isinstance(found, PeersFound) and found.lookup_id == lookup_id and found.peers == list(peers)
    assert node.stats.timeouts == 0 and node.lookups_running == 1  # the lookup still waits for NEAR
    last = 2 * node.short_timeout + node.query_timeout
    for now in (node.short_timeout, 2 * node.short_timeout, last):
        node.tick(now)
    (done,) = node.pop_events()  # the peers were not handed out twice
    assert isinstance(done, LookupDone) and done.result.peers == list(peers) and done.result.duration == last


def test_a_lookup_starts_from_the_bootstrap_addresses_while_the_bootstrap_runs() -> None:
    node = DhtCore(b"\xff" * 20, now=0.0, rng=random.Random(1))
    router = ("10.9.9.9", 6881)
    _, packets = node.bootstrap([router], 0.0)
    assert [to for _, to in packets] == [router]
    (bootstrap_query,) = [decode(data) for data, _ in packets]
    _, packets = node.start_lookup(LookupKind.GET_PEERS, TARGET, 0.0)  # the table is still empty: ask the router
    assert [to for _, to in packets] == [router]
    reply = Response(t=bootstrap_query.t, node_id=NEAR_ID, nodes=((FAR_ID, *FAR),))
    node.receive(encode(reply), router, 0.1)  # the router is in the table; the bootstrap goes on (FAR)
    _, packets = node.start_lookup(LookupKind.GET_PEERS, TARGET, 0.1)
    assert sorted(to for _, to in packets) == [router, router]  # known by id, and as a bootstrap address still
    after = core_with((NEAR_ID, NEAR))  # no bootstrap running, a table: the table alone
    after.bootstrap([], 0.0)
    _, packets = after.start_lookup(LookupKind.GET_PEERS, TARGET, 0.0)
    assert [to for _, to in packets] == [NEAR]


def test_a_get_ends_at_the_first_immutable_item_but_a_put_asks_the_closest_nodes() -> None:
    item = Item(bencode(b"content-addressed"))
    near_id = (1).to_bytes(20, "big")
    far_id = (2).to_bytes(20, "big")
    for put in (False, True):
        node = core_with((near_id, NEAR), (far_id, FAR))
        lookup_id, packets = node.put(item, 0.0) if put else node.start_lookup(LookupKind.GET, item.target, 0.0)
        query = next(decode(data) for data, to in packets if to == FAR)
        node.receive(encode(Response(t=query.t, node_id=far_id, token=b"tk", value=item.value)), FAR, 0.01)
        events = node.pop_events()
        if put:
            assert events == []  # NEAR, closer, must be heard before the item goes to the closest nodes
        else:
            (done,) = events
            assert isinstance(done, LookupDone) and done.lookup_id == lookup_id and done.result.item == item
