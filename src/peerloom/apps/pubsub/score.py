"""GossipSub v1.1 peer scoring (gossipsub-v1.1.md, "Peer Scoring"), sans-I/O: the router reports what peers do
and asks for their score; every method takes `now` (seconds) and nothing here reads a clock.

    Score(p) = TopicCap(Σ tᵢ·(w₁P₁ + w₂P₂ + w₃P₃ + w₃bP₃b + w₄P₄)) + w₅P₅ + w₆P₆ + w₇P₇

Counters (P₂, P₃, P₃b, P₄ per topic, P₇ per peer) decay in `refresh(now)`, which the router calls every
`decay_interval`. peerloom scores every topic: one not listed in `ScoreParams.topics` uses `default_topic`, whose
defaults suit a topic of unknown message rate (P₃/P₃b are off there: an honest peer of a quiet topic would miss any
fixed delivery threshold).

Disconnected peers (go-libp2p-pubsub's choice, which the spec leaves open): a peer whose score is positive is
forgotten at once; any other is kept, frozen (no decay), for `retain_score` seconds, and still counts towards the
colocation of its IP, so that a peer cannot reset a bad score, or an IP its sybil count, by reconnecting.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from peerloom.apps.pubsub.message import RejectReason
from peerloom.identity import PeerId

__all__ = ["PeerScore", "RejectReason", "ScoreParams", "TopicScoreParams"]

IPv6_COLOCATION_PREFIX = 64  # an IPv6 peer also counts for its /64: one host usually owns a whole /64


@dataclass
class TopicScoreParams:
    """Per-topic weights and counters' parameters (spec, "Overview of New Parameters"). Durations in seconds;
    decays are factors applied once per `ScoreParams.decay_interval`. Weights of penalties are negative.

    The defaults score a topic of unknown rate: a mesh peer earns at most 3 (P₁, after 5 minutes) + 10 (P₂, about
    one message a second delivered first), the invalid-message penalty outweighs that from the 2nd message on, and
    P₃/P₃b are off (a quiet topic would make every honest mesh peer miss any fixed threshold).
    """

    topic_weight: float = 1.0
    # P₁ time in mesh: min(time since GRAFT / quantum, cap)
    time_in_mesh_weight: float = 0.01
    time_in_mesh_quantum: float = 1.0
    time_in_mesh_cap: float = 300.0
    # P₂ first message deliveries
    first_message_deliveries_weight: float = 1.0
    first_message_deliveries_decay: float = 0.9
    first_message_deliveries_cap: float = 10.0
    # P₃ mesh message delivery rate: deficit² below the threshold, once the peer has been in the mesh `activation`
    mesh_message_deliveries_weight: float = 0.0
    mesh_message_deliveries_decay: float = 0.9
    mesh_message_deliveries_cap: float = 100.0
    mesh_message_deliveries_threshold: float = 1.0
    mesh_message_deliveries_window: float = 0.01
    mesh_message_deliveries_activation: float = 10.0
    # P₃b mesh failure penalty: the P₃ deficit² at PRUNE, sticky
    mesh_failure_penalty_weight: float = 0.0
    mesh_failure_penalty_decay: float = 0.9
    # P₄ invalid messages: counter², uncapped. -10 per count²: the 3rd invalid message puts a peer below the
    # graylist threshold unless it has earned positive score, the 4th always does.
    invalid_message_deliveries_weight: float = -10.0
    invalid_message_deliveries_decay: float = 0.99

    def __post_init__(self) -> None:
        _check_signs(self, positive=("time_in_mesh_weight", "first_message_deliveries_weight"),
                     negative=("mesh_message_deliveries_weight", "mesh_failure_penalty_weight",
                               "invalid_message_deliveries_weight"))
        _check_decays(self, ("first_message_deliveries_decay", "mesh_message_deliveries_decay",
                             "mesh_failure_penalty_decay", "invalid_message_deliveries_decay"))
        if self.topic_weight < 0 or self.time_in_mesh_quantum <= 0:
            raise ValueError("topic_weight must be >= 0 and time_in_mesh_quantum > 0")
        if self.mesh_message_deliveries_cap < self.mesh_message_deliveries_threshold:
            raise ValueError("mesh_message_deliveries_cap must be >= mesh_message_deliveries_threshold")


@dataclass
class ScoreParams:
    """Global parameters. `topic_score_cap` <= 0 means no cap. The colocation whitelist holds networks ("10.0.0.0/8",
    "::1/128"); loopback is NOT whitelisted by default (tests that run many peers on 127.0.0.1 whitelist it)."""

    topics: dict[str, TopicScoreParams] = field(default_factory=dict)
    default_topic: TopicScoreParams | None = field(default_factory=TopicScoreParams)
    topic_score_cap: float = 20.0
    app_specific_weight: float = 1.0
    ip_colocation_factor_weight: float = -10.0
    ip_colocation_factor_threshold: int = 10
    ip_colocation_factor_whitelist: tuple[str, ...] = ()
    behaviour_penalty_weight: float = -10.0
    behaviour_penalty_threshold: float = 6.0
    behaviour_penalty_decay: float = 0.99
    decay_interval: float = 1.0
    decay_to_zero: float = 0.01
    retain_score: float = 3600.0
    # how long a message's delivery record (who sent it, when it was validated) is kept: the seen cache's TTL
    delivery_record_ttl: float = 120.0
    # topics tracked per peer: a bound on memory; events of a further topic are not scored
    max_topics_per_peer: int = 256

    def __post_init__(self) -> None:
        _check_signs(self, positive=("app_specific_weight",),
                     negative=("ip_colocation_factor_weight", "behaviour_penalty_weight"))
        _check_decays(self, ("behaviour_penalty_decay",))
        if self.ip_colocation_factor_threshold < 1:
            raise ValueError("ip_colocation_factor_threshold must be at least 1")
        if self.decay_interval <= 0 or not 0 <= self.decay_to_zero < 1:
            raise ValueError("decay_interval must be > 0 and decay_to_zero in [0, 1)")
        for net in self.ip_colocation_factor_whitelist:
            ipaddress.ip_network(net, strict=False)  # ValueError now rather than at the first peer

    def topic(self, topic: str) -> TopicScoreParams | None:
        """The parameters that score `topic`, or None when it is not scored."""
        return self.topics.get(topic, self.default_topic)




def _check_signs(params: object, *, positive: tuple[str, ...], negative: tuple[str, ...]) -> None:
    """Weights of rewards must not be negative, weights of penalties not positive (spec, the weights' constraints)."""
    for name in positive:
        if getattr(params, name) < 0:
            raise ValueError(f"{name} must be >= 0")
    for name in negative:
        if getattr(params, name) > 0:
            raise ValueError(f"{name} must be <= 0")


def _check_decays(params: object, names: tuple[str, ...]) -> None:
    for name in names:
        if not 0 <= getattr(params, name) <= 1:
            raise ValueError(f"{name} must be in [0, 1]")


# RejectReason (message.py, re-exported here): a failure of the message itself proves its sender wrong without a
# delivery record (go-libp2p-pubsub's RejectMessage); VALIDATION_REJECT also blames every peer that sent the message
# while it was validated; VALIDATION_IGNORE and BLACKLISTED blame nobody.
_INVALID_AT_ONCE = {RejectReason.MISSING_SIGNATURE, RejectReason.INVALID_SIGNATURE, RejectReason.SELF_ORIGIN}


class _Delivery(enum.Enum):
    UNKNOWN = 0  # being validated
    VALID = 1
    INVALID = 2
    IGNORED = 3


@dataclass(slots=True)
class _DeliveryRecord:
    """What happened to one message: its fate, when it was accepted, and the peers that sent it (each counts once)."""

    expires: float
    status: _Delivery = _Delivery.UNKNOWN
    validated: float = 0.0
    peers: set[PeerId] = field(default_factory=set)


@dataclass(slots=True)
class _TopicStats:
    """One peer's counters in one topic, with the parameters that score that topic."""

    params: TopicScoreParams
    in_mesh: bool = False
    graft_time: float = 0.0
    first_message_deliveries: float = 0.0
    mesh_message_deliveries: float = 0.0
    mesh_failure_penalty: float = 0.0
    invalid_message_deliveries: float = 0.0


@dataclass(slots=True)
class _PeerStats:
    connected: bool = True
    expires: float = 0.0
    ips: tuple[str, ...] = ()
    behaviour_penalty: float = 0.0
    topics: dict[str, _TopicStats] = field(default_factory=dict)


def _parse_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, an IPv4-mapped IPv6 one as the IPv4 address it is; None for text that is no address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class PeerScore:
    """The score each peer has earned with us. The router calls the event methods as things happen, `refresh` every
    `decay_interval`, and `score` whenever it decides (mesh, gossip, publish, graylist)."""

    def __init__(
        self, params: ScoreParams | None = None, *, app_score: Callable[[PeerId], float] | None = None
    ) -> None:
        self.params = params if params is not None else ScoreParams()
        self._app_score = app_score
        self._peers: dict[PeerId, _PeerStats] = {}
        self._peers_by_ip: dict[str, set[PeerId]] = {}
        self._whitelist = [
            ipaddress.ip_network(net, strict=False) for net in self.params.ip_colocation_factor_whitelist
        ]
        self._deliveries: dict[bytes, _DeliveryRecord] = {}
        self._delivery_order: deque[tuple[float, bytes]] = deque()

    # --- peers ----------------------------------------------------------------------------------------------------

    def add_peer(self, peer: PeerId, now: float) -> None:
        """A peer connected (again: a retained peer takes its record back)."""
        stats = self._peers.get(peer)
        if stats is None:
            self._peers[peer] = _PeerStats()
        else:
            stats.connected = True

    def remove_peer(self, peer: PeerId, now: float) -> None:
        """A peer disconnected: forget it if it earned a positive score, else keep its record for `retain_score`.
        Leaving a mesh while under-delivering costs the P₃b penalty, as a PRUNE would."""
        stats = self._peers.get(peer)
        if stats is None or not stats.connected:
            return
        if self.score(peer, now) > 0:
            self._forget(peer, stats)
            return
        for tstats in stats.topics.values():
            tstats.first_message_deliveries = 0.0
            if tstats.in_mesh:
                self._leave_mesh(tstats, now)
        stats.connected = False
        stats.expires = now + self.params.retain_score

    def set_ip(self, peer: PeerId, ip: str | None) -> None:
        """The IP address the peer is connected from (None: unknown, e.g. a relayed connection). An address in the
        whitelist does not count towards colocation."""
        stats = self._peers.get(peer)
        if stats is None:
            return
        new = self._ip_keys(ip)
        for key in stats.ips:
            if key not in new:
                self._unlink_ip(peer, key)
        for key in new:
            self._peers_by_ip.setdefault(key, set()).add(peer)
        stats.ips = new

    # --- mesh -----------------------------------------------------------------------------------------------------

    def graft(self, peer: PeerId, topic: str, now: float) -> None:
        """The peer joined our mesh of `topic`: P₁ counts from now, P₃ after its activation time."""
        tstats = self._topic_stats(peer, topic)
        if tstats is not None:
            tstats.in_mesh = True
            tstats.graft_time = now

    def prune(self, peer: PeerId, topic: str, now: float) -> None:
        """The peer left our mesh of `topic` (either side pruned)."""
        tstats = self._topic_stats(peer, topic)
        if tstats is not None and tstats.in_mesh:
            self._leave_mesh(tstats, now)

    # --- messages -------------------------------------------------------------------------------------------------

    def validate_message(self, peer: PeerId, msg_id: bytes, topic: str, now: float) -> None:
        """A message seen for the first time, from `peer`, before it is validated: opens its delivery record."""
        self._record(msg_id, now)

    def deliver_message(self, peer: PeerId, msg_id: bytes, topic: str, now: float) -> None:
        """The message `peer` first sent us was accepted: P₂ for `peer`, and P₃ for it and for every mesh peer that
        sent the message while it was being validated (spec, "P₃ and P₃b": near-first deliveries)."""
        record = self._record(msg_id, now)
        self._first_delivery(peer, topic)
        if record.status is not _Delivery.UNKNOWN:
            return
        record.status = _Delivery.VALID
        record.validated = now
        for other in record.peers:
            if other != peer:
                self._mesh_delivery(other, topic)

    def reject_message(self, peer: PeerId, msg_id: bytes, topic: str, reason: RejectReason, now: float) -> None:
        """The message `peer` sent was refused. A bad signature or our own id as origin proves the sender wrong at
        once; a validator's REJECT also blames every peer that sent the message meanwhile; IGNORE blames nobody,
        nor does any other reason (BLACKLISTED: the sender is dealt with elsewhere)."""
        if reason in _INVALID_AT_ONCE:
            self._invalid_delivery(peer, topic)
            return
        if reason not in (RejectReason.VALIDATION_REJECT, RejectReason.VALIDATION_IGNORE):
            return
        record = self._record(msg_id, now)
        if record.status is not _Delivery.UNKNOWN:
            return
        if reason is RejectReason.VALIDATION_IGNORE:
            record.status = _Delivery.IGNORED
        else:
            record.status = _Delivery.INVALID
            self._invalid_delivery(peer, topic)
            for other in record.peers:
                if other != peer:
                    self._invalid_delivery(other, topic)
        record.peers.clear()

    def duplicate_message(self, peer: PeerId, msg_id: bytes, topic: str, now: float) -> None:
        """`peer` sent a message we had already seen. It counts for P₃ if it came while the message was validated or
        within `mesh_message_deliveries_window` of its acceptance; a copy of an invalid message counts for P₄."""
        record = self._deliveries.get(msg_id)
        if record is None or peer in record.peers:
            return
        if record.status is _Delivery.UNKNOWN:
            record.peers.add(peer)
        elif record.status is _Delivery.VALID:
            record.peers.add(peer)
            tstats = self._topic_stats(peer, topic)
            if tstats is not None and now - record.validated <= tstats.params.mesh_message_deliveries_window:
                self._mesh_delivery(peer, topic)
        elif record.status is _Delivery.INVALID:
            self._invalid_delivery(peer, topic)

    def add_penalty(self, peer: PeerId, count: int) -> None:
        """P₇: `count` misbehaviours (a broken IWANT promise, a GRAFT during backoff, ...)."""
        stats = self._peers.get(peer)
        if stats is not None:
            stats.behaviour_penalty += count

    # --- score and decay ------------------------------------------------------------------------------------------

    def score(self, peer: PeerId, now: float) -> float:
        """The peer's score now; 0 for a peer we know nothing of. (The router asks for it on every RPC.)"""
        stats = self._peers.get(peer)
        if stats is None:
            return 0.0
        params = self.params
        total = 0.0
        for tstats in stats.topics.values():
            total += _topic_score(tstats, now)
        if 0 < params.topic_score_cap < total:
            total = params.topic_score_cap
        if self._app_score is not None:
            total += self._app_score(peer) * params.app_specific_weight
        if stats.ips:
            total += self._ip_colocation_factor(stats) * params.ip_colocation_factor_weight
        excess = stats.behaviour_penalty - params.behaviour_penalty_threshold
        if excess > 0:
            total += excess * excess * params.behaviour_penalty_weight
        return total

    def refresh(self, now: float) -> None:
        """Decay every connected peer's counters by one step (spec, "Parameter Decay"); drop retained peers whose
        time is up and delivery records older than `delivery_record_ttl`."""
        params = self.params
        zero = params.decay_to_zero
        expired = []
        for peer, stats in self._peers.items():
            if not stats.connected:
                if now >= stats.expires:
                    expired.append((peer, stats))
                continue
            for tstats in stats.topics.values():
                tparams = tstats.params
                if tstats.first_message_deliveries:
                    tstats.first_message_deliveries = _decayed(
                        tstats.first_message_deliveries, tparams.first_message_deliveries_decay, zero
                    )
                if tstats.mesh_message_deliveries:
                    tstats.mesh_message_deliveries = _decayed(
                        tstats.mesh_message_deliveries, tparams.mesh_message_deliveries_decay, zero
                    )
                if tstats.mesh_failure_penalty:
                    tstats.mesh_failure_penalty = _decayed(
                        tstats.mesh_failure_penalty, tparams.mesh_failure_penalty_decay, zero
                    )
                if tstats.invalid_message_deliveries:
                    tstats.invalid_message_deliveries = _decayed(
                        tstats.invalid_message_deliveries, tparams.invalid_message_deliveries_decay, zero
                    )
            if stats.behaviour_penalty:
                stats.behaviour_penalty = _decayed(stats.behaviour_penalty, params.behaviour_penalty_decay, zero)
        for peer, stats in expired:
            self._forget(peer, stats)
        order = self._delivery_order
        while order and order[0][0] <= now:
            del self._deliveries[order.popleft()[1]]

    def peers(self) -> list[PeerId]:
        """Every peer with a record: connected or retained."""
        return list(self._peers)

    # --- internals ------------------------------------------------------------------------------------------------

    def _ip_colocation_factor(self, stats: _PeerStats) -> float:
        factor = 0.0
        threshold = self.params.ip_colocation_factor_threshold
        for key in stats.ips:
            surplus = len(self._peers_by_ip.get(key, ())) - threshold
            if surplus > 0:
                factor += surplus * surplus
        return factor

    def _ip_keys(self, ip: str | None) -> tuple[str, ...]:
        """The colocation keys of an address: itself, and its /64 for IPv6; none when it is whitelisted.
        Text that is no address counts as given."""
        if ip is None:
            return ()
        address = _parse_ip(ip)
        if address is None:
            return (ip,)
        if any(address in net for net in self._whitelist):
            return ()
        if address.version == 6:
            prefix = ipaddress.ip_network(f"{address}/{IPv6_COLOCATION_PREFIX}", strict=False)
            return (str(address), str(prefix))
        return (str(address),)

    def _topic_stats(self, peer: PeerId, topic: str) -> _TopicStats | None:
        """The peer's counters in `topic`, created on first use; None if the peer or the topic is not scored."""
        stats = self._peers.get(peer)
        if stats is None:
            return None
        tstats = stats.topics.get(topic)
        if tstats is None:
            tparams = self.params.topic(topic)
            if tparams is None or len(stats.topics) >= self.params.max_topics_per_peer:
                return None
            tstats = stats.topics[topic] = _TopicStats(tparams)
        return tstats

    @staticmethod
    def _leave_mesh(tstats: _TopicStats, now: float) -> None:
        deficit = _mesh_deficit(tstats, now)
        tstats.mesh_failure_penalty += deficit * deficit
        tstats.in_mesh = False

    def _record(self, msg_id: bytes, now: float) -> _DeliveryRecord:
        record = self._deliveries.get(msg_id)
        if record is None:
            expires = now + self.params.delivery_record_ttl
            record = self._deliveries[msg_id] = _DeliveryRecord(expires)
            self._delivery_order.append((expires, msg_id))
        return record

    def _first_delivery(self, peer: PeerId, topic: str) -> None:
        tstats = self._topic_stats(peer, topic)
        if tstats is None:
            return
        tstats.first_message_deliveries = min(
            tstats.first_message_deliveries + 1, tstats.params.first_message_deliveries_cap
        )
        self._mesh_delivery(peer, topic)

    def _mesh_delivery(self, peer: PeerId, topic: str) -> None:
        tstats = self._topic_stats(peer, topic)
        if tstats is None or not tstats.in_mesh:
            return
        tstats.mesh_message_deliveries = min(
            tstats.mesh_message_deliveries + 1, tstats.params.mesh_message_deliveries_cap
        )

    def _invalid_delivery(self, peer: PeerId, topic: str) -> None:
        tstats = self._topic_stats(peer, topic)
        if tstats is not None:
            tstats.invalid_message_deliveries += 1

    def _forget(self, peer: PeerId, stats: _PeerStats) -> None:
        for key in stats.ips:
            self._unlink_ip(peer, key)
        del self._peers[peer]

    def _unlink_ip(self, peer: PeerId, key: str) -> None:
        peers = self._peers_by_ip.get(key)
        if peers is not None:
            peers.discard(peer)
            if not peers:
                del self._peers_by_ip[key]


def _topic_score(tstats: _TopicStats, now: float) -> float:
    """One topic's weighted share of the score: tᵢ·(w₁P₁ + w₂P₂ + w₃P₃ + w₃bP₃b + w₄P₄)."""
    tparams = tstats.params
    score = tstats.first_message_deliveries * tparams.first_message_deliveries_weight
    if tstats.in_mesh:
        p1 = min((now - tstats.graft_time) / tparams.time_in_mesh_quantum, tparams.time_in_mesh_cap)
        score += p1 * tparams.time_in_mesh_weight
        if tparams.mesh_message_deliveries_weight:
            deficit = _mesh_deficit(tstats, now)
            score += deficit * deficit * tparams.mesh_message_deliveries_weight
    if tstats.mesh_failure_penalty:
        score += tstats.mesh_failure_penalty * tparams.mesh_failure_penalty_weight
    invalid = tstats.invalid_message_deliveries
    if invalid:
        score += invalid * invalid * tparams.invalid_message_deliveries_weight
    return score * tparams.topic_weight


def _mesh_deficit(tstats: _TopicStats, now: float) -> float:
    """How far a mesh peer's P₃ counter is below the threshold, once it has been in the mesh past activation."""
    tparams = tstats.params
    if now - tstats.graft_time <= tparams.mesh_message_deliveries_activation:
        return 0.0
    return max(0.0, tparams.mesh_message_deliveries_threshold - tstats.mesh_message_deliveries)


def _decayed(value: float, decay: float, zero: float) -> float:
    value *= decay
    return 0.0 if value < zero else value

