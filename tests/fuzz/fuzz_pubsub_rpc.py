"""atheris fuzz target for the pubsub RPC protobuf (rpc.py) and the StrictSign checks on what it decodes.

Run: `python tests/fuzz/fuzz_pubsub_rpc.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target,
the rest is its input. `decode_rpc` may raise only PubsubError and must respect every bound of the limits it was
given; what it accepts re-encodes to an RPC that decodes the same. Each decoded message's StrictSign check may raise
only InvalidMessage, and a message id exists for every message that passes it. A GossipSub router fed the input as
an RPC from a mesh peer raises nothing at all, then and at its next heartbeat.
"""

from __future__ import annotations

import random

import harness
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peerloom.apps.pubsub.message import InvalidMessage, RejectReason, message_id, sign_message, verify_message
from peerloom.apps.pubsub.router import GossipSub
from peerloom.apps.pubsub.rpc import (
    RPC,
    ControlMessage,
    Graft,
    IDontWant,
    IHave,
    IWant,
    PeerInfo,
    Prune,
    PubsubError,
    RpcLimits,
    SubOpts,
    decode_rpc,
    encode_rpc,
)
from peerloom.identity import Identity, PeerId

_IDENTITY = Identity(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
_SMALL = RpcLimits(
    max_rpc_size=4096, max_messages=3, max_subscriptions=3, max_control_messages=4, max_control_ids=5,
    max_idontwant_ids=2, max_peer_infos=2, max_topic_len=16, max_message_id_len=48,
)


def _check_bounds(rpc: RPC, limits: RpcLimits) -> None:
    assert len(rpc.publish) <= limits.max_messages and len(rpc.subscriptions) <= limits.max_subscriptions
    topics = [s.topic for s in rpc.subscriptions] + [m.topic for m in rpc.publish]
    control = rpc.control or ControlMessage()
    entries = (control.ihave, control.iwant, control.graft, control.prune, control.idontwant)
    assert sum(len(e) for e in entries) <= limits.max_control_messages
    assert sum(len(i.message_ids) for i in control.ihave) <= limits.max_control_ids
    assert sum(len(i.message_ids) for i in control.iwant) <= limits.max_control_ids
    assert sum(len(i.message_ids) for i in control.idontwant) <= limits.max_idontwant_ids
    assert sum(len(p.peers) for p in control.prune) <= limits.max_peer_infos
    topics += [i.topic for i in control.ihave] + [g.topic for g in control.graft] + [p.topic for p in control.prune]
    assert all(len(t.encode()) <= limits.max_topic_len for t in topics)
    ids = [i for group in (*control.ihave, *control.iwant, *control.idontwant) for i in group.message_ids]
    assert all(len(i) <= limits.max_message_id_len for i in ids)


def _decode(data: bytes, limits: RpcLimits) -> RPC:
    rpc = decode_rpc(data, limits)
    _check_bounds(rpc, limits)
    again = encode_rpc(rpc)
    assert decode_rpc(again, RpcLimits(max_rpc_size=len(again))) == rpc
    return rpc


def _rpc(data: bytes) -> None:
    _decode(data, RpcLimits())


def _rpc_small_limits(data: bytes) -> None:
    _decode(data, _SMALL)


def _messages(data: bytes) -> None:
    for msg in _decode(data, RpcLimits()).publish:
        try:
            verify_message(msg)
        except InvalidMessage:
            continue
        assert len(message_id(msg)) == 44


class _NeutralScore:
    """Every peer scores 0: the router's PeerScoring interface without score.py."""

    def add_peer(self, peer: PeerId, now: float) -> None: ...
    def remove_peer(self, peer: PeerId, now: float) -> None: ...
    def set_ip(self, peer: PeerId, ip: str | None) -> None: ...
    def graft(self, peer: PeerId, topic: str, now: float) -> None: ...
    def prune(self, peer: PeerId, topic: str, now: float) -> None: ...
    def validate_message(self, peer: PeerId, msg_id: bytes, topic: str, now: float) -> None: ...
    def deliver_message(self, peer: PeerId, msg_id: bytes, topic: str, now: float) -> None: ...
    def reject_message(self, peer: PeerId, msg_id: bytes, topic: str, reason: RejectReason, now: float) -> None: ...
    def duplicate_message(self, peer: PeerId, msg_id: bytes, topic: str, now: float) -> None: ...
    def add_penalty(self, peer: PeerId, count: int) -> None: ...
    def refresh(self, now: float) -> None: ...

    def score(self, peer: PeerId, now: float) -> float:
        return 0.0


_PEERS = [Identity(Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32)).peer_id for i in (1, 2)]


def _router(data: bytes) -> None:
    router = GossipSub(_IDENTITY, score=_NeutralScore(), rng=random.Random(0))
    router.subscribe("topic", 0.0)
    join = encode_rpc(RPC((SubOpts(True, "topic"),), control=ControlMessage(graft=(Graft("topic"),))))
    for i, peer in enumerate(_PEERS):
        router.add_peer(peer, "/meshsub/1.2.0", outbound=bool(i), ip=None, now=0.0)
        router.handle_rpc(peer, join, 0.0)
    router.handle_rpc(_PEERS[0], data, 0.5)
    router.tick(2.0)
    router.take_events()


TestOneInput = harness.Pick(
    (_rpc, PubsubError),
    (_rpc_small_limits, PubsubError),
    (_messages, PubsubError),
    (_router, ()),
)


def seeds() -> list[bytes]:
    """Valid RPCs for every target, to start a corpus from."""
    signed = sign_message(_IDENTITY, "topic", b"hello", bytes(range(8)))
    full = RPC(
        subscriptions=(SubOpts(True, "topic"), SubOpts(False, "other")),
        publish=(signed,),
        control=ControlMessage(
            ihave=(IHave("topic", (b"a" * 44, b"b")),),
            iwant=(IWant((b"c",)),),
            graft=(Graft("topic"),),
            prune=(Prune("topic", (PeerInfo(_IDENTITY.peer_id.to_bytes(), b"rec"),), 60),),
            idontwant=(IDontWant((b"d",)),),
        ),
    )
    return [
        b"\x00" + encode_rpc(full),
        b"\x01" + encode_rpc(full),
        b"\x02" + encode_rpc(RPC(publish=(signed,))),
        b"\x03" + encode_rpc(full),
    ]


if __name__ == "__main__":
    harness.main(TestOneInput)
