"""atheris fuzz target for KRPC: the message decoder, and a DHT node's receive path for queries and for replies.

Run: `python tests/fuzz/fuzz_krpc.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target, the
rest is its input. `krpc.decode` may raise only KrpcError, and whatever it accepts must re-encode to the same message.
`DhtCore.receive` raises nothing: every datagram is answered, taken as a reply, or dropped and counted. For the reply
target the input is delivered as the answer to a lookup's query (a bencoded dict gets that query's transaction id).
"""

from __future__ import annotations

import random

import harness

from peerloom.codec import bencode
from peerloom.dht import krpc
from peerloom.dht.krpc import KrpcError
from peerloom.dht.lookup import LookupKind
from peerloom.dht.node import DhtCore
from peerloom.errors import ProtocolError

_OWN = bytes(range(20))
_PEER = ("10.0.0.2", 6881)
_PEER_ID = b"\xee" * 20
_COUNTED = ("malformed", "unknown_method", "rate_limited", "unexpected", "wrong_source", "ignored_read_only")


def _decode(data: bytes) -> None:
    try:
        msg = krpc.decode(data)
    except KrpcError:
        return
    assert krpc.decode(krpc.encode(msg)) == msg


def _node() -> DhtCore:
    node = DhtCore(_OWN, now=0.0, rng=random.Random(0))
    node.table.on_response(_PEER_ID, _PEER, 0.0)
    return node


def _check_counted(node: DhtCore, packets: list[tuple[bytes, tuple[str, int]]]) -> None:
    stats = node.stats
    assert stats.packets_in == 1
    handled = stats.responses_in + stats.errors_in + sum(stats.queries_in.values())
    dropped = sum(getattr(stats, name) for name in _COUNTED)
    assert handled + dropped >= 1, "a datagram was neither handled nor counted as dropped"
    for data, _ in packets:
        krpc.decode(data)  # everything the node sends is valid KRPC


def _query(data: bytes) -> None:
    node = _node()
    packets = node.receive(data, _PEER, 1.0)
    _check_counted(node, packets)
    node.tick(100.0)


def _reply(data: bytes) -> None:
    node = _node()
    _, packets = node.start_lookup(LookupKind.GET, b"\x11" * 20, 0.0, salt=b"s")
    t = krpc.decode(packets[0][0]).t
    try:
        msg = bencode.decode(data, strict=False)
    except ProtocolError:
        msg = None
    if isinstance(msg, dict):
        msg[b"t"] = t
        data = bencode.encode(msg)
    _check_counted(node, node.receive(data, _PEER, 1.0))
    node.tick(100.0)
    node.pop_events()


TestOneInput = harness.Pick(_decode, _query, _reply)  # each target catches the errors it expects itself


def seeds() -> list[bytes]:
    """Valid inputs for every target, to start a corpus from."""
    node_id, other = b"a" * 20, b"b" * 20
    nodes = other + bytes([10, 0, 0, 3, 0x1A, 0xE1])
    queries = [
        krpc.Ping(t=b"aa", node_id=node_id, read_only=True),
        krpc.FindNode(t=b"aa", node_id=node_id, target=other, want=(b"n4",)),
        krpc.GetPeers(t=b"aa", node_id=node_id, info_hash=other),
        krpc.AnnouncePeer(t=b"aa", node_id=node_id, info_hash=other, port=1, token=b"12345678", implied_port=True),
        krpc.Get(t=b"aa", node_id=node_id, target=other, seq=1),
        krpc.Put(t=b"aa", node_id=node_id, token=b"12345678", value=b"1:v", key=b"k" * 32, signature=b"s" * 64,
                 seq=1, cas=0, salt=b"s"),
        krpc.SampleInfohashes(t=b"aa", node_id=node_id, target=other),
    ]
    replies = [
        {b"t": b"aa", b"y": b"r", b"r": {b"id": _PEER_ID, b"nodes": nodes, b"token": b"tok", b"v": b"1:x",
                                        b"k": b"k" * 32, b"sig": b"s" * 64, b"seq": 3}, b"ip": bytes(6)},
        {b"t": b"aa", b"y": b"r", b"r": {b"id": _PEER_ID, b"values": [bytes([1, 2, 3, 4, 0, 80])], b"nodes6": b""}},
        {b"t": b"aa", b"y": b"e", b"e": [201, b"oops"]},
    ]
    encoded = [krpc.encode(q) for q in queries]
    return ([b"\x00" + packet for packet in encoded] + [b"\x01" + packet for packet in encoded]
            + [b"\x02" + bencode.encode(reply) for reply in replies])


if __name__ == "__main__":
    harness.main(TestOneInput)
