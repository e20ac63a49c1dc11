"""GossipSub routers wired together in memory, on a fake clock: the test bed of the sans-I/O core.

`GossipNet` builds n routers with deterministic identities and seeded random generators, connects them, and moves
every `SendRpc` to the receiver's `handle_rpc` after `latency` seconds; `Deliver`, `Validate` and `Dial` events
are recorded per node. `run(seconds)` advances the clock, ticking each router at its `next_wakeup()` and pumping
messages in time order. A `tap` sees (and may drop) each RPC in flight. `FakeScore` stands in for score.PeerScore:
scores set by the test, and a record of what the router told it.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peerloom.apps.pubsub.message import RejectReason
from peerloom.apps.pubsub.params import MESHSUB_V12, GossipParams
from peerloom.apps.pubsub.router import Deliver, Dial, GossipSub, SendRpc, Validate
from peerloom.apps.pubsub.rpc import RPC, SubOpts, decode_rpc, encode_rpc
from peerloom.identity import Identity, PeerId


class FakeScore:
    """A PeerScoring double: `scores[peer]` (default 0) is what `score` answers; calls are recorded."""

    def __init__(self) -> None:
        self.scores: dict[PeerId, float] = {}
        self.penalties: dict[PeerId, int] = {}
        self.rejected: list[tuple[PeerId, bytes, str, RejectReason]] = []
        self.delivered: list[tuple[PeerId, bytes]] = []
        self.duplicates: list[tuple[PeerId, bytes]] = []
        self.validated: list[tuple[PeerId, bytes]] = []
        self.grafted: list[tuple[PeerId, str]] = []
        self.pruned: list[tuple[PeerId, str]] = []
        self.ips: dict[PeerId, str | None] = {}
        self.refreshes = 0

    def add_peer(self, peer: PeerId, now: float) -> None:
        pass

    def remove_peer(self, peer: PeerId, now: float) -> None:
        pass

    def set_ip(self, peer: PeerId, ip: str | None) -> None:
        self.ips[peer] = ip

    def graft(self, peer: PeerId, topic: str, now: float) -> None:
        self.grafted.append((peer, topic))

    def prune(self, peer: PeerId, topic: str, now: float) -> None:
        self.pruned.append((peer, topic))

    def validate_message(self, peer: PeerId, msg_id: bytes, topic: str, now: float) -> None:
        self.validated.append((peer, msg_id))

    def deliver_message(self, peer: PeerId, msg_id: bytes, topic: str, now: float) -> None:
        self.delivered.append((peer, msg_id))

    def reject_message(self, peer: PeerId, msg_id: bytes, topic: str, reason: RejectReason, now: float) -> None:
        self.rejected.append((peer, msg_id, topic, reason))

    def duplicate_message(self, peer: PeerId, msg_id: bytes, topic: str, now: float) -> None:
        self.duplicates.append((peer, msg_id))

    def add_penalty(self, peer: PeerId, count: int) -> None:
        self.penalties[peer] = self.penalties.get(peer, 0) + count

    def score(self, peer: PeerId, now: float) -> float:
        return self.scores.get(peer, 0.0)

    def refresh(self, now: float) -> None:
        self.refreshes += 1


def make_identity(index: int) -> Identity:
    """The same identity for the same index in every run."""
    return Identity(Ed25519PrivateKey.from_private_bytes(index.to_bytes(4, "big") * 8))


Tap = Callable[[int, int, bytes], bool]  # (from node, to node, RPC bytes) -> deliver it?


@dataclass
class Node:
    router: GossipSub
    score: FakeScore
    identity: Identity
    delivered: list[Deliver] = field(default_factory=list)
    validations: list[Validate] = field(default_factory=list)
    dials: list[Dial] = field(default_factory=list)

    @property
    def peer_id(self) -> PeerId:
        return self.identity.peer_id


class GossipNet:
    """n routers, a fake clock and an in-memory network between them."""

    def __init__(
        self, n: int, *, params: GossipParams | None = None, seed: int = 0, validate: bool = False,
        latency: float = 0.001, start: float = 1000.0,
    ) -> None:
        self.now = start
        self.latency = latency
        self.nodes: list[Node] = []
        self.index: dict[PeerId, int] = {}
        self.tap: Tap | None = None
        self.links: set[tuple[int, int]] = set()
        self._queue: list[tuple[float, int, int, int, bytes]] = []
        self._sequence = 0
        for i in range(n):
            identity = make_identity(i)
            score = FakeScore()
            router = GossipSub(identity, params=params, score=score, rng=random.Random(seed * 100_003 + i),
                               validate=validate, first_seqno=i << 32)
            self.nodes.append(Node(router, score, identity))
            self.index[identity.peer_id] = i

    def __getitem__(self, i: int) -> Node:
        return self.nodes[i]

    def connect(self, a: int, b: int, protocol: str = MESHSUB_V12, protocol_b: str | None = None) -> None:
        """a dials b; each side learns the other with the protocol it speaks (protocol_b: b's view, if other)."""
        self.links.add((min(a, b), max(a, b)))
        self.nodes[a].router.add_peer(self.nodes[b].peer_id, protocol, outbound=True, ip=f"10.0.0.{b}", now=self.now)
        self.nodes[b].router.add_peer(
            self.nodes[a].peer_id, protocol_b or protocol, outbound=False, ip=f"10.0.0.{a}", now=self.now
        )
        self.pump()

    def disconnect(self, a: int, b: int) -> None:
        self.links.discard((min(a, b), max(a, b)))
        self.nodes[a].router.remove_peer(self.nodes[b].peer_id, self.now)
        self.nodes[b].router.remove_peer(self.nodes[a].peer_id, self.now)

    def connect_all(self, protocol: str = MESHSUB_V12) -> None:
        for a in range(len(self.nodes)):
            for b in range(a + 1, len(self.nodes)):
                self.connect(a, b, protocol)

    def connect_random(self, degree: int, rng: random.Random) -> None:
        """Each node dials `degree` others chosen at random (a connected-enough graph for tests)."""
        n = len(self.nodes)
        for a in range(n):
            for b in rng.sample([x for x in range(n) if x != a], degree):
                if (min(a, b), max(a, b)) not in self.links:
                    self.connect(a, b)

    def subscribe_all(self, topic: str) -> None:
        for node in self.nodes:
            node.router.subscribe(topic, self.now)
        self.pump()

    def _collect(self, i: int) -> None:
        node = self.nodes[i]
        for event in node.router.take_events():
            if isinstance(event, SendRpc):
                j = self.index[event.peer]
                if self.tap is None or self.tap(i, j, event.data):
                    self._sequence += 1
                    heapq.heappush(self._queue, (self.now + self.latency, self._sequence, i, j, event.data))
            elif isinstance(event, Deliver):
                node.delivered.append(event)
            elif isinstance(event, Validate):
                node.validations.append(event)
            elif isinstance(event, Dial):
                node.dials.append(event)

    def pump(self, until: float | None = None) -> None:
        """Collect every router's events and deliver the RPCs due by `until` (default: now), in time order."""
        until = self.now if until is None else until
        for i in range(len(self.nodes)):
            self._collect(i)
        while self._queue and self._queue[0][0] <= until:
            at, _, i, j, data = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            sender = self.nodes[i].peer_id
            if (min(i, j), max(i, j)) in self.links:
                self.nodes[j].router.handle_rpc(sender, data, self.now)
            self._collect(j)

    def run(self, seconds: float) -> None:
        """Advance the clock by seconds: heartbeats and RPCs in time order."""
        end = self.now + seconds
        while True:
            wakeups = [(w, i) for i, n in enumerate(self.nodes) if (w := n.router.next_wakeup()) is not None]
            next_timer = min(wakeups)[0] if wakeups else end + 1
            next_rpc = self._queue[0][0] if self._queue else end + 1
            step = min(next_timer, next_rpc)
            if step > end:
                break
            if next_rpc <= next_timer:
                self.pump(next_rpc)
                continue
            self.now = max(self.now, step)
            for w, i in wakeups:
                if w <= self.now:
                    self.nodes[i].router.tick(self.now)
                    self._collect(i)
        self.now = end
        self.pump()

    def settle(self) -> None:
        """Deliver everything in flight, however long the latency (no heartbeats run)."""
        while self._queue:
            self.pump(self._queue[0][0])


class LoneRouter:
    """One router facing scripted peers: the test writes each RPC a peer sends and reads what the router sent.

    `peers[k]` is the identity of scripted peer k (indices from 1; the router is identity 0).
    """

    def __init__(self, *, params: GossipParams | None = None, validate: bool = False, seed: int = 0,
                 now: float = 1000.0) -> None:
        self.now = now
        self.identity = make_identity(0)
        self.score = FakeScore()
        self.router = GossipSub(self.identity, params=params, score=self.score, rng=random.Random(seed),
                                validate=validate, first_seqno=1)
        self.peers: dict[int, Identity] = {}
        self.events: list[object] = []

    def add(
        self, k: int, *, protocol: str = MESHSUB_V12, outbound: bool = False, topics: tuple[str, ...] = ()
    ) -> PeerId:
        """Connect scripted peer k, which announces `topics`."""
        self.peers[k] = make_identity(k)
        peer = self.peers[k].peer_id
        self.router.add_peer(peer, protocol, outbound=outbound, ip=None, now=self.now)
        if topics:
            self.send(k, RPC(subscriptions=tuple(SubOpts(True, t) for t in topics)))
        return peer

    def id(self, k: int) -> PeerId:
        return self.peers[k].peer_id

    def send(self, k: int, rpc: RPC | bytes) -> None:
        data = rpc if isinstance(rpc, bytes) else encode_rpc(rpc)
        self.router.handle_rpc(self.peers[k].peer_id, data, self.now)

    def advance(self, seconds: float) -> None:
        """Move the clock, running the router's timers that fall due."""
        end = self.now + seconds
        while (wakeup := self.router.next_wakeup()) is not None and wakeup <= end:
            self.now = max(self.now, wakeup)
            self.router.tick(self.now)
        self.now = end

    def take(self) -> list[object]:
        """The router's events since the last call."""
        return self.router.take_events()

    def sent(self) -> dict[int, list[RPC]]:
        """The RPCs the router sent since the last call (other events are kept in `events`), by peer index."""
        by_peer: dict[int, list[RPC]] = {}
        index = {identity.peer_id: k for k, identity in self.peers.items()}
        for event in self.take():
            if isinstance(event, SendRpc):
                by_peer.setdefault(index[event.peer], []).append(decode_rpc(event.data))
            else:
                self.events.append(event)
        return by_peer
