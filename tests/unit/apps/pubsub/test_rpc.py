"""The pubsub RPC protobuf (pubsub/README.md "The RPC", gossipsub v1.0-v1.2 control messages): round trips, the
field numbers other implementations use, protobuf's leniencies, and every bound of RpcLimits."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.mutations import mutated

from peerloom.apps.pubsub.rpc import (
    RPC,
    ControlMessage,
    Graft,
    IDontWant,
    IHave,
    IWant,
    Message,
    PeerInfo,
    Prune,
    PubsubError,
    RpcLimits,
    SubOpts,
    decode_rpc,
    encode_message,
    encode_publish,
    encode_rpc,
    encode_rpcs,
)
from peerloom.codec.protobuf import ProtobufError, encode_bytes_field, encode_varint_field, iter_fields

FULL = RPC(
    subscriptions=(SubOpts(True, "blocks"), SubOpts(False, "txs")),
    publish=(
        Message("blocks", b"payload", b"\x00\x24" + bytes(36), bytes(8), bytes(64), b"\x08\x01"),
        Message("txs"),
    ),
    control=ControlMessage(
        ihave=(IHave("blocks", (b"id1", b"id2")),),
        iwant=(IWant((b"id3",)),),
        graft=(Graft("blocks"),),
        prune=(Prune("txs", (PeerInfo(b"peer", b"record"), PeerInfo()), 60), Prune("blocks")),
        idontwant=(IDontWant((b"id4", b"id5")),),
    ),
)


def test_round_trip_of_every_field() -> None:
    assert decode_rpc(encode_rpc(FULL)) == FULL
    assert decode_rpc(b"") == RPC()
    assert decode_rpc(encode_rpc(RPC(control=ControlMessage()))) == RPC(control=ControlMessage())


def test_field_numbers_match_rpc_proto() -> None:
    """Hand-built bytes with the spec's numbers (SubOpts 1/2, Message 1..6, control 1..5, PRUNE backoff 3)."""
    msg = (
        encode_bytes_field(1, b"F") + encode_bytes_field(2, b"D") + encode_bytes_field(3, b"S")
        + encode_bytes_field(4, b"t") + encode_bytes_field(5, b"G") + encode_bytes_field(6, b"K")
    )
    prune = encode_bytes_field(1, b"t") + encode_bytes_field(2, encode_bytes_field(1, b"P")) + encode_varint_field(3, 7)
    control = (
        encode_bytes_field(1, encode_bytes_field(1, b"t") + encode_bytes_field(2, b"i"))
        + encode_bytes_field(2, encode_bytes_field(1, b"w"))
        + encode_bytes_field(3, encode_bytes_field(1, b"g"))
        + encode_bytes_field(4, prune)
        + encode_bytes_field(5, encode_bytes_field(1, b"d"))
    )
    data = (
        encode_bytes_field(1, encode_varint_field(1, 1) + encode_bytes_field(2, b"t"))
        + encode_bytes_field(2, msg)
        + encode_bytes_field(3, control)
    )
    rpc = decode_rpc(data)
    assert rpc == RPC(
        (SubOpts(True, "t"),),
        (Message("t", b"D", b"F", b"S", b"G", b"K"),),
        ControlMessage((IHave("t", (b"i",)),), (IWant((b"w",)),), (Graft("g"),), (Prune("t", (PeerInfo(b"P"),), 7),),
                       (IDontWant((b"d",)),)),
    )
    assert encode_rpc(rpc) == data


def test_a_decoded_message_keeps_its_wire_bytes_for_forwarding() -> None:
    """A message without a data field is forwarded as it came (its signature covers that form), not re-encoded."""
    wire = encode_bytes_field(4, b"t") + encode_bytes_field(99, b"unknown")
    (msg,) = decode_rpc(encode_bytes_field(2, wire)).publish
    assert msg == Message("t") and msg.wire == wire and encode_message(msg) == wire
    assert encode_message(Message("t")) == encode_bytes_field(2, b"") + encode_bytes_field(4, b"t")
    assert encode_publish([wire, wire]) == encode_rpc(RPC(publish=(msg, msg)))
    changed = dataclasses.replace(msg, data=b"new")  # a changed message is encoded afresh, not sent as it came
    assert changed.wire is None and decode_rpc(encode_rpc(RPC(publish=(changed,)))).publish == (changed,)


def test_protobuf_leniencies() -> None:
    """Unknown fields skipped, the last scalar wins, and a control message sent in pieces is merged."""
    sub = encode_varint_field(1, 1) + encode_bytes_field(2, b"a") + encode_bytes_field(2, b"b")
    sub += encode_varint_field(9, 1)
    part1 = encode_bytes_field(3, encode_bytes_field(3, encode_bytes_field(1, b"x")))
    part2 = encode_bytes_field(3, encode_bytes_field(3, encode_bytes_field(1, b"y")))
    rpc = decode_rpc(encode_bytes_field(1, sub) + part1 + encode_bytes_field(15, b"?") + part2)
    assert rpc.subscriptions == (SubOpts(True, "b"),)
    assert rpc.control == ControlMessage(graft=(Graft("x"), Graft("y")))


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x05ab",  # truncated
        encode_varint_field(2, 1),  # publish as a varint
        encode_bytes_field(1, encode_bytes_field(1, b"x")),  # SubOpts.subscribe as bytes
        encode_bytes_field(1, encode_bytes_field(2, b"\xff\xfe")),  # topic not UTF-8
        encode_bytes_field(3, encode_bytes_field(4, encode_bytes_field(3, b"x"))),  # PRUNE.backoff as bytes
        b"\x0b",  # a group
    ],
)
def test_malformed_input_raises_pubsub_error(data: bytes) -> None:
    with pytest.raises(PubsubError):
        decode_rpc(data)


def _ihave(n: int) -> RPC:
    return RPC(control=ControlMessage(ihave=(IHave("t", tuple(b"%d" % i for i in range(n))),)))


@pytest.mark.parametrize(
    ("limits", "within", "beyond"),
    [
        (RpcLimits(max_rpc_size=100), RPC(publish=(Message("t", bytes(90)),)), RPC(publish=(Message("t", bytes(95)),))),
        (RpcLimits(max_messages=2), RPC(publish=(Message("t"),) * 2), RPC(publish=(Message("t"),) * 3)),
        (RpcLimits(max_subscriptions=1), RPC((SubOpts(True, "t"),)), RPC((SubOpts(True, "t"),) * 2)),
        (RpcLimits(max_control_messages=2), RPC(control=ControlMessage(graft=(Graft("a"), Graft("b")))),
         RPC(control=ControlMessage(graft=(Graft("a"),), prune=(Prune("a"), Prune("b"))))),
        (RpcLimits(max_control_ids=3), _ihave(3), _ihave(4)),
        (RpcLimits(max_control_ids=3), RPC(control=ControlMessage(iwant=(IWant((b"a", b"b")), IWant((b"c",))))),
         RPC(control=ControlMessage(iwant=(IWant((b"a", b"b")), IWant((b"c", b"d")))))),
        (RpcLimits(max_idontwant_ids=1), RPC(control=ControlMessage(idontwant=(IDontWant((b"a",)),))),
         RPC(control=ControlMessage(idontwant=(IDontWant((b"a", b"b")),)))),
        (RpcLimits(max_peer_infos=1), RPC(control=ControlMessage(prune=(Prune("t", (PeerInfo(b"p"),)),))),
         RPC(control=ControlMessage(prune=(Prune("t", (PeerInfo(b"p"),)), Prune("u", (PeerInfo(b"q"),)))))),
        (RpcLimits(max_topic_len=3), RPC((SubOpts(True, "abc"),)), RPC((SubOpts(True, "abcd"),))),
        (RpcLimits(max_message_id_len=2), RPC(control=ControlMessage(iwant=(IWant((b"ab",)),))),
         RPC(control=ControlMessage(iwant=(IWant((b"abc",)),)))),
    ],
)
def test_each_limit_is_enforced_at_its_edge(limits: RpcLimits, within: RPC, beyond: RPC) -> None:
    assert decode_rpc(encode_rpc(within), limits) == within
    with pytest.raises(PubsubError):
        decode_rpc(encode_rpc(beyond), limits)


def test_an_oversized_rpc_is_refused_before_parsing() -> None:
    with pytest.raises(PubsubError, match="limit"):
        decode_rpc(memoryview(b"\xff" * (RpcLimits().max_rpc_size + 1)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), mutated(st.just(encode_rpc(FULL)))))
def test_random_and_damaged_input_raises_only_pubsub_error(data: bytes) -> None:
    """And the RPC reader's own record scanner agrees with codec.protobuf on which top-level input is well formed."""
    try:
        top_level = list(iter_fields(data))
    except ProtobufError:
        top_level = None
    try:
        rpc = decode_rpc(data)
    except PubsubError:
        return
    assert top_level is not None
    assert decode_rpc(encode_rpc(rpc)) == rpc


def test_encode_rpcs_packs_within_the_size_limit_control_first() -> None:
    messages = [encode_message(Message("t", bytes(n))) for n in (300, 300, 300, 2000)]
    control = ControlMessage(iwant=(IWant((b"x",)),))
    rpcs = encode_rpcs(messages, control, 700)
    decoded = [decode_rpc(r) for r in rpcs]
    assert [len(r) <= 700 for r in rpcs] == [True, True, False]  # the 2000-byte message goes alone
    assert decoded[0].control == control and [len(d.publish) for d in decoded] == [2, 1, 1]
    assert [m.data for d in decoded for m in d.publish] == [bytes(n) for n in (300, 300, 300, 2000)]
    assert encode_rpcs([], None, 100) == []
