"""`DhtCore`, one node fed with byte strings: answers to every query type, tokens, BEP 43 read-only, per-IP rate
limiting, transactions (wrong source, unknown id, timeouts), malformed packets, ping before evict and upkeep."""

from __future__ import annotations

import random

import pytest

from peerloom.codec.bencode import encode as bencode
from peerloom.dht import krpc
from peerloom.dht.bep44 import Item, mutable_item
from peerloom.dht.krpc import (
    AnnouncePeer,
    ErrorMessage,
    FindNode,
    Get,
    GetPeers,
    Ping,
    Put,
    Response,
    decode,
    encode,
)
from peerloom.dht.lookup import LookupKind
from peerloom.dht.node import CLIENT_VERSION, MAINTENANCE_INTERVAL, DhtBusyError, DhtCore, QueryDone
from peerloom.dht.ratelimit import RateLimit, RateLimiter
from peerloom.dht.routing import GOOD_FOR, REFRESH_AFTER

OWN = b"\x80" + b"\x00" * 19
PEER = ("10.0.0.2", 6881)
OTHER_ID = b"\x01" * 20
IH = b"h" * 20


def make(**kwargs: object) -> DhtCore:
    return DhtCore(OWN, now=0.0, rng=random.Random(1), **kwargs)  # type: ignore[arg-type]


def ask(node: DhtCore, query: krpc.Query, addr: tuple[str, int] = PEER, now: float = 0.0) -> krpc.Message:
    """Send `query` to `node` and decode its single answer."""
    packets = node.receive(encode(query), addr, now)
    answers = [decode(data) for data, to in packets if to == addr]
    answers = [a for a in answers if not isinstance(a, krpc.Query)]
    assert len(answers) == 1, packets
    return answers[0]


def test_ping_is_answered_with_our_id_their_address_and_our_version() -> None:
    node = make()
    reply = ask(node, Ping(t=b"aa", node_id=OTHER_ID))
    assert reply == Response(t=b"aa", node_id=OWN, ip=PEER, client_version=CLIENT_VERSION)
    assert node.stats.queries_in == {"ping": 1} and node.stats.packets_in == 1
    entry = node.table.find(OTHER_ID)
    assert entry is not None and not entry.responded  # it queried us: in the table, not yet verified
    assert node.stats.packets_out == 2  # the answer, and one ping of ours to verify the newcomer


def test_a_node_heard_only_through_its_query_is_pinged_once_then_verified() -> None:
    node = make()
    packets = node.receive(encode(Ping(t=b"aa", node_id=OTHER_ID)), PEER, 0.0)
    pings = [decode(data) for data, to in packets if to == PEER and isinstance(decode(data), Ping)]
    assert len(pings) == 1
    again = node.receive(encode(Ping(t=b"ab", node_id=OTHER_ID)), PEER, 1.0)
    assert not [d for d, _ in again if isinstance(decode(d), Ping)]  # one verification ping per node
    node.receive(encode(Response(t=pings[0].t, node_id=OTHER_ID)), PEER, 1.5)
    entry = node.table.find(OTHER_ID)
    assert entry is not None and entry.responded  # now it is handed out to others


def test_read_only_senders_are_served_but_stay_out_of_the_table() -> None:
    node = make()
    assert isinstance(ask(node, Ping(t=b"aa", node_id=OTHER_ID, read_only=True)), Response)
    assert node.table.size == 0


def test_a_read_only_node_answers_nothing_and_flags_its_queries() -> None:
    node = make(read_only=True)
    assert node.receive(encode(Ping(t=b"aa", node_id=OTHER_ID)), PEER, 0.0) == []
    assert node.receive(b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:aa1:y1:qe", PEER, 0.0) == []
    assert node.stats.ignored_read_only == 1
    _, packets = node.ping(PEER, 0.0)
    sent = decode(packets[0][0])
    assert isinstance(sent, Ping) and sent.read_only


def test_malformed_packets_are_counted_and_dropped_or_answered_with_203() -> None:
    node = make()
    assert node.receive(b"\xff garbage", PEER, 0.0) == []
    assert node.receive(bencode({"t": b"zz", "y": "r", "r": {"id": b"short"}}), PEER, 0.0) == []  # a bad response
    (packet,) = node.receive(bencode({"t": b"q1", "y": "q", "q": "find_node", "a": {"id": OTHER_ID}}), PEER, 0.0)
    reply = decode(packet[0])
    assert isinstance(reply, ErrorMessage) and reply.t == b"q1" and reply.code == krpc.ERROR_PROTOCOL
    (packet,) = node.receive(bencode({"t": b"q2", "y": "q", "q": "vote", "a": {"id": OTHER_ID}}), PEER, 0.0)
    reply = decode(packet[0])
    assert isinstance(reply, ErrorMessage) and reply.code == krpc.ERROR_METHOD_UNKNOWN
    assert (node.stats.malformed, node.stats.unknown_method) == (3, 1)


def test_queries_are_rate_limited_per_ip() -> None:
    node = make(rate_limit=RateLimit(rate=1.0, burst=3.0))
    answered = [bool(node.receive(encode(Ping(t=b"%d" % i, node_id=OTHER_ID)), PEER, 0.0)) for i in range(5)]
    assert answered == [True, True, True, False, False] and node.stats.rate_limited == 2
    assert node.receive(encode(Ping(t=b"x", node_id=OTHER_ID)), ("10.0.0.3", 1), 0.0)  # another IP
    assert node.receive(encode(Ping(t=b"y", node_id=OTHER_ID)), PEER, 1.5)  # refilled
    unlimited = make(rate_limit=None)
    assert all(unlimited.receive(encode(Ping(t=b"%d" % i, node_id=OTHER_ID)), PEER, 0.0) for i in range(100))


def test_the_rate_limiter_forgets_quiet_ips_and_stays_bounded() -> None:
    limiter = RateLimiter(RateLimit(rate=10.0, burst=2.0, max_tracked=100))
    assert [limiter.allow("10.0.0.1", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("10.0.0.1", 0.1)  # one token back after 1/rate seconds
    for i in range(1000):
        limiter.allow(f"10.1.{i >> 8}.{i & 255}", 1.0 + i)  # each IP quiet again 0.1 s after its query
    assert len(limiter) < 20
    for i in range(1000):
        limiter.allow(f"10.2.{i >> 8}.{i & 255}", 5000.0)  # all at once: the hard bound holds
    assert len(limiter) <= 100
    assert limiter.prune(6000.0) > 0 and len(limiter) == 0


def test_nodes_of_the_other_address_family_stay_out_of_the_table() -> None:
    node = make()
    assert isinstance(ask(node, Ping(t=b"aa", node_id=OTHER_ID), addr=("2001:db8::7", 6881)), Response)
    assert node.table.size == 0


# -- get_peers / announce_peer ---------------------------------------------------------------------------------------
def test_announce_needs_the_token_given_to_that_ip() -> None:
    node = make()
    reply = ask(node, GetPeers(t=b"g", node_id=OTHER_ID, info_hash=IH))
    assert isinstance(reply, Response) and reply.token and reply.values == ()
    bad = ask(node, AnnouncePeer(t=b"a", node_id=OTHER_ID, info_hash=IH, port=7000, token=b"x" * 8))
    assert isinstance(bad, ErrorMessage) and bad.code == krpc.ERROR_PROTOCOL
    stolen = ask(node, AnnouncePeer(t=b"a", node_id=OTHER_ID, info_hash=IH, port=7000, token=reply.token),
                 addr=("10.0.0.9", 6881))
    assert isinstance(stolen, ErrorMessage)
    zero = ask(node, AnnouncePeer(t=b"a", node_id=OTHER_ID, info_hash=IH, port=0, token=reply.token))
    assert isinstance(zero, ErrorMessage)
    ok = ask(node, AnnouncePeer(t=b"a", node_id=OTHER_ID, info_hash=IH, port=7000, token=reply.token))
    assert isinstance(ok, Response)
    ask(node, AnnouncePeer(t=b"a", node_id=OTHER_ID, info_hash=IH, port=1, token=reply.token, implied_port=True))
    again = ask(node, GetPeers(t=b"g", node_id=OTHER_ID, info_hash=IH))
    assert isinstance(again, Response) and set(again.values) == {("10.0.0.2", 7000), PEER}
    assert not any(":" in host for host, _ in again.values)


def test_find_node_hands_out_only_verified_nodes_closest_first() -> None:
    node = make()
    for i in range(1, 6):
        node.table.on_response(bytes([i]) * 20, (f"10.0.1.{i}", 6881), 0.0)
    node.table.on_query(b"\x07" * 20, ("10.0.1.7", 6881), 0.0)
    reply = ask(node, FindNode(t=b"f", node_id=OTHER_ID, target=b"\x04" * 20))
    assert isinstance(reply, Response)
    assert [node_id[0] for node_id, _, _ in reply.nodes] == [4, 5, 1, 2, 3]
    v6 = DhtCore(OWN, now=0.0, ipv6=True)
    v6.table.on_response(b"\x02" * 20, ("2001:db8::2", 6881), 0.0)
    reply = ask(v6, FindNode(t=b"f", node_id=OTHER_ID, target=b"\x02" * 20), addr=("2001:db8::9", 1))
    assert isinstance(reply, Response) and reply.nodes == () and reply.nodes6 == ((b"\x02" * 20, "2001:db8::2", 6881),)


# -- BEP 44 on the storing side --------------------------------------------------------------------------------------
def test_put_and_get_through_queries() -> None:
    node = make()
    token = ask(node, Get(t=b"g", node_id=OTHER_ID, target=IH))
    assert isinstance(token, Response) and token.token and token.value is None
    item = mutable_item(bytes(32), b"3:one", 4)
    put = Put(t=b"p", node_id=OTHER_ID, token=token.token, value=item.value, key=item.key, signature=item.signature,
              seq=item.seq)
    assert isinstance(ask(node, put), Response)
    got = ask(node, Get(t=b"g", node_id=OTHER_ID, target=item.target))
    assert isinstance(got, Response) and (got.value, got.key, got.signature, got.seq) == (
        item.value, item.key, item.signature, 4)
    not_newer = ask(node, Get(t=b"g", node_id=OTHER_ID, target=item.target, seq=4))
    assert isinstance(not_newer, Response) and not_newer.seq == 4 and not_newer.value is None
    forged = Put(t=b"p", node_id=OTHER_ID, token=token.token, value=b"3:two", key=item.key, signature=item.signature,
                 seq=5)
    reply = ask(node, forged)
    assert isinstance(reply, ErrorMessage) and reply.code == krpc.ERROR_BAD_SIGNATURE
    big = Put(t=b"p", node_id=OTHER_ID, token=token.token, value=b"1001:" + b"x" * 1001)
    reply = ask(node, big)
    assert isinstance(reply, ErrorMessage) and reply.code == krpc.ERROR_VALUE_TOO_BIG
    no_token = Put(t=b"p", node_id=OTHER_ID, token=b"nope", value=b"1:x")
    assert isinstance(ask(node, no_token), ErrorMessage)
    immutable = Item(b"5:hello")
    assert isinstance(ask(node, Put(t=b"p", node_id=OTHER_ID, token=token.token, value=immutable.value)), Response)
    got = ask(node, Get(t=b"g", node_id=OTHER_ID, target=immutable.target))
    assert isinstance(got, Response) and got.value == b"5:hello" and got.key is None


# -- our own queries -------------------------------------------------------------------------------------------------
def test_responses_must_come_from_where_the_query_went() -> None:
    node = make()
    request_id, packets = node.ping(PEER, 0.0)
    (data, to), = packets
    t = decode(data).t
    assert to == PEER and len(t) == 2
    answer = encode(Response(t=t, node_id=OTHER_ID))
    assert node.receive(answer, ("10.6.6.6", 6881), 1.0) == [] and node.stats.wrong_source == 1
    assert node.receive(encode(Response(t=b"??", node_id=OTHER_ID)), PEER, 1.0) == []
    assert node.stats.unexpected == 1
    node.receive(answer, PEER, 1.0)
    (event,) = node.pop_events()
    assert event == QueryDone(request_id, PEER, Response(t=t, node_id=OTHER_ID))
    entry = node.table.find(OTHER_ID)
    assert entry is not None and entry.responded  # it answered: verified
    node.receive(answer, PEER, 1.0)  # a duplicate answer matches nothing any more
    assert node.stats.unexpected == 2


def test_unanswered_queries_time_out() -> None:
    node = make(query_timeout=5.0)
    node.table.on_response(OTHER_ID, PEER, 0.0)
    request_id, _ = node.query(Ping(t=b"", node_id=OWN), PEER, 0.0, node_id=OTHER_ID)
    assert node.next_wakeup() == 5.0 and node.pending_queries == 1
    assert node.tick(4.9) == [] and node.pop_events() == []
    node.tick(5.0)
    assert node.pop_events() == [QueryDone(request_id, PEER, None)]
    assert node.stats.timeouts == 1 and node.pending_queries == 0
    entry = node.table.find(OTHER_ID)
    assert entry is not None and entry.fails == 1
    assert node.next_wakeup() == MAINTENANCE_INTERVAL


def test_error_replies_are_reported() -> None:
    node = make()
    request_id, packets = node.ping(PEER, 0.0)
    t = decode(packets[0][0]).t
    node.receive(encode(ErrorMessage(t=t, code=202, message="busy")), PEER, 1.0)
    assert node.pop_events() == [QueryDone(request_id, PEER, ErrorMessage(t=t, code=202, message="busy"))]
    assert node.stats.errors_in == 1


def test_too_many_pending_queries_are_refused_not_queued() -> None:
    node = make(max_pending=2)
    for _ in range(3):
        node.ping(PEER, 0.0)
    assert node.pending_queries == 2 and node.stats.send_failures == 1
    assert node.pop_events()[-1].reply is None  # type: ignore[union-attr]


def test_ping_before_evict_goes_out_with_the_answer() -> None:
    node = make()
    far = [bytes([i]) + b"\x00" * 19 for i in range(1, 9)]  # our id starts with bit 1: these share no bit
    for i, node_id in enumerate(far):
        node.table.on_response(node_id, (f"10.0.2.{i + 1}", 6881), float(i))
    node.table.on_response(b"\x80" + b"\x01" * 19, ("10.0.3.1", 6881), 0.0)  # a near node: the far bucket is split
    packets = node.receive(encode(Ping(t=b"n", node_id=b"\x09" + b"\x00" * 19)), ("10.0.4.1", 6881), GOOD_FOR + 1)
    assert len(packets) == 2
    ping = [decode(data) for data, to in packets if to == ("10.0.2.1", 6881)]  # the least recently seen node
    assert len(ping) == 1 and isinstance(ping[0], Ping)


# -- lookups and upkeep ----------------------------------------------------------------------------------------------
def test_lookup_limits_and_arguments() -> None:
    node = make(max_lookups=2)
    node.table.on_response(OTHER_ID, PEER, 0.0)
    node.start_lookup(LookupKind.FIND_NODE, IH, 0.0)
    node.start_lookup(LookupKind.GET_PEERS, IH, 0.0)
    with pytest.raises(DhtBusyError):
        node.start_lookup(LookupKind.GET, IH, 0.0)
    with pytest.raises(ValueError):
        make().start_lookup(LookupKind.GET, b"short", 0.0)
    with pytest.raises(ValueError):
        make().announce(IH, 0.0, port=70000)
    with pytest.raises(ValueError):
        DhtCore(b"short", now=0.0)


def test_a_lookup_with_nobody_to_ask_ends_at_once() -> None:
    node = make()
    lookup_id, packets = node.start_lookup(LookupKind.FIND_NODE, IH, 0.0)
    (event,) = node.pop_events()
    assert packets == [] and event.lookup_id == lookup_id and event.result.nodes == []  # type: ignore[union-attr]


def test_stale_buckets_are_refreshed_and_an_empty_table_bootstraps_again() -> None:
    node = make()
    node.table.on_response(OTHER_ID, PEER, 0.0)
    assert node.tick(MAINTENANCE_INTERVAL) == []
    packets = node.tick(REFRESH_AFTER + MAINTENANCE_INTERVAL)
    assert packets and all(isinstance(decode(data), FindNode) for data, _ in packets)
    assert node.pop_events() == []  # refreshes are the node's own business
    lonely = make()
    lonely.bootstrap([("10.9.9.9", 6881)], 0.0)
    lonely.tick(10.0)  # the bootstrap query times out
    again = lonely.tick(MAINTENANCE_INTERVAL)
    assert [to for _, to in again] == [("10.9.9.9", 6881)]


def test_stats_snapshot_and_load() -> None:
    node = make()
    node.table.on_response(OTHER_ID, PEER, 0.0)
    assert node.snapshot() == [(OTHER_ID, *PEER)]
    other = make()
    assert other.load(node.snapshot(), 0.0) == 1
    stats = node.stats.as_dict()
    assert {"packets_in", "packets_out", "queries_in", "malformed", "rate_limited", "timeouts"} <= set(stats)


# -- BEP 32 `want` -----------------------------------------------------------------------------------------------------
def _both_families() -> tuple[DhtCore, DhtCore]:
    """An IPv4 and an IPv6 core of one node, each answering `want` from the other as a driver wires them."""
    v4, v6 = make(), DhtCore(OWN, now=0.0, ipv6=True, rng=random.Random(2))
    v4.table.on_response(b"\x04" * 20, ("10.0.1.4", 6881), 0.0)
    v6.table.on_response(b"\x06" * 20, ("2001:db8::6", 6881), 0.0)
    v4.other_family, v6.other_family = v6.closest_nodes, v4.closest_nodes
    return v4, v6


@pytest.mark.parametrize("query", [
    lambda want: FindNode(t=b"f", node_id=OTHER_ID, target=b"\x05" * 20, want=want),
    lambda want: GetPeers(t=b"g", node_id=OTHER_ID, info_hash=b"\x05" * 20, want=want),
])
def test_want_asks_for_the_nodes_of_each_family_named(query) -> None:  # type: ignore[no-untyped-def]
    v4, v6 = _both_families()
    n4 = ((b"\x04" * 20, "10.0.1.4", 6881),)
    n6 = ((b"\x06" * 20, "2001:db8::6", 6881),)
    both = ask(v4, query((b"n4", b"n6")))
    assert isinstance(both, Response) and both.nodes == n4 and both.nodes6 == n6
    only6 = ask(v4, query((b"n6",)))
    assert isinstance(only6, Response) and only6.nodes == () and only6.nodes6 == n6
    over6 = ask(v6, query((b"n4",)), addr=("2001:db8::9", 1))
    assert isinstance(over6, Response) and over6.nodes == n4 and over6.nodes6 == ()
    # without `want`, or with only names it does not know, a query gets the family it came over
    for want in ((), (b"n5",)):
        plain = ask(v6, query(want), addr=("2001:db8::9", 1))
        assert isinstance(plain, Response) and plain.nodes == () and plain.nodes6 == n6


def test_want_of_a_family_the_node_does_not_run_is_left_out() -> None:
    node = make()
    node.table.on_response(b"\x04" * 20, ("10.0.1.4", 6881), 0.0)
    reply = ask(node, FindNode(t=b"f", node_id=OTHER_ID, target=b"\x05" * 20, want=(b"n4", b"n6")))
    assert isinstance(reply, Response) and len(reply.nodes) == 1 and reply.nodes6 == ()


@pytest.mark.parametrize("dual", [True, False])
def test_a_node_in_both_families_asks_for_both_and_reports_the_other_familys_nodes(dual: bool) -> None:
    """BEP 32: with `other_family` set, lookups send want n4+n6, and the nodes6 of a reply to the IPv4 core come out
    as `OtherFamilyNodes` for the driver to hand to the IPv6 DHT; without it neither happens."""
    from peerloom.dht.events import OtherFamilyNodes

    node = make()
    if dual:
        node.other_family = lambda target: ()
    node.table.on_response(OTHER_ID, PEER, 0.0)
    _, packets = node.start_lookup(LookupKind.GET_PEERS, IH, 0.0)
    (query,) = [decode(data) for data, to in packets if to == PEER]
    assert isinstance(query, GetPeers) and query.want == ((b"n4", b"n6") if dual else ())
    six = ((b"\x06" * 20, "2001:db8::6", 6881),)
    node.receive(encode(Response(t=query.t, node_id=OTHER_ID, nodes6=six, token=b"k")), PEER, 0.1)
    reported = [e for e in node.pop_events() if isinstance(e, OtherFamilyNodes)]
    assert reported == ([OtherFamilyNodes(list(six))] if dual else [])
