"""The GossipSub v1.1/v1.2 router, sans-I/O: RPC bytes and the current time in, events out.

Specs: libp2p pubsub (pubsub/README.md), gossipsub v1.0 (mesh, fanout, gossip), v1.1 (PRUNE backoff and peer
exchange, flood publishing, scoring thresholds, spam protection) and v1.2 (IDONTWANT). Messages are StrictSign
(message.py); the message id is js-libp2p's. The driver feeds `handle_rpc` with each RPC a peer sent, calls
`tick(now)` at `next_wakeup()`, and performs the events of `take_events()` in order: `SendRpc` (write one
length-prefixed frame), `Validate` (ask the application; answer with `report_validation`), `Deliver` (hand the
message to the application), `Dial` (PX: connect to that peer).

The heartbeat lives in router_heartbeat.py and the shared tables in router_state.py.
"""

from __future__ import annotations

import hashlib
import random

from peerloom.apps.pubsub.mcache import MessageCache
from peerloom.apps.pubsub.message import InvalidMessage, RejectReason, message_id, sign_message, verify_message
from peerloom.apps.pubsub.params import GossipParams
from peerloom.apps.pubsub.router_heartbeat import Heartbeat
from peerloom.apps.pubsub.router_state import (
    Deliver,
    Dial,
    Event,
    PeerScoring,
    PeerState,
    PublishResult,
    RouterState,
    SendRpc,
    Validate,
    Validation,
)
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
    SubOpts,
    decode_rpc,
    encode_message,
    encode_publish,
    encode_rpc,
    encode_rpcs,
)
from peerloom.identity import Identity, PeerId, PeerIdError

__all__ = [
    "Deliver", "Dial", "Event", "GossipSub", "PeerScoring", "PublishResult", "SendRpc", "Validate", "Validation",
]


class GossipSub:
    """One node's GossipSub router. Every call takes `now` (seconds, any monotonic origin); nothing reads a clock."""

    def __init__(
        self,
        identity: Identity,
        *,
        params: GossipParams | None = None,
        score: PeerScoring | None = None,
        rng: random.Random | None = None,
        validate: bool = False,
        first_seqno: int | None = None,
    ) -> None:
        """`score=None` builds `PeerScore(ScoreParams())` of score.py. `validate=False` accepts every correctly
        signed message at once (no Validate event). `first_seqno` starts our seqno counter; the pubsub spec asks
        for a linearly increasing seqno, which kubo checks across restarts, so a driver passes the wall clock in
        nanoseconds (as go-libp2p and js-libp2p do); by default it is random."""
        self._identity = identity
        self._params = params or GossipParams()
        self._rng = rng or random.Random()
        if score is None:
            from peerloom.apps.pubsub.score import PeerScore, ScoreParams

            score = PeerScore(ScoreParams())
        self._state = RouterState(identity.peer_id, self._params, score, self._rng)
        self._score = score
        self._mcache = MessageCache(self._params.mcache_len, self._params.mcache_gossip)
        self._heartbeat = Heartbeat(self._state, self._mcache)
        self._validate = validate
        self._seqno = self._rng.getrandbits(62) if first_seqno is None else first_seqno
        self._seen: dict[bytes, float] = {}  # message id -> expiry; insertion order is expiry order
        self._pending: dict[bytes, tuple[Message, PeerId, float]] = {}  # awaiting report_validation
        self._next_heartbeat: float | None = None
        self._next_refresh: float | None = None

    # --- views ----------------------------------------------------------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        return self._identity.peer_id

    @property
    def subscriptions(self) -> frozenset[str]:
        return frozenset(self._state.subscriptions)

    def peers(self) -> list[PeerId]:
        return list(self._state.peers)

    def topic_peers(self, topic: str) -> list[PeerId]:
        return list(self._state.topic_peers.get(topic, ()))

    def mesh_peers(self, topic: str) -> list[PeerId]:
        return list(self._state.mesh.get(topic, ()))

    def fanout_peers(self, topic: str) -> list[PeerId]:
        return list(self._state.fanout.get(topic, ()))

    def peer_score(self, peer: PeerId, now: float) -> float:
        return self._score.score(peer, now)

    def stats(self) -> dict[str, int]:
        """Counters since the start (messages received, duplicates, delivered, RPCs sent, ...) and table sizes."""
        return {
            **self._state.counters,
            "peers": len(self._state.peers),
            "mesh_peers": sum(len(m) for m in self._state.mesh.values()),
            "seen": len(self._seen),
            "mcache": len(self._mcache),
            "pending_validations": len(self._pending),
            "promises": len(self._state.promises),
            "dont_want": sum(len(p.dont_want) for p in self._state.peers.values()),
        }

    def take_events(self) -> list[Event]:
        events, self._state.events = self._state.events, []
        return events

    # --- timers ---------------------------------------------------------------------------------------------------

    def _clock(self, now: float) -> None:
        """Start the timers at the first time we are told."""
        if self._next_heartbeat is None:
            self._next_heartbeat = now + self._params.heartbeat_initial_delay
            self._next_refresh = now + self._params.score_refresh_interval

    def next_wakeup(self) -> float | None:
        if self._next_heartbeat is None or self._next_refresh is None:
            return None
        return min(self._next_heartbeat, self._next_refresh)

    def tick(self, now: float) -> None:
        """Run the heartbeat and the score refresh when due (once each however late: missed beats are skipped)."""
        self._clock(now)
        assert self._next_heartbeat is not None and self._next_refresh is not None
        if self._next_refresh <= now:
            self._score.refresh(now)
            self._next_refresh = _next_after(self._next_refresh, self._params.score_refresh_interval, now)
        if self._next_heartbeat <= now:
            self._expire(now)
            self._heartbeat.run(now)
            self._next_heartbeat = _next_after(self._next_heartbeat, self._params.heartbeat_interval, now)

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            msg_id = next(iter(seen))
            if seen[msg_id] > now:
                break
            del seen[msg_id]
        stale = [i for i, (_, _, until) in self._pending.items() if until <= now]
        for msg_id in stale:
            del self._pending[msg_id]
        self._state.count("validations_timed_out", len(stale))

    # --- peers ----------------------------------------------------------------------------------------------------

    def add_peer(self, peer: PeerId, protocol: str, *, outbound: bool, ip: str | None, now: float) -> None:
        """A peer with a pubsub stream in `protocol`; it is told our subscriptions at once."""
        self._clock(now)
        if peer in self._state.peers or peer == self.peer_id:
            return
        self._state.peers[peer] = PeerState(peer, protocol, outbound)
        self._score.add_peer(peer, now)
        self._score.set_ip(peer, ip)
        if self._state.subscriptions:
            subs = tuple(SubOpts(True, t) for t in self._state.subscriptions)
            self._state.send(peer, RPC(subscriptions=subs))

    def remove_peer(self, peer: PeerId, now: float) -> None:
        state = self._state
        info = state.peers.pop(peer, None)
        if info is None:
            return
        for topic in info.topics:
            state.topic_peers[topic].pop(peer, None)
            if not state.topic_peers[topic]:
                del state.topic_peers[topic]
        for topic, mesh in state.mesh.items():
            if peer in mesh:
                del mesh[peer]
                self._score.prune(peer, topic, now)
        for fanout in state.fanout.values():
            fanout.pop(peer, None)
        self._score.remove_peer(peer, now)

    # --- subscriptions --------------------------------------------------------------------------------------------

    def subscribe(self, topic: str, now: float) -> None:
        """Announce the topic to every peer and join its mesh: fanout peers first, then other topic peers
        (gossipsub v1.0 "Topic membership", JOIN), D in all, each sent a GRAFT."""
        self._clock(now)
        state = self._state
        if topic in state.subscriptions:
            return
        state.subscriptions[topic] = None
        self._announce(SubOpts(True, topic))
        mesh: dict[PeerId, None] = {}
        state.mesh[topic] = mesh
        fanout = state.fanout.pop(topic, {})
        state.fanout_last_publish.pop(topic, None)
        for group in (fanout, state.topic_peers.get(topic, {})):
            pool = [p for p in group if p not in mesh and not state.in_backoff(topic, p, now)
                    and self._score.score(p, now) >= 0]
            for peer in state.sample(pool, self._params.D - len(mesh)):
                state.graft(topic, peer, now)
        state.flush_control()

    def unsubscribe(self, topic: str, now: float) -> None:
        """Announce the unsubscription and leave the mesh, pruning each member with unsubscribe_backoff (LEAVE)."""
        state = self._state
        if topic not in state.subscriptions:
            return
        del state.subscriptions[topic]
        self._announce(SubOpts(False, topic))
        for peer in list(state.mesh.get(topic, ())):
            state.prune(topic, peer, now, px=True, backoff=self._params.unsubscribe_backoff)
        del state.mesh[topic]
        state.flush_control()

    def _announce(self, sub: SubOpts) -> None:
        if self._state.peers:
            data = encode_rpc(RPC(subscriptions=(sub,)))
            for peer in self._state.peers:
                self._state.send_raw(peer, data)

    # --- publishing -----------------------------------------------------------------------------------------------

    def publish(self, topic: str, data: bytes, now: float) -> PublishResult:
        """Sign and send a message: to every topic peer above publish_threshold with flood_publish (v1.1 "Flood
        Publishing"), else to the mesh, or to the fanout when we do not subscribe. Never Delivered to us.
        ValueError when the message cannot fit an RPC of rpc_limits.max_rpc_size."""
        self._clock(now)
        self._seqno = (self._seqno + 1) % (1 << 64)
        msg = sign_message(self._identity, topic, data, self._seqno.to_bytes(8, "big"))
        msg_id = message_id(msg)
        encoded = encode_message(msg)
        if len(encoded) + 8 > self._params.rpc_limits.max_rpc_size:  # 8: the RPC field's key and length
            raise ValueError(f"a message of {len(data)} bytes exceeds the RPC size limit")
        self._mark_seen(msg_id, now)
        self._mcache.put(msg_id, msg, encoded)
        targets = self._publish_targets(topic, now)
        if targets:
            rpc = encode_publish([encoded])
            for peer in targets:
                self._state.send_raw(peer, rpc)
        self._state.count("published")
        return PublishResult(msg_id, len(targets))

    def _publish_targets(self, topic: str, now: float) -> list[PeerId]:
        state, params = self._state, self._params
        if params.flood_publish:
            return self._publishable(topic, now)
        if topic in state.mesh:
            return list(state.mesh[topic])
        fanout = state.fanout.get(topic)
        if fanout is None:
            fanout = state.fanout[topic] = dict.fromkeys(state.sample(self._publishable(topic, now), params.D))
        state.fanout_last_publish[topic] = now
        return list(fanout)

    def _publishable(self, topic: str, now: float) -> list[PeerId]:
        threshold = self._params.publish_threshold
        return [p for p in self._state.topic_peers.get(topic, ()) if self._score.score(p, now) >= threshold]

    # --- receiving ------------------------------------------------------------------------------------------------

    def handle_rpc(self, peer: PeerId, data: bytes | memoryview, now: float) -> None:
        """One RPC from peer. Malformed or oversized RPCs and everything from a graylisted peer are dropped
        (v1.1 "Score Thresholds": graylist_threshold); this never raises for bad input."""
        self._clock(now)
        state = self._state
        info = state.peers.get(peer)
        if info is None:
            return
        state.count("rpcs_received")
        if self._score.score(peer, now) < self._params.graylist_threshold:
            state.count("rpcs_graylisted")
            return
        try:
            rpc = decode_rpc(data, self._params.rpc_limits)
        except PubsubError:
            state.count("rpcs_invalid")
            return
        for sub in rpc.subscriptions:
            self._handle_subscription(info, sub, now)
        for msg in rpc.publish:
            self._handle_message(peer, msg, now)
        if rpc.control:
            self._handle_control(info, rpc.control, now)

    def _handle_subscription(self, info: PeerState, sub: SubOpts, now: float) -> None:
        state, topic = self._state, sub.topic
        if sub.subscribe:
            if topic not in info.topics and len(info.topics) >= self._params.max_peer_topics:
                state.count("subscriptions_refused")
                return
            info.topics[topic] = None
            state.topic_peers.setdefault(topic, {})[info.peer] = None
            return
        if topic in info.topics:
            del info.topics[topic]
            peers = state.topic_peers[topic]
            del peers[info.peer]
            if not peers:
                del state.topic_peers[topic]
        mesh = state.mesh.get(topic)
        if mesh is not None and info.peer in mesh:
            del mesh[info.peer]
            self._score.prune(info.peer, topic, now)
        fanout = state.fanout.get(topic)
        if fanout is not None:
            fanout.pop(info.peer, None)

    def _mark_seen(self, msg_id: bytes, now: float) -> None:
        self._seen.pop(msg_id, None)  # re-inserted at the end, where the latest expiries are
        self._seen[msg_id] = now + self._params.seen_ttl

    def _handle_message(self, source: PeerId, msg: Message, now: float) -> None:
        """Seen check, StrictSign check, then validation or acceptance (pubsub spec "Message processing")."""
        state, score, topic = self._state, self._score, msg.topic
        state.count("messages_received")
        if topic not in state.subscriptions:
            state.count("messages_unsubscribed")
            return
        try:
            msg_id = message_id(msg)
        except InvalidMessage as exc:  # no seqno or no author key: no js id exists; key the record by content
            self._reject(source, hashlib.sha256(encode_message(msg)).digest(), topic, exc.reason, now)
            return
        if msg_id in self._seen:
            state.count("duplicates")
            score.duplicate_message(source, msg_id, topic, now)
            return
        if msg.from_peer == self.peer_id.to_bytes():
            self._reject(source, msg_id, topic, RejectReason.SELF_ORIGIN, now)
            return
        # Only a correctly signed message is marked seen (as go- and js-libp2p do): the id is the author's key and a
        # predictable seqno, so a forgery marked seen first would make the genuine message a "duplicate".
        try:
            verify_message(msg)
        except InvalidMessage as exc:
            self._reject(source, msg_id, topic, exc.reason, now)
            return
        self._mark_seen(msg_id, now)
        score.validate_message(source, msg_id, topic, now)
        state.promises.pop(msg_id, None)
        encoded = encode_message(msg)
        if len(msg.data) >= self._params.idontwant_min_size:
            self._send_dont_want(msg_id, topic, source)
        if self._validate:
            self._pending[msg_id] = (msg, source, now + self._params.validation_timeout)
            state.events.append(Validate(msg_id, msg, source))
        else:
            self._accept(msg_id, msg, encoded, source, now)

    def _reject(self, source: PeerId, msg_id: bytes, topic: str, reason: RejectReason, now: float) -> None:
        self._state.count("messages_rejected")
        self._score.reject_message(source, msg_id, topic, reason, now)

    def _send_dont_want(self, msg_id: bytes, topic: str, source: PeerId) -> None:
        """IDONTWANT to the v1.2 mesh peers right away, not piggybacked (v1.2 "Basic scenario")."""
        targets = [p for p in self._state.mesh.get(topic, ()) if p != source and self._state.peers[p].v12]
        if targets:
            data = encode_rpc(RPC(control=ControlMessage(idontwant=(IDontWant((msg_id,)),))))
            for peer in targets:
                self._state.send_raw(peer, data)
            self._state.count("idontwant_sent", len(targets))

    def report_validation(self, msg_id: bytes, source: PeerId, result: Validation, now: float) -> None:
        """The application's verdict on a Validate event: ACCEPT forwards and delivers, REJECT penalises the
        source, IGNORE drops the message (the score is told, without a penalty)."""
        pending = self._pending.get(msg_id)
        if pending is None or pending[1] != source:
            return
        del self._pending[msg_id]
        msg = pending[0]
        if result is Validation.ACCEPT:
            self._accept(msg_id, msg, encode_message(msg), source, now)
        elif result is Validation.REJECT:
            self._reject(source, msg_id, msg.topic, RejectReason.VALIDATION_REJECT, now)
        else:
            self._state.count("messages_ignored")
            self._score.reject_message(source, msg_id, msg.topic, RejectReason.VALIDATION_IGNORE, now)

    def _accept(self, msg_id: bytes, msg: Message, encoded: bytes, source: PeerId, now: float) -> None:
        state = self._state
        self._score.deliver_message(source, msg_id, msg.topic, now)
        self._mcache.put(msg_id, msg, encoded)
        if msg.topic in state.subscriptions:  # we may have left the topic while the application validated
            state.events.append(Deliver(msg_id, msg, source))
            state.count("delivered")
        author = msg.from_peer
        targets = [
            p for p in state.mesh.get(msg.topic, ())
            if p != source and p.to_bytes() != author and msg_id not in state.peers[p].dont_want
        ]
        if targets:
            rpc = encode_publish([encoded])
            for peer in targets:
                state.send_raw(peer, rpc)
            state.count("forwarded", len(targets))

    # --- control messages -----------------------------------------------------------------------------------------

    def _handle_control(self, info: PeerState, control: ControlMessage, now: float) -> None:
        """IHAVE and IWANT (gossip), GRAFT and PRUNE (mesh), IDONTWANT; the answers go back in one RPC."""
        if control.idontwant:
            self._handle_dont_want(info, control.idontwant)
        iwant = self._handle_ihave(info, control.ihave, now) if control.ihave else None
        messages = self._handle_iwant(info, control.iwant, now) if control.iwant else []
        prunes = self._handle_graft(info, control.graft, now) if control.graft else []
        if control.prune:
            self._handle_prune(info, control.prune, now)
        if iwant is None and not messages and not prunes:
            return
        reply = ControlMessage(iwant=(iwant,) if iwant else (), prune=tuple(prunes))
        for data in encode_rpcs(messages, reply, self._params.rpc_limits.max_rpc_size):
            self._state.send_raw(info.peer, data)

    def _handle_dont_want(self, info: PeerState, entries: tuple[IDontWant, ...]) -> None:
        left = self._params.max_idontwant_messages - info.dont_want_count
        tick = self._state.heartbeat_ticks
        for entry in entries:
            for msg_id in entry.message_ids[: max(left, 0)]:
                info.dont_want[msg_id] = tick
            left -= len(entry.message_ids)
        info.dont_want_count = self._params.max_idontwant_messages - max(left, 0)

    def _handle_ihave(self, info: PeerState, entries: tuple[IHave, ...], now: float) -> IWant | None:
        """Ask for announced messages we have not seen, within max_ihave_messages IHAVEs and max_ihave_length ids
        per peer per heartbeat; remember one asked id as the peer's promise (v1.1 "Spam Protection Measures")."""
        params, state = self._params, self._state
        if self._score.score(info.peer, now) < params.gossip_threshold:
            return None
        info.ihave_count += 1
        if info.ihave_count > params.max_ihave_messages or info.asked >= params.max_ihave_length:
            state.count("ihave_ignored")
            return None
        wanted: dict[bytes, None] = {}
        for entry in entries:
            if entry.topic in state.subscriptions:
                for msg_id in entry.message_ids:
                    if msg_id not in self._seen:
                        wanted[msg_id] = None
        if not wanted:
            return None
        ids = state.sample(wanted, params.max_ihave_length - info.asked)
        info.asked += len(ids)
        promised = state.promises.setdefault(state.rng.choice(ids), {})
        promised.setdefault(info.peer, now + params.iwant_followup_time)  # asking again does not extend it
        state.count("iwant_sent", len(ids))
        return IWant(tuple(ids))

    def _handle_iwant(self, info: PeerState, entries: tuple[IWant, ...], now: float) -> list[bytes]:
        """The asked messages still in the cache (encoded), each at most gossip_retransmission times per peer."""
        if self._score.score(info.peer, now) < self._params.gossip_threshold:
            return []
        found = []
        for entry in entries:
            for msg_id in entry.message_ids:
                cached, count = self._mcache.ask(msg_id, info.peer)
                if cached is None or count > self._params.gossip_retransmission or msg_id in info.dont_want:
                    continue
                found.append(cached.encoded)
        self._state.count("iwant_served", len(found))
        return found

    def _handle_graft(self, info: PeerState, grafts: tuple[Graft, ...], now: float) -> list[Prune]:
        """Join the peer to our meshes, or answer PRUNE: during a backoff (penalised, twice when within
        graft_flood_threshold of our PRUNE), with a negative score, or when the mesh is full and the peer is
        inbound (v1.1 "Prune Backoff", "Outbound Mesh Quotas"). GRAFTs for topics we do not join are ignored."""
        state, params, peer = self._state, self._params, info.peer
        prunes: list[tuple[str, bool]] = []  # (topic, PX allowed)
        px = True
        score = self._score.score(peer, now)
        for graft in grafts:
            mesh = state.mesh.get(graft.topic)
            if mesh is None:
                px = False  # no PX for an unknown topic: it would leak our peers (go-libp2p-pubsub)
                continue
            if peer in mesh:
                continue
            until = state.backoff.get((graft.topic, peer))
            if until is not None and until > now:
                self._score.add_penalty(peer, 1)
                if now < until - params.prune_backoff + params.graft_flood_threshold:
                    self._score.add_penalty(peer, 1)
                state.count("grafts_in_backoff")
                px = False
                prunes.append((graft.topic, False))
            elif score < 0:
                prunes.append((graft.topic, False))
            elif len(mesh) >= params.D_hi and not info.outbound:
                prunes.append((graft.topic, True))
            else:
                mesh[peer] = None
                self._score.graft(peer, graft.topic, now)
        answers = []
        for topic, allowed in prunes:
            state.add_backoff(topic, peer, params.prune_backoff, now)
            answers.append(state.make_prune(peer, topic, params.prune_backoff, px=px and allowed and score >= 0,
                                            now=now))
        state.count("prunes_sent", len(answers))
        return answers

    def _handle_prune(self, info: PeerState, prunes: tuple[Prune, ...], now: float) -> None:
        """Leave the peer out of the mesh for the backoff it asks, and dial the peers it suggests
        when it scores at least accept_px_threshold (v1.1 "Peer Exchange")."""
        state, params, peer = self._state, self._params, info.peer
        for prune in prunes:
            mesh = state.mesh.get(prune.topic)
            if mesh is not None and peer in mesh:
                del mesh[peer]
                self._score.prune(peer, prune.topic, now)
            backoff = params.prune_backoff if prune.backoff is None else prune.backoff
            state.add_backoff(prune.topic, peer, backoff, now)
            if prune.peers and self._score.score(peer, now) >= params.accept_px_threshold:
                self._dial_suggestions(prune.peers[: params.prune_peers])

    def _dial_suggestions(self, infos: tuple[PeerInfo, ...]) -> None:
        for suggestion in infos:
            if suggestion.peer_id is None:
                continue
            try:
                peer = PeerId(suggestion.peer_id)
            except PeerIdError:
                continue
            if peer != self.peer_id and peer not in self._state.peers:
                self._state.events.append(Dial(peer, suggestion.signed_peer_record))
                self._state.count("px_dials")


def _next_after(due: float, interval: float, now: float) -> float:
    """The next multiple of interval after due that is later than now."""
    due += interval
    if due <= now:
        due += ((now - due) // interval + 1) * interval
    return due
