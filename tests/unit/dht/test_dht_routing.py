"""DHT routing table (BEP 5) and node-id checks (BEP 42): splitting, node states, replacement cache, ping before evict,
closest nodes against brute force, refresh targets, snapshot/load, and the BEP 42 test vectors."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerloom.dht.routing import (
    GOOD_FOR,
    ID_BITS,
    MAX_FAILS,
    REFRESH_AFTER,
    NodeState,
    RoutingTable,
    bep42_node_id,
    bep42_prefix,
    crc32c,
    is_local_address,
    node_id_valid_for_ip,
    to_bytes,
)

TOP = 1 << (ID_BITS - 1)


def addr(i: int) -> tuple[str, int]:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 6881


def check_invariants(table: RoutingTable) -> None:
    last = len(table.buckets) - 1
    for index, bucket in enumerate(table.buckets):
        assert len(bucket.nodes) <= table.k
        assert len(bucket.replacements) <= table.max_replacements
        for entry in bucket.nodes + bucket.replacements:
            shared = ID_BITS - (entry.id ^ table.own).bit_length()
            assert shared == index if index < last else shared >= last


# -- buckets and splitting -------------------------------------------------------------------------------------------
def test_only_the_bucket_holding_our_id_splits() -> None:
    table = RoutingTable(0, now=0.0)
    far = [TOP | (i << 100) for i in range(1, 9)]
    for i, node in enumerate(far):
        table.on_response(node, addr(i), 0.0)
    assert len(table.buckets) == 1 and table.size == 8
    table.on_response(TOP | 12345, addr(20), 0.0)  # a ninth far node: the full bucket splits ...
    assert len(table.buckets) == 2 and table.size == 8
    assert len(table.buckets[0].nodes) == 8 and len(table.buckets[0].replacements) == 1  # ... but it still waits
    for i in range(1, 40):  # nodes ever closer to our id split the table further
        table.on_response(1 << (ID_BITS - 1 - i // 2) | i, addr(100 + i), 0.0)
    assert len(table.buckets) > 10
    check_invariants(table)


def test_our_own_id_never_enters_the_table() -> None:
    table = RoutingTable(b"\x07" * 20)
    table.on_response(b"\x07" * 20, addr(1), 0.0)
    table.on_query(b"\x07" * 20, addr(1), 0.0)
    assert table.size == 0


# -- node states -----------------------------------------------------------------------------------------------------
def test_node_states_follow_bep5() -> None:
    table = RoutingTable(0)
    table.on_response(TOP | 1, addr(1), 0.0)
    entry = table.find(TOP | 1)
    assert entry is not None and entry.state(GOOD_FOR - 1) is NodeState.GOOD
    assert entry.state(GOOD_FOR) is NodeState.QUESTIONABLE
    table.on_query(TOP | 1, addr(1), 1000.0)  # a query after having answered keeps it good
    assert entry.state(1000.0 + GOOD_FOR - 1) is NodeState.GOOD
    for _ in range(MAX_FAILS):
        table.on_failure(TOP | 1, 1001.0)
    assert entry.state(1001.0) is NodeState.BAD
    assert table.closest(TOP | 1) == []
    table.on_response(TOP | 1, addr(1), 1002.0)  # it answers again: good again
    assert entry.state(1002.0) is NodeState.GOOD and entry.fails == 0


def test_a_node_that_only_queried_us_is_questionable_and_not_handed_out() -> None:
    table = RoutingTable(0)
    table.on_query(TOP | 1, addr(1), 0.0)
    entry = table.find(TOP | 1)
    assert entry is not None and entry.state(0.0) is NodeState.QUESTIONABLE and not entry.responded
    assert table.closest(TOP, verified_only=True) == []
    assert table.closest(TOP) == [entry]  # our own lookups may still try it
    table.on_response(TOP | 1, addr(1), 5.0)
    assert entry.state(5.0) is NodeState.GOOD and table.closest(TOP, verified_only=True) == [entry]


def test_a_good_node_keeps_its_address_against_a_claim_of_its_id() -> None:
    table = RoutingTable(0)
    table.on_response(TOP | 1, addr(1), 0.0)
    table.on_response(TOP | 1, addr(2), 10.0)
    entry = table.find(TOP | 1)
    assert entry is not None and entry.address == addr(1)
    table.on_response(TOP | 1, addr(2), GOOD_FOR + 10.0)  # once it has gone quiet, the new address is believed
    assert entry.address == addr(2)


# -- replacement cache and ping before evict -------------------------------------------------------------------------
def full_far_bucket() -> RoutingTable:
    """A table whose far bucket (index 0) holds 8 good nodes seen at t=0..7."""
    table = RoutingTable(0, now=0.0)
    for i in range(1, 9):
        table.on_response(TOP | i, addr(i), float(i - 1))
    table.on_response(1, addr(99), 8.0)  # a near node: the table splits and bucket 0 is the far one
    assert len(table.buckets) > 1 and len(table.buckets[0].nodes) == 8
    return table


def test_a_full_bucket_of_good_nodes_keeps_newcomers_waiting_without_pings() -> None:
    table = full_far_bucket()
    assert table.on_response(TOP | 100, addr(100), 9.0) == []
    assert [entry.id for entry in table.buckets[0].replacements] == [TOP | 100]
    for i in range(200, 220):
        table.on_query(TOP | i, addr(i), 9.0)
    assert len(table.buckets[0].replacements) == table.max_replacements  # bounded
    assert TOP | 100 in {entry.id for entry in table.buckets[0].replacements}  # answering nodes are kept first
    check_invariants(table)


def test_ping_before_evict_replaces_a_node_that_fails_twice() -> None:
    table = full_far_bucket()
    later = GOOD_FOR + 100.0
    to_ping = table.on_response(TOP | 100, addr(100), later)
    assert [entry.id for entry in to_ping] == [TOP | 1]  # the least recently seen questionable node
    assert [entry.id for entry in table.on_response(TOP | 101, addr(101), later + 1)] == [TOP | 2]
    table.on_failure(TOP | 1, later + 5)
    assert table.find(TOP | 1) is not None  # one failure: tried once more before discarding
    assert [entry.id for entry in table.on_query(TOP | 102, addr(102), later + 6)] == [TOP | 1]
    table.on_failure(TOP | 1, later + 10)
    assert table.find(TOP | 1) is None
    assert table.find(TOP | 101) is not None  # the most recently seen node that answered us took the place
    assert table.buckets[0].changed == later + 10
    table.on_response(TOP | 2, addr(2), later + 11)  # the other pinged node answers: it stays, good
    entry = table.find(TOP | 2)
    assert entry is not None and entry.state(later + 11) is NodeState.GOOD
    check_invariants(table)


def test_a_bad_node_is_replaced_at_once_by_a_newcomer() -> None:
    table = full_far_bucket()
    for _ in range(MAX_FAILS):
        table.on_failure(TOP | 3, 9.0)
    assert table.on_response(TOP | 50, addr(50), 10.0) == []
    assert table.find(TOP | 3) is None and table.find(TOP | 50) is not None


def test_abandoned_pings_can_be_handed_out_again() -> None:
    table = full_far_bucket()
    later = GOOD_FOR + 100.0
    (entry,) = table.on_response(TOP | 100, addr(100), later)
    table.ping_abandoned(entry)
    assert table.on_response(TOP | 101, addr(101), later) == [entry]


# -- closest nodes ---------------------------------------------------------------------------------------------------
def near(own: int, noise: int, shift: int) -> int:
    return own ^ (noise >> shift)


ids = st.integers(0, (1 << ID_BITS) - 1)


@settings(max_examples=60, deadline=None)
@given(
    own=ids,
    nodes=st.lists(st.tuples(ids, st.integers(0, ID_BITS)), min_size=0, max_size=120),
    target=st.tuples(ids, st.integers(0, ID_BITS)),
    n=st.integers(1, 20),
)
def test_closest_matches_brute_force(own: int, nodes: list[tuple[int, int]], target: tuple[int, int], n: int) -> None:
    table = RoutingTable(own, rng=random.Random(0))
    for i, (noise, shift) in enumerate(nodes):
        table.on_response(near(own, noise, shift), addr(i), 0.0)
    check_invariants(table)
    goal = near(own, *target)
    expected = sorted((entry.id for entry in table), key=lambda node: node ^ goal)[:n]
    assert [entry.id for entry in table.closest(goal, n)] == expected


def test_closest_skips_bad_nodes() -> None:
    table = RoutingTable(0)
    for i in range(1, 6):
        table.on_response(TOP | i, addr(i), 0.0)
    for _ in range(MAX_FAILS):
        table.on_failure(TOP | 1, 1.0)
    assert [entry.id for entry in table.closest(TOP | 1, 3)] == [TOP | 3, TOP | 2, TOP | 5]


# -- maintenance -----------------------------------------------------------------------------------------------------
def test_stale_buckets_give_random_ids_in_their_own_ranges() -> None:
    rng = random.Random(5)
    own = rng.getrandbits(ID_BITS)
    table = RoutingTable(own, rng=rng, now=0.0)
    for i in range(300):
        table.on_response(near(own, rng.getrandbits(ID_BITS), rng.randrange(ID_BITS)), addr(i), 0.0)
    assert table.stale_buckets(REFRESH_AFTER - 1) == []
    targets = table.stale_buckets(REFRESH_AFTER)
    assert len(targets) == len(table.buckets)
    for index, target in enumerate(targets):
        assert table.bucket_index(int.from_bytes(target, "big")) == index
    assert table.stale_buckets(REFRESH_AFTER) == []  # handed out: fresh again for 15 minutes
    assert len(table.stale_buckets(2 * REFRESH_AFTER, limit=2)) == 2


def test_snapshot_and_load_restore_the_nodes_unverified() -> None:
    rng = random.Random(9)
    own = rng.getrandbits(ID_BITS)
    table = RoutingTable(own, rng=rng)
    for i in range(100):
        table.on_response(rng.getrandbits(ID_BITS), addr(i), 0.0)
    snapshot = table.snapshot()
    assert len(snapshot) == table.size and all(len(node_id) == 20 for node_id, _, _ in snapshot)
    restored = RoutingTable(own, rng=rng)
    assert restored.load([*snapshot, (b"short", "1.2.3.4", 1), (b"x" * 20, "not an ip", 1)], 50.0) == table.size
    assert {entry.id for entry in restored} == {entry.id for entry in table}
    assert restored.closest(own, verified_only=True) == []
    node_id, host, port = snapshot[0]
    restored.on_response(node_id, (host, port), 60.0)
    assert [entry.node_id for entry in restored.closest(node_id, 1, verified_only=True)] == [node_id]


def test_stats_per_bucket() -> None:
    table = full_far_bucket()
    table.on_failure(TOP | 1, 10.0)
    table.on_failure(TOP | 1, 10.0)
    stats = table.stats(20.0)
    assert len(stats) == len(table.buckets)
    # The bucket last changed when its eighth node came in, at t=7.
    assert (stats[0].good, stats[0].bad, stats[0].idle) == (7, 1, 13.0)
    assert sum(s.good + s.questionable + s.bad for s in stats) == table.size


# -- BEP 42 ----------------------------------------------------------------------------------------------------------
BEP42_VECTORS = [  # BEP 42's table: IP, rand, example node id
    ("124.31.75.21", 1, "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401"),
    ("21.75.31.124", 86, "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256"),
    ("65.23.51.170", 22, "a5d43220bc8f112a3d426c84764f8c2a1150e616"),
    ("84.124.73.14", 65, "1b0321dd1bb1fe518101ceef99462b947a01ff41"),
    ("43.213.53.83", 90, "e56f6cbf5b7c4be0237986d5243b87aa6d51305a"),
]


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


@pytest.mark.parametrize(("ip", "rand", "node_id"), BEP42_VECTORS)
def test_bep42_vectors(ip: str, rand: int, node_id: str) -> None:
    raw = bytes.fromhex(node_id)
    assert bep42_prefix(ip, rand) >> 11 == int(node_id[:6], 16) >> 3  # the first 21 bits
    assert node_id_valid_for_ip(raw, ip)
    assert node_id_valid_for_ip(int.from_bytes(raw, "big"), ip)
    for bit in (0, 9, 20):  # any change in the first 21 bits breaks it
        broken = bytearray(raw)
        broken[bit // 8] ^= 0x80 >> (bit % 8)
        assert not node_id_valid_for_ip(bytes(broken), ip)
    assert node_id_valid_for_ip(raw[:19] + bytes([raw[19] ^ 0xF8]), ip)  # only the low 3 bits of rand count
    assert not node_id_valid_for_ip(raw, "1.1.1.1")


@pytest.mark.parametrize("ip", ["10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.0.9",
                                "127.0.0.1", "::1", "fe80::1", "fd00::5", "::ffff:10.0.0.1"])
def test_local_addresses_are_exempt(ip: str) -> None:
    assert is_local_address(ip) and node_id_valid_for_ip(b"\x00" * 20, ip)


@pytest.mark.parametrize("ip", ["172.32.0.1", "8.8.8.8", "2001:db8::1", "192.169.0.1"])
def test_public_addresses_are_not_exempt(ip: str) -> None:
    assert not is_local_address(ip)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.integers(0, 255))
def test_generated_ids_are_valid_for_their_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, rand: int) -> None:
    node_id = bep42_node_id(str(ip), random.Random(rand), rand)
    assert len(node_id) == 20 and node_id[19] == rand
    assert node_id_valid_for_ip(node_id, str(ip))


def test_enforcement_keeps_non_compliant_nodes_out() -> None:
    table = RoutingTable(0, enforce_bep42=True)
    table.on_response(TOP | 1, ("8.8.8.8", 1), 0.0)
    good = bep42_node_id("8.8.4.4", random.Random(1))
    table.on_response(good, ("8.8.4.4", 1), 0.0)
    table.on_response(TOP | 2, ("192.168.0.2", 1), 0.0)  # local: exempt
    assert {entry.node_id for entry in table} == {good, to_bytes(TOP | 2)}
    entry = table.find(good)
    assert entry is not None and entry.bep42_valid
    lax = RoutingTable(0)
    lax.on_response(TOP | 1, ("8.8.8.8", 1), 0.0)
    entry = lax.find(TOP | 1)
    assert entry is not None and not entry.bep42_valid  # recorded, not enforced
