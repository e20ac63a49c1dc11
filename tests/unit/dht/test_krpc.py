"""KRPC messages (BEP 5 with BEP 32/42/43/44/51 fields): BEP 5's example packets byte for byte, round trips of every
message type, malformed packets refused with KrpcError, and random or damaged bytes raising nothing else."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.mutations import mutated

from peerloom.codec.bencode import encode as bencode
from peerloom.dht import krpc
from peerloom.dht.krpc import (
    AnnouncePeer,
    ErrorMessage,
    FindNode,
    Get,
    GetPeers,
    KrpcError,
    Ping,
    Put,
    Response,
    SampleInfohashes,
    decode,
    encode,
)
from peerloom.errors import ProtocolError

A = b"abcdefghij0123456789"
M = b"mnopqrstuvwxyz123456"


# -- BEP 5's examples, byte for byte -------------------------------------------------------------------------------
BEP5_EXAMPLES = [
    (b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe", Ping(t=b"aa", node_id=A)),
    (b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re", Response(t=b"aa", node_id=M)),
    (
        b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
        FindNode(t=b"aa", node_id=A, target=M),
    ),
    (
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
        GetPeers(t=b"aa", node_id=A, info_hash=M),
    ),
    (
        b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re",
        Response(t=b"aa", node_id=A, token=b"aoeusnth",
                 values=(("97.120.106.101", 0x2E75), ("105.100.104.116", 0x6E6D))),
    ),
    (
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe"
        b"1:q13:announce_peer1:t2:aa1:y1:qe",
        AnnouncePeer(t=b"aa", node_id=A, info_hash=M, port=6881, token=b"aoeusnth"),
    ),
    (b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee", ErrorMessage(t=b"aa", code=201,
                                                                        message="A Generic Error Ocurred")),
]


@pytest.mark.parametrize(("packet", "message"), BEP5_EXAMPLES)
def test_bep5_examples_decode_and_encode_byte_for_byte(packet: bytes, message: krpc.Message) -> None:
    assert decode(packet) == message
    assert encode(message) == packet


def test_announce_with_implied_port() -> None:
    packet = (b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e"
              b"5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe")
    msg = decode(packet)
    assert msg == AnnouncePeer(t=b"aa", node_id=A, info_hash=M, port=6881, token=b"aoeusnth", implied_port=True)
    assert encode(msg) == packet
    # With implied_port the port may be left out.
    bare = decode(bencode({"t": b"x", "y": "q", "q": "announce_peer",
                           "a": {"id": A, "info_hash": M, "token": b"tok", "implied_port": 1}}))
    assert isinstance(bare, AnnouncePeer) and bare.implied_port and bare.port == 0


def test_read_only_flag_client_version_and_ip_field() -> None:
    ro = bencode({"t": b"aa", "y": "q", "q": "ping", "a": {"id": A}, "ro": 1, "v": b"LT\x01\x02"})
    msg = decode(ro)
    assert isinstance(msg, Ping) and msg.read_only and msg.client_version == b"LT\x01\x02"
    assert encode(msg) == ro
    reply = bencode({"t": b"aa", "y": "r", "r": {"id": M}, "ip": bytes([124, 31, 75, 21, 0x1A, 0xE1])})
    msg = decode(reply)
    assert isinstance(msg, Response) and msg.ip == ("124.31.75.21", 6881)
    assert encode(msg) == reply


# -- round trips -----------------------------------------------------------------------------------------------------
NODES = ((b"\x01" * 20, "1.2.3.4", 6881), (b"\x02" * 20, "10.0.0.9", 1))
NODES6 = ((b"\x03" * 20, "2001:db8::1", 6881),)
ROUND_TRIP = [
    Ping(t=b"\x00\x01", node_id=A, read_only=True, client_version=b"PL\x00\x01"),
    FindNode(t=b"t", node_id=A, target=M, want=(b"n4", b"n6")),
    GetPeers(t=b"", node_id=A, info_hash=M),
    AnnouncePeer(t=b"x" * 16, node_id=A, info_hash=M, port=65535, token=b"k" * 64, implied_port=True),
    Get(t=b"g", node_id=A, target=M, seq=7),
    Put(t=b"p", node_id=A, token=b"tok", value=b"12:Hello World!"),
    Put(t=b"p", node_id=A, token=b"tok", value=b"d1:ai1e1:bl1:xee", key=b"k" * 32, signature=b"s" * 64, seq=2**63 - 1,
        cas=3, salt=b"foobar"),
    SampleInfohashes(t=b"s", node_id=A, target=M),
    Response(t=b"r", node_id=M, nodes=NODES, nodes6=NODES6, token=b"tok", ip=("2001:db8::2", 1)),
    Response(t=b"r", node_id=M, values=(("1.2.3.4", 80), ("2001:db8::5", 443)), token=b"t"),
    Response(t=b"r", node_id=M, value=b"li1ei2ee", key=b"k" * 32, signature=b"s" * 64, seq=0, token=b"t"),
    Response(t=b"r", node_id=M, samples=(b"a" * 20, b"b" * 20), interval=300, num=2, nodes=NODES),
    Response(t=b"r", node_id=M, samples=(), num=0),
    ErrorMessage(t=b"e", code=302, message="seq too low", ip=("1.2.3.4", 5)),
]


@pytest.mark.parametrize("message", ROUND_TRIP, ids=lambda m: type(m).__name__)
def test_every_message_type_round_trips(message: krpc.Message) -> None:
    assert decode(encode(message)) == message


def test_bounded_lists_keep_only_their_first_entries() -> None:
    nodes = b"".join(bytes([i]) * 20 + bytes([10, 0, 0, i, 0, 1]) for i in range(1, 41))
    values = [bytes([1, 2, 3, i % 250 + 1, 0, 1]) for i in range(300)]
    msg = decode(bencode({"t": b"r", "y": "r", "r": {"id": M, "nodes": nodes, "values": values}}))
    assert isinstance(msg, Response)
    assert len(msg.nodes) == krpc.MAX_NODES and msg.nodes[0] == (b"\x01" * 20, "10.0.0.1", 1)
    assert len(msg.values) == krpc.MAX_VALUES


def test_entries_with_port_zero_are_skipped() -> None:
    nodes = b"\x01" * 20 + bytes([1, 2, 3, 4, 0, 0]) + b"\x02" * 20 + bytes([1, 2, 3, 4, 0, 9])
    msg = decode(bencode({"t": b"r", "y": "r", "r": {"id": M, "nodes": nodes}}))
    assert isinstance(msg, Response) and msg.nodes == ((b"\x02" * 20, "1.2.3.4", 9),)


def test_node_lists_hold_one_address_family_each() -> None:
    with pytest.raises(ValueError):
        encode(Response(t=b"r", node_id=M, nodes=NODES6))
    with pytest.raises(ValueError):
        encode(Response(t=b"r", node_id=M, nodes6=NODES))
    with pytest.raises(ValueError):
        krpc.pack_nodes([(b"short", "1.2.3.4", 1)], False)


def test_value_is_kept_in_canonical_bencoded_form() -> None:
    # Unsorted keys are accepted in the packet, but `v` is what a signature or hash covers: it comes back sorted.
    raw = b"d1:ad2:id20:" + A + b"5:token1:x1:vd1:bi1e1:ai2eee1:q3:put1:t1:p1:y1:qe"
    msg = decode(raw)
    assert isinstance(msg, Put) and msg.value == b"d1:ai2e1:bi1ee"


# -- malformed packets -----------------------------------------------------------------------------------------------
def query(args: dict, method: str = "ping", **top: object) -> bytes:
    return bencode({"t": b"aa", "y": "q", "q": method, "a": args, **top})


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"i1e",
        b"le",
        b"d1:t2:aae",  # no y
        b"d1:y1:qe",  # no t
        b"d1:t2:aa1:y1:xe",
        bencode({"t": 5, "y": "q"}),
        bencode({"t": b"x" * 17, "y": "q", "q": "ping", "a": {"id": A}}),
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qee",  # trailing data
        b"x" * (krpc.MAX_PACKET + 1),
        bencode({"t": b"aa", "y": "r"}),
        bencode({"t": b"aa", "y": "r", "r": {"id": b"short"}}),
        bencode({"t": b"aa", "y": "r", "r": {"id": M, "nodes": b"x" * 27}}),
        bencode({"t": b"aa", "y": "r", "r": {"id": M, "nodes6": b"x" * 26}}),
        bencode({"t": b"aa", "y": "r", "r": {"id": M, "nodes": 5}}),
        bencode({"t": b"aa", "y": "r", "r": {"id": M, "values": [b"12345"]}}),
        bencode({"t": b"aa", "y": "r", "r": {"id": M, "values": b"123456"}}),
        bencode({"t": b"aa", "y": "r", "r": {"id": M, "token": b"t" * 65}}),
        bencode({"t": b"aa", "y": "r", "r": {"id": M, "k": b"k" * 31}}),
        bencode({"t": b"aa", "y": "r", "r": {"id": M, "seq": -1}}),
        bencode({"t": b"aa", "y": "r", "r": {"id": M, "samples": b"x" * 21}}),
        bencode({"t": b"aa", "y": "e", "e": []}),
        bencode({"t": b"aa", "y": "e", "e": [b"201", b"x"]}),
        bencode({"t": b"aa", "y": "e", "e": 201}),
        b"d1:t2:aa1:y1:r1:rd2:id20:" + M + b"e" + b"e" * 0,  # unterminated outer dict
        b"l" * 100 + b"e" * 100,  # nesting deeper than KRPC needs
    ],
)
def test_malformed_packets_raise_krpc_error(packet: bytes) -> None:
    with pytest.raises(KrpcError) as info:
        decode(packet)
    assert isinstance(info.value, ProtocolError)
    assert not info.value.answerable  # nothing here is a query we could answer


@pytest.mark.parametrize(
    "packet",
    [
        query({}),
        query({"id": A[:19]}),
        query({"id": A}, "find_node"),
        query({"id": A, "target": M + b"x"}, "find_node"),
        query({"id": A, "target": M, "want": b"n4"}, "find_node"),
        query({"id": A, "info_hash": M, "token": b"t"}, "announce_peer"),  # no port, no implied_port
        query({"id": A, "info_hash": M, "token": b"t", "port": 70000}, "announce_peer"),
        query({"id": A, "info_hash": M, "port": 1}, "announce_peer"),
        query({"id": A, "token": b"t"}, "put"),  # no v
        query({"id": A, "token": b"t", "v": b"x", "k": b"k" * 32, "seq": 1}, "put"),  # no sig
        query({"id": A, "token": b"t", "v": b"x", "k": b"k" * 32, "sig": b"s" * 63, "seq": 1}, "put"),
        query({"id": A, "token": b"t", "v": b"x", "k": b"k" * 32, "sig": b"s" * 64, "seq": 2**63}, "put"),
        query({"id": A, "target": M, "seq": "1"}, "get"),
        bencode({"t": b"aa", "y": "q", "q": "ping"}),
        bencode({"t": b"aa", "y": "q", "a": {"id": A}}),
    ],
)
def test_malformed_queries_carry_the_transaction_id_for_a_203(packet: bytes) -> None:
    with pytest.raises(KrpcError) as info:
        decode(packet)
    assert info.value.answerable and info.value.transaction_id == b"aa" and info.value.code == krpc.ERROR_PROTOCOL


def test_unknown_method_is_a_204() -> None:
    with pytest.raises(KrpcError) as info:
        decode(query({"id": A, "target": M}, "vote"))
    assert info.value.answerable and info.value.code == krpc.ERROR_METHOD_UNKNOWN


def test_optional_informative_fields_are_dropped_when_malformed() -> None:
    msg = decode(bencode({"t": b"aa", "y": "r", "r": {"id": M}, "v": b"x" * 100, "ip": b"123"}))
    assert isinstance(msg, Response) and msg.client_version is None and msg.ip is None


# -- generated input -------------------------------------------------------------------------------------------------
SEEDS = [packet for packet, _ in BEP5_EXAMPLES] + [encode(message) for message in ROUND_TRIP]


def check(data: bytes) -> None:
    """Only KrpcError may escape; whatever decodes re-encodes to a packet that decodes to the same message."""
    try:
        msg = decode(data)
    except KrpcError:
        return
    assert decode(encode(msg)) == msg


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_krpc_error(data: bytes) -> None:
    check(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(st.sampled_from(SEEDS), max_edits=3))
def test_damaged_packets_raise_only_krpc_error(data: bytes) -> None:
    check(data)
