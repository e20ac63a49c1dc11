"""One GossipSub router facing scripted peers (LoneRouter): what it does with each kind of input — messages
(signature checks, validation, IDONTWANT, seen cache), control messages (IHAVE/IWANT limits, GRAFT in backoff,
PRUNE with PX) and hostile input (oversized RPCs, graylisted peers)."""

from __future__ import annotations

import dataclasses

import pytest
from support.gossip_net import LoneRouter, make_identity

from peerloom.apps.pubsub.message import RejectReason, message_id, sign_message
from peerloom.apps.pubsub.params import MESHSUB_V10, MESHSUB_V11, GossipParams
from peerloom.apps.pubsub.router import Deliver, Dial, Validate, Validation
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
    RpcLimits,
    SubOpts,
)

AUTHOR = make_identity(99)


def signed(data: bytes = b"payload", seqno: int = 1, topic: str = "t") -> Message:
    return sign_message(AUTHOR, topic, data, seqno.to_bytes(8, "big"))


def meshed(n: int = 3, *, params: GossipParams | None = None, validate: bool = False, **kw: object) -> LoneRouter:
    """A router subscribed to "t" whose mesh holds scripted peers 1..n (they announced "t" and GRAFTed)."""
    lone = LoneRouter(params=params, validate=validate)
    lone.router.subscribe("t", lone.now)
    for k in range(1, n + 1):
        lone.add(k, topics=("t",), **kw)  # type: ignore[arg-type]
        lone.send(k, RPC(control=ControlMessage(graft=(Graft("t"),))))
    assert len(lone.router.mesh_peers("t")) == n
    lone.sent()
    return lone


def published_to(sent: dict[int, list[RPC]]) -> dict[int, list[Message]]:
    return {k: [m for rpc in rpcs for m in rpc.publish] for k, rpcs in sent.items() if any(r.publish for r in rpcs)}


# --- messages -----------------------------------------------------------------------------------------------------


def test_a_new_message_is_delivered_once_and_forwarded_to_the_mesh_but_not_back() -> None:
    lone = meshed(3)
    msg = signed()
    lone.send(1, RPC(publish=(msg,)))
    sent = lone.sent()
    assert sorted(published_to(sent)) == [2, 3]
    assert [type(e) for e in lone.events] == [Deliver]
    assert lone.events[0].msg_id == message_id(msg) and lone.events[0].source == lone.id(1)
    lone.send(2, RPC(publish=(msg,)))  # a duplicate: not delivered, not forwarded, reported to the score
    assert published_to(lone.sent()) == {} and len(lone.events) == 1
    assert lone.score.duplicates == [(lone.id(2), message_id(msg))]
    assert lone.score.delivered == [(lone.id(1), message_id(msg))]


def test_the_message_is_forwarded_as_the_bytes_it_came_in() -> None:
    """A message whose author left out the empty data field is relayed in that form, which its signature covers."""
    lone = meshed(2)
    msg = signed(b"")
    lone.send(1, RPC(publish=(msg,)))
    (forwarded,) = published_to(lone.sent())[2]
    assert forwarded == msg


def test_the_author_does_not_get_its_own_message_back() -> None:
    lone = LoneRouter()
    lone.router.subscribe("t", lone.now)
    author = lone.add(1, topics=("t",))
    lone.add(2, topics=("t",))
    lone.advance(1)  # the heartbeat grafts both
    lone.sent()
    lone.send(2, RPC(publish=(sign_message(lone.peers[1], "t", b"x", bytes(8)),)))
    assert author in lone.router.mesh_peers("t")
    assert sorted(published_to(lone.sent())) == []  # 2 is the source, 1 the author


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda m: dataclasses.replace(m, data=b"forged"), RejectReason.INVALID_SIGNATURE),
        (lambda m: dataclasses.replace(m, signature=None), RejectReason.MISSING_SIGNATURE),
        (lambda m: dataclasses.replace(m, seqno=b"\x01"), RejectReason.INVALID_SIGNATURE),
        (lambda m: dataclasses.replace(m, seqno=None), RejectReason.INVALID_SIGNATURE),
    ],
)
def test_a_message_that_fails_strictsign_is_rejected_not_delivered_nor_forwarded(mangle, reason) -> None:
    lone = meshed(2)
    lone.send(1, RPC(publish=(mangle(signed()),)))
    assert published_to(lone.sent()) == {} and lone.events == []
    assert [(p, why) for p, _, _, why in lone.score.rejected] == [(lone.id(1), reason)]


def test_a_forgery_sent_first_does_not_shadow_the_genuine_message() -> None:
    """A bad signature under the genuine message's id (author key and next seqno) must not mark that id seen."""
    lone = meshed(2)
    genuine = signed(b"genuine")
    lone.send(1, RPC(publish=(dataclasses.replace(genuine, data=b"forged"),)))
    lone.send(2, RPC(publish=(genuine,)))
    lone.sent()
    assert [(type(e), e.message) for e in lone.events] == [(Deliver, genuine)]
    assert lone.score.duplicates == []


def test_a_message_claiming_to_be_ours_is_rejected() -> None:
    lone = meshed(1)
    lone.send(1, RPC(publish=(sign_message(lone.identity, "t", b"x", bytes(8)),)))
    assert [why for *_, why in lone.score.rejected] == [RejectReason.SELF_ORIGIN] and lone.events == []


def test_our_own_message_coming_back_is_a_duplicate() -> None:
    lone = meshed(1)
    result = lone.router.publish("t", b"mine", lone.now)
    assert result.peers == 1
    (msg,) = published_to(lone.sent())[1]
    lone.send(1, RPC(publish=(msg,)))
    assert lone.score.duplicates == [(lone.id(1), result.msg_id)] and lone.events == []


def test_messages_of_topics_we_do_not_subscribe_are_dropped() -> None:
    lone = meshed(1)
    lone.send(1, RPC(publish=(signed(topic="other"),)))
    assert lone.sent() == {} and lone.events == [] and lone.score.validated == []


def test_the_seen_cache_forgets_after_seen_ttl() -> None:
    lone = meshed(1, params=GossipParams(seen_ttl=10.0))
    msg = signed()
    lone.send(1, RPC(publish=(msg,)))
    lone.advance(5)
    lone.send(1, RPC(publish=(msg,)))
    assert len(lone.score.duplicates) == 1 and len([e for e in lone.take() if isinstance(e, Deliver)]) == 1
    lone.advance(10)
    lone.send(1, RPC(publish=(msg,)))
    assert len([e for e in lone.take() if isinstance(e, Deliver)]) == 1  # new again after the TTL
    assert len(lone.score.delivered) == 2


# --- validation hook ----------------------------------------------------------------------------------------------


def test_validation_accept_reject_ignore() -> None:
    lone = meshed(2, validate=True)
    messages = [signed(seqno=s) for s in (1, 2, 3)]
    lone.send(1, RPC(publish=tuple(messages)))
    sent = lone.sent()
    assert published_to(sent) == {}  # nothing forwarded before the verdict
    validations = [e for e in lone.events if isinstance(e, Validate)]
    assert [v.message for v in validations] == messages and {v.source for v in validations} == {lone.id(1)}
    lone.events.clear()
    verdicts = (Validation.ACCEPT, Validation.REJECT, Validation.IGNORE)
    for validation, verdict in zip(validations, verdicts, strict=True):
        lone.router.report_validation(validation.msg_id, validation.source, verdict, lone.now)
    sent = published_to(lone.sent())
    assert sent == {2: [messages[0]]}
    assert [(type(e), e.message) for e in lone.events] == [(Deliver, messages[0])]
    assert [(m, why) for _, m, _, why in lone.score.rejected] == [
        (validations[1].msg_id, RejectReason.VALIDATION_REJECT),
        (validations[2].msg_id, RejectReason.VALIDATION_IGNORE),
    ]
    lone.router.report_validation(validations[0].msg_id, validations[0].source, Validation.ACCEPT, lone.now)
    assert lone.sent() == {}  # a verdict for nothing pending does nothing


def test_a_message_accepted_after_we_left_its_topic_is_not_delivered() -> None:
    lone = meshed(1, validate=True)
    lone.send(1, RPC(publish=(signed(),)))
    (validation,) = [e for e in lone.take() if isinstance(e, Validate)]
    lone.router.unsubscribe("t", lone.now)
    lone.router.report_validation(validation.msg_id, validation.source, Validation.ACCEPT, lone.now)
    assert [e for e in lone.take() if isinstance(e, Deliver)] == []
    assert lone.score.delivered == [(lone.id(1), validation.msg_id)]


def test_an_unanswered_validation_is_dropped_after_the_timeout() -> None:
    lone = meshed(1, params=GossipParams(validation_timeout=5.0), validate=True)
    lone.send(1, RPC(publish=(signed(),)))
    (validation,) = [e for e in lone.take() if isinstance(e, Validate)]
    lone.advance(6)
    lone.router.report_validation(validation.msg_id, validation.source, Validation.ACCEPT, lone.now)
    assert [e for e in lone.take() if isinstance(e, Deliver)] == []


# --- IDONTWANT (v1.2) ---------------------------------------------------------------------------------------------


def test_idontwant_suppresses_the_forward_to_that_peer() -> None:
    lone = meshed(3)
    msg = signed(b"x" * 600)
    lone.send(3, RPC(control=ControlMessage(idontwant=(IDontWant((message_id(msg),)),))))
    lone.send(1, RPC(publish=(msg,)))
    assert sorted(published_to(lone.sent())) == [2]


def test_a_large_new_message_makes_us_send_idontwant_to_v12_mesh_peers_only() -> None:
    lone = LoneRouter()
    lone.router.subscribe("t", lone.now)
    for k, protocol in ((1, None), (2, None), (3, MESHSUB_V11)):
        lone.add(k, topics=("t",), **({"protocol": protocol} if protocol else {}))
        lone.send(k, RPC(control=ControlMessage(graft=(Graft("t"),))))
    lone.sent()
    small, large = signed(b"x" * 511, seqno=1), signed(b"x" * 512, seqno=2)
    lone.send(1, RPC(publish=(small,)))
    assert not any(r.control for rpcs in lone.sent().values() for r in rpcs)
    lone.send(1, RPC(publish=(large,)))
    dont_want = {
        k: [i for r in rpcs if r.control for d in r.control.idontwant for i in d.message_ids]
        for k, rpcs in lone.sent().items()
    }
    assert dont_want == {2: [message_id(large)], 3: []}  # not to the source, not to the v1.1 peer


# --- hostile input ------------------------------------------------------------------------------------------------


def test_an_oversized_rpc_is_refused_whole() -> None:
    lone = meshed(2, params=GossipParams(rpc_limits=RpcLimits(max_rpc_size=1000)))
    lone.send(1, RPC(publish=(signed(b"x" * 2000),)))
    assert lone.sent() == {} and lone.events == [] and lone.router.stats()["rpcs_invalid"] == 1
    lone.send(1, RPC(publish=(signed(b"x" * 500),)))
    lone.sent()
    assert len(lone.events) == 1


def test_garbage_is_dropped_without_raising() -> None:
    lone = meshed(1)
    lone.send(1, b"\x0a\xff\xff\xff\xff\x0f")
    assert lone.router.stats()["rpcs_invalid"] == 1


def test_a_graylisted_peer_is_ignored_entirely() -> None:
    lone = meshed(2)
    lone.score.scores[lone.id(1)] = -81.0  # below graylist_threshold (-80)
    lone.send(1, RPC(publish=(signed(),), control=ControlMessage(prune=(Prune("t"),))))
    assert lone.events == [] and lone.sent() == {} and lone.id(1) in lone.router.mesh_peers("t")
    assert lone.router.stats()["rpcs_graylisted"] == 1
    lone.score.scores[lone.id(1)] = -79.0
    lone.send(1, RPC(publish=(signed(),)))
    assert len(published_to(lone.sent())) == 1 and len(lone.events) == 1  # above it: heard again


def test_rpcs_from_unknown_peers_are_ignored() -> None:
    lone = meshed(1)
    lone.peers[7] = make_identity(7)
    lone.send(7, RPC(publish=(signed(),)))
    assert lone.sent() == {} and lone.events == []


# --- gossip: IHAVE and IWANT --------------------------------------------------------------------------------------


def test_ihave_asks_only_for_unseen_messages_of_our_topics() -> None:
    lone = meshed(1)
    seen = signed(seqno=1)
    lone.send(1, RPC(publish=(seen,)))
    lone.sent()
    lone.send(1, RPC(control=ControlMessage(ihave=(IHave("t", (message_id(seen), b"new")), IHave("other", (b"x",))))))
    (reply,) = lone.sent()[1]
    assert reply.control == ControlMessage(iwant=(IWant((b"new",)),))


def test_ihave_limits_per_heartbeat() -> None:
    lone = meshed(1, params=GossipParams(max_ihave_messages=2, max_ihave_length=3))
    for ids in ([b"a", b"b"], [b"c", b"d"], [b"e"]):
        lone.send(1, RPC(control=ControlMessage(ihave=(IHave("t", tuple(ids)),))))
    asked = [i for r in lone.sent().get(1, []) for w in r.control.iwant for i in w.message_ids]
    assert len(asked) == 3  # at most max_ihave_length ids, from at most max_ihave_messages IHAVEs
    lone.advance(1.5)  # a heartbeat resets the counts
    lone.sent()
    lone.send(1, RPC(control=ControlMessage(ihave=(IHave("t", (b"e",)),))))
    assert lone.sent()[1][0].control.iwant == (IWant((b"e",)),)


def test_no_iwant_to_a_peer_below_the_gossip_threshold() -> None:
    lone = meshed(1)
    lone.score.scores[lone.id(1)] = -11.0
    lone.send(1, RPC(control=ControlMessage(ihave=(IHave("t", (b"a",)),))))
    assert lone.sent() == {}


def test_iwant_is_answered_from_the_cache_at_most_gossip_retransmission_times() -> None:
    lone = meshed(1, params=GossipParams(gossip_retransmission=2))
    result = lone.router.publish("t", b"mine", lone.now)
    lone.sent()
    for _ in range(3):
        lone.send(1, RPC(control=ControlMessage(iwant=(IWant((result.msg_id, b"unknown")),))))
    answers = [len(r.publish) for r in lone.sent().get(1, [])]
    assert answers == [1, 1]
    lone.advance(GossipParams().mcache_len + 1)  # the message left the cache
    lone.sent()
    lone.send(1, RPC(control=ControlMessage(iwant=(IWant((result.msg_id,)),))))
    assert lone.sent() == {}


def test_iwant_is_not_answered_for_a_message_the_peer_said_it_does_not_want() -> None:
    lone = meshed(1)
    result = lone.router.publish("t", b"mine", lone.now)
    lone.sent()
    control = ControlMessage(idontwant=(IDontWant((result.msg_id,)),), iwant=(IWant((result.msg_id,)),))
    lone.send(1, RPC(control=control))
    assert lone.sent() == {}


# --- GRAFT and PRUNE ----------------------------------------------------------------------------------------------


def test_a_graft_during_backoff_is_refused_and_penalised() -> None:
    """The backoff of our PRUNE (refused GRAFT to a full mesh): a GRAFT within graft_flood_threshold of it costs
    two penalties, later one; each refusal renews the backoff; after it, the GRAFT is taken."""
    lone = meshed(12, params=GossipParams(prune_backoff=60.0, graft_flood_threshold=10.0))
    lone.add(13, topics=("t",))
    lone.send(13, RPC(control=ControlMessage(graft=(Graft("t"),))))  # refused: full mesh, inbound peer
    assert lone.score.penalties == {}
    lone.send(13, RPC(control=ControlMessage(graft=(Graft("t"),))))
    (reply,) = lone.sent()[13][-1:]
    assert reply.control.prune[0].topic == "t" and lone.id(13) not in lone.router.mesh_peers("t")
    assert lone.score.penalties == {lone.id(13): 2}
    lone.now += 11
    lone.send(13, RPC(control=ControlMessage(graft=(Graft("t"),))))
    assert lone.score.penalties == {lone.id(13): 3}
    lone.router.remove_peer(lone.id(1), lone.now)  # room in the mesh
    lone.now += 59
    lone.send(13, RPC(control=ControlMessage(graft=(Graft("t"),))))
    assert lone.id(13) not in lone.router.mesh_peers("t") and lone.score.penalties == {lone.id(13): 4}
    lone.now += 61
    lone.send(13, RPC(control=ControlMessage(graft=(Graft("t"),))))
    assert lone.id(13) in lone.router.mesh_peers("t") and lone.score.penalties == {lone.id(13): 4}


def test_a_graft_after_our_unsubscribe_prune_is_penalised_once() -> None:
    lone = meshed(1)
    lone.router.unsubscribe("t", lone.now)
    lone.router.subscribe("t", lone.now)
    lone.send(1, RPC(control=ControlMessage(graft=(Graft("t"),))))  # within the 10 s unsubscribe backoff
    assert lone.score.penalties == {lone.id(1): 1} and lone.router.mesh_peers("t") == []


def test_a_graft_is_refused_without_penalty_when_the_mesh_is_full_unless_outbound() -> None:
    lone = meshed(12)
    lone.add(13, topics=("t",))
    lone.add(14, topics=("t",), outbound=True)
    lone.sent()
    lone.send(13, RPC(control=ControlMessage(graft=(Graft("t"),))))
    lone.send(14, RPC(control=ControlMessage(graft=(Graft("t"),))))
    sent = lone.sent()
    assert sent[13][0].control.prune[0].backoff == 60 and 14 not in sent
    assert lone.id(14) in lone.router.mesh_peers("t") and lone.id(13) not in lone.router.mesh_peers("t")
    assert lone.score.penalties == {}


def test_grafts_for_unknown_topics_are_ignored() -> None:
    lone = meshed(1)
    lone.send(1, RPC(control=ControlMessage(graft=(Graft("unknown"),))))
    assert lone.sent() == {} and lone.router.mesh_peers("unknown") == []


def test_prune_removes_from_the_mesh_and_px_is_dialled_only_from_a_well_scored_peer() -> None:
    lone = meshed(2)
    suggestions = (PeerInfo(make_identity(50).peer_id.to_bytes(), b"record"), PeerInfo(b"junk"), PeerInfo())
    lone.send(1, RPC(control=ControlMessage(prune=(Prune("t", suggestions, 30),))))
    assert lone.router.mesh_peers("t") == [lone.id(2)] and lone.score.pruned == [(lone.id(1), "t")]
    assert [e for e in lone.take() if isinstance(e, Dial)] == []  # score 0 < accept_px_threshold (10)
    lone.score.scores[lone.id(2)] = 10.0
    lone.send(2, RPC(control=ControlMessage(prune=(Prune("t", suggestions, 30),))))
    assert [e for e in lone.take() if isinstance(e, Dial)] == [Dial(make_identity(50).peer_id, b"record")]


def test_our_prune_carries_px_when_do_px_and_not_to_v10_peers() -> None:
    lone = meshed(3, params=GossipParams(do_px=True))
    lone.add(4, topics=("t",), protocol=MESHSUB_V10)
    lone.send(4, RPC(control=ControlMessage(graft=(Graft("t"),))))
    lone.score.scores[lone.id(3)] = -1.0  # not suggested: negative score
    lone.sent()
    lone.router.unsubscribe("t", lone.now)
    prunes = {k: [p for r in rpcs if r.control for p in r.control.prune] for k, rpcs in lone.sent().items()}
    assert prunes[4] == [Prune("t")]  # v1.0: no backoff, no PX
    (to_1,) = prunes[1]
    assert to_1.backoff == 10 and {p.peer_id for p in to_1.peers} == {lone.id(2).to_bytes(), lone.id(4).to_bytes()}


def test_subscriptions_are_announced_to_every_peer_and_to_new_peers() -> None:
    lone = LoneRouter()
    lone.add(1)
    lone.router.subscribe("t", lone.now)
    assert lone.sent()[1] == [RPC(subscriptions=(SubOpts(True, "t"),))]
    lone.add(2)
    assert [s.topic for s in lone.sent()[2][0].subscriptions] == ["t"]
    lone.router.unsubscribe("t", lone.now)
    sent = lone.sent()
    assert all(not r.subscriptions[0].subscribe for k in (1, 2) for r in sent[k])
    assert lone.router.subscriptions == frozenset()


def test_an_unsubscribing_peer_leaves_topic_and_mesh() -> None:
    lone = meshed(2)
    lone.send(1, RPC(subscriptions=(SubOpts(False, "t"),)))
    assert lone.router.topic_peers("t") == [lone.id(2)] and lone.router.mesh_peers("t") == [lone.id(2)]
    lone.router.remove_peer(lone.id(2), lone.now)
    assert lone.router.topic_peers("t") == [] and lone.router.mesh_peers("t") == [] and lone.router.peers() == [
        lone.id(1)
    ]


def test_an_iwant_answer_is_split_into_rpcs_the_asker_accepts() -> None:
    lone = meshed(1, params=GossipParams(rpc_limits=RpcLimits(max_rpc_size=1500)))
    ids = [lone.router.publish("t", bytes(600), lone.now).msg_id for _ in range(3)]
    lone.sent()
    lone.send(1, RPC(control=ControlMessage(iwant=(IWant(tuple(ids)),))))
    replies = [e.data for e in lone.take()]
    assert len(replies) == 2 and all(len(r) <= 1500 for r in replies)


def test_publishing_a_message_too_large_for_an_rpc_is_refused() -> None:
    lone = meshed(1, params=GossipParams(rpc_limits=RpcLimits(max_rpc_size=1000)))
    with pytest.raises(ValueError):
        lone.router.publish("t", bytes(1000), lone.now)
    assert lone.router.publish("t", bytes(800), lone.now).peers == 1


def test_a_peer_is_remembered_in_at_most_max_peer_topics_topics() -> None:
    lone = LoneRouter(params=GossipParams(max_peer_topics=2))
    lone.add(1, topics=("a", "b", "c"))
    lone.send(1, RPC(subscriptions=(SubOpts(True, "a"), SubOpts(False, "b"), SubOpts(True, "d"))))
    assert [t for t in "abcd" if lone.router.topic_peers(t)] == ["a", "d"]
