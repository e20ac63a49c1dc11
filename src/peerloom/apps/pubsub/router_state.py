"""What the GossipSub router's parts share: its events, the peer-score interface it calls, and the router state
(peers, subscriptions, mesh, fanout, backoffs, gossip promises) with the outbox that batches control messages.

router.py handles RPCs and the application's calls, router_heartbeat.py runs the heartbeat; both work on one
`RouterState`. Peer collections are dicts used as ordered sets, so that a seeded random generator gives the same
choices on every run (a set of PeerIds iterates in an order that depends on the hash seed).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from peerloom.apps.pubsub.message import RejectReason
from peerloom.apps.pubsub.params import MESHSUB_V10, MESHSUB_V12, GossipParams
from peerloom.apps.pubsub.rpc import RPC, ControlMessage, Graft, IHave, Message, PeerInfo, Prune, encode_rpc
from peerloom.identity import PeerId


class Validation(enum.Enum):
    """The application's verdict on a message (pubsub spec, "Message validation")."""

    ACCEPT = "accept"
    REJECT = "reject"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class SendRpc:
    """Send `data`, an encoded RPC without its length prefix, to `peer`."""

    peer: PeerId
    data: bytes


@dataclass(frozen=True, slots=True)
class Validate:
    """A new, correctly signed message awaits the application's verdict: answer with `report_validation`."""

    msg_id: bytes
    message: Message
    source: PeerId


@dataclass(frozen=True, slots=True)
class Deliver:
    """A new, accepted message on a topic we subscribe to."""

    msg_id: bytes
    message: Message
    source: PeerId


@dataclass(frozen=True, slots=True)
class Dial:
    """A peer exchange suggestion (gossipsub v1.1 PX) from a well-scored peer: connect to it."""

    peer: PeerId
    signed_record: bytes | None


Event = SendRpc | Validate | Deliver | Dial


@dataclass(frozen=True, slots=True)
class PublishResult:
    msg_id: bytes
    peers: int  # peers the message was sent to (0 is not an error)


class PeerScoring(Protocol):
    """The methods of score.PeerScore the router calls (the contract of issue 14), and nothing more."""

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
    def score(self, peer: PeerId, now: float) -> float: ...
    def refresh(self, now: float) -> None: ...


@dataclass(slots=True)
class PeerState:
    """One connected peer: how it speaks, what it subscribes to, and its per-heartbeat counters."""

    peer: PeerId
    protocol: str
    outbound: bool
    topics: dict[str, None] = field(default_factory=dict)
    dont_want: dict[bytes, int] = field(default_factory=dict)  # IDONTWANT ids -> heartbeat tick received
    dont_want_count: int = 0  # IDONTWANT ids accepted this heartbeat
    ihave_count: int = 0  # IHAVE messages handled this heartbeat
    asked: int = 0  # ids we asked it for (IWANT) this heartbeat

    @property
    def v11(self) -> bool:
        """Understands PRUNE backoff and PX (gossipsub v1.1)."""
        return self.protocol != MESHSUB_V10

    @property
    def v12(self) -> bool:
        """Understands IDONTWANT (gossipsub v1.2)."""
        return self.protocol == MESHSUB_V12


@dataclass(slots=True)
class _Pending:
    graft: list[Graft] = field(default_factory=list)
    prune: list[Prune] = field(default_factory=list)
    ihave: list[IHave] = field(default_factory=list)


class RouterState:
    """The router's tables and its output; the parts of the router read and change them through these names."""

    def __init__(self, self_id: PeerId, params: GossipParams, score: PeerScoring, rng: random.Random) -> None:
        self.self_id = self_id
        self.params = params
        self.score = score
        self.rng = rng
        self.peers: dict[PeerId, PeerState] = {}
        self.subscriptions: dict[str, None] = {}
        self.topic_peers: dict[str, dict[PeerId, None]] = {}  # peers that announced a subscription
        self.mesh: dict[str, dict[PeerId, None]] = {}  # one entry per topic we subscribe to
        self.fanout: dict[str, dict[PeerId, None]] = {}
        self.fanout_last_publish: dict[str, float] = {}
        self.backoff: dict[tuple[str, PeerId], float] = {}  # (topic, peer) -> time until which no GRAFT
        self.promises: dict[bytes, dict[PeerId, float]] = {}  # IWANT asked -> peer -> deadline for the message
        self.heartbeat_ticks = 0
        self.events: list[Event] = []
        self.counters: dict[str, int] = {}
        self._pending: dict[PeerId, _Pending] = {}

    # --- scores and backoff -------------------------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def in_backoff(self, topic: str, peer: PeerId, now: float) -> bool:
        """Whether we must not GRAFT peer yet: its backoff, plus backoff_slack so that a GRAFT never reaches a peer
        whose clock or heartbeat runs a little behind ours before its own backoff ends (it would penalise us)."""
        until = self.backoff.get((topic, peer))
        return until is not None and until + self.params.backoff_slack > now

    def add_backoff(self, topic: str, peer: PeerId, seconds: float, now: float) -> None:
        """Refuse GRAFTs to/from peer on topic for `seconds` (an existing longer backoff stays)."""
        until = now + seconds
        if self.backoff.get((topic, peer), 0.0) < until:
            self.backoff[(topic, peer)] = until

    def sample(self, peers: Iterable[PeerId], k: int) -> list[PeerId]:
        """Up to k of peers, chosen at random."""
        pool = list(peers)
        if len(pool) <= k:
            self.rng.shuffle(pool)
            return pool
        return self.rng.sample(pool, k)

    # --- mesh changes -------------------------------------------------------------------------------------------

    def graft(self, topic: str, peer: PeerId, now: float) -> None:
        """Add peer to the topic's mesh and queue our GRAFT to it."""
        self.mesh[topic][peer] = None
        self.score.graft(peer, topic, now)
        self.queue_graft(peer, topic)

    def prune(self, topic: str, peer: PeerId, now: float, *, px: bool, backoff: float | None = None) -> None:
        """Drop peer from the topic's mesh (if there), back off from it, and queue our PRUNE to it."""
        mesh = self.mesh.get(topic)
        if mesh is not None and peer in mesh:
            del mesh[peer]
            self.score.prune(peer, topic, now)
        seconds = self.params.prune_backoff if backoff is None else backoff
        self.add_backoff(topic, peer, seconds, now)
        self.queue_prune(peer, self.make_prune(peer, topic, seconds, px=px, now=now))

    def make_prune(self, peer: PeerId, topic: str, backoff: float, *, px: bool, now: float) -> Prune:
        """Our PRUNE for peer: with the backoff and, when `do_px` and px, other well-scored peers of the topic
        (v1.1 "Peer Exchange"); a v1.0 peer gets the bare PRUNE it understands."""
        state = self.peers.get(peer)
        if state is None or not state.v11:
            return Prune(topic)
        infos: tuple[PeerInfo, ...] = ()
        if px and self.params.do_px:
            candidates = (p for p in self.topic_peers.get(topic, ()) if p != peer and self.score.score(p, now) >= 0)
            infos = tuple(PeerInfo(p.to_bytes()) for p in self.sample(candidates, self.params.prune_peers))
        return Prune(topic, infos, int(backoff))

    # --- output -------------------------------------------------------------------------------------------------

    def send(self, peer: PeerId, rpc: RPC) -> None:
        self.events.append(SendRpc(peer, encode_rpc(rpc)))
        self.count("rpcs_sent")

    def send_raw(self, peer: PeerId, data: bytes) -> None:
        self.events.append(SendRpc(peer, data))
        self.count("rpcs_sent")

    def _pending_for(self, peer: PeerId) -> _Pending:
        pending = self._pending.get(peer)
        if pending is None:
            pending = self._pending[peer] = _Pending()
        return pending

    def queue_graft(self, peer: PeerId, topic: str) -> None:
        self._pending_for(peer).graft.append(Graft(topic))

    def queue_prune(self, peer: PeerId, prune: Prune) -> None:
        self._pending_for(peer).prune.append(prune)

    def queue_ihave(self, peer: PeerId, ihave: IHave) -> None:
        self._pending_for(peer).ihave.append(ihave)

    def flush_control(self) -> None:
        """One RPC per peer with everything queued for it (the heartbeat's GRAFT, PRUNE and IHAVE piggybacked)."""
        for peer, pending in self._pending.items():
            if peer in self.peers:
                control = ControlMessage(ihave=tuple(pending.ihave), graft=tuple(pending.graft),
                                         prune=tuple(pending.prune))
                self.count("grafts_sent", len(pending.graft))
                self.count("prunes_sent", len(pending.prune))
                self.count("ihaves_sent", len(pending.ihave))
                self.send(peer, RPC(control=control))
        self._pending.clear()
