"""The GossipSub heartbeat (gossipsub v1.0 "Heartbeat", v1.1 "Mesh Maintenance" and "Gossip Emission"):
keep each mesh between D_lo and D_hi with D_out outbound peers and the best D_score by score, graft
opportunistically, keep fanouts alive for fanout_ttl, announce recent messages (IHAVE) to D_lazy other peers,
penalise broken IWANT promises, and age the caches.

Scores are read once per peer per heartbeat. Everything the heartbeat decides is queued on the state's outbox
and sent as one RPC per peer.
"""

from __future__ import annotations

from peerloom.apps.pubsub.mcache import MessageCache
from peerloom.apps.pubsub.router_state import RouterState
from peerloom.apps.pubsub.rpc import IHave
from peerloom.identity import PeerId

_BACKOFF_CLEANUP_TICKS = 15  # js GossipsubPruneBackoffTicks


class Heartbeat:
    """Runs one heartbeat at a time over the router's state and message cache."""

    def __init__(self, state: RouterState, mcache: MessageCache) -> None:
        self._state = state
        self._mcache = mcache
        self._scores: dict[PeerId, float] = {}
        self._now = 0.0

    def _score(self, peer: PeerId) -> float:
        value = self._scores.get(peer)
        if value is None:
            value = self._scores[peer] = self._state.score.score(peer, self._now)
        return value

    def run(self, now: float) -> None:
        state = self._state
        self._now = now
        self._scores.clear()
        state.heartbeat_ticks += 1
        state.count("heartbeats")
        self._reset_peer_counters()
        self._penalise_broken_promises(now)
        for topic in list(state.mesh):
            self._maintain_mesh(topic, now)
        self._maintain_fanout(now)
        for topic, mesh in state.mesh.items():
            self._emit_gossip(topic, mesh)
        for topic, fanout in state.fanout.items():
            self._emit_gossip(topic, fanout)
        state.flush_control()
        self._mcache.shift()
        if state.heartbeat_ticks % _BACKOFF_CLEANUP_TICKS == 0:
            state.backoff = {key: until for key, until in state.backoff.items() if until > now}

    def _reset_peer_counters(self) -> None:
        """Per-heartbeat limits start again; IDONTWANT ids are forgotten once the message left every mcache
        window (js: after mcache_len heartbeats)."""
        oldest = self._state.heartbeat_ticks - self._state.params.mcache_len
        for peer in self._state.peers.values():
            peer.ihave_count = peer.asked = peer.dont_want_count = 0
            if peer.dont_want:
                peer.dont_want = {i: tick for i, tick in peer.dont_want.items() if tick > oldest}

    def _penalise_broken_promises(self, now: float) -> None:
        """A peer that announced a message (IHAVE) and did not send it within iwant_followup_time of our IWANT
        gets a behaviour penalty per broken promise (v1.1 "Spam Protection Measures")."""
        broken: dict[PeerId, int] = {}
        for msg_id in list(self._state.promises):
            peers = self._state.promises[msg_id]
            for peer, deadline in list(peers.items()):
                if deadline < now:
                    del peers[peer]
                    broken[peer] = broken.get(peer, 0) + 1
            if not peers:
                del self._state.promises[msg_id]
        for peer, count in broken.items():
            if peer in self._state.peers:
                self._state.score.add_penalty(peer, count)
                self._state.count("broken_promises", count)

    # --- mesh -----------------------------------------------------------------------------------------------------

    def _candidates(self, topic: str, mesh: dict[PeerId, None], now: float, *, outbound_only: bool = False,
                    above: float = 0.0, strictly: bool = False) -> list[PeerId]:
        """Peers of the topic that may join its mesh: not in it, not backing off, scoring at least `above`
        (more than, when strictly)."""
        state = self._state
        found = []
        for peer in state.topic_peers.get(topic, ()):
            if peer in mesh or state.in_backoff(topic, peer, now):
                continue
            if outbound_only and not state.peers[peer].outbound:
                continue
            score = self._score(peer)
            if score > above or (score == above and not strictly):
                found.append(peer)
        return found

    def _maintain_mesh(self, topic: str, now: float) -> None:
        state, params = self._state, self._state.params
        mesh = state.mesh[topic]
        for peer in [p for p in mesh if self._score(p) < 0]:  # v1.1: negative-score peers leave, without PX
            state.prune(topic, peer, now, px=False)
        if len(mesh) < params.D_lo:
            for peer in state.sample(self._candidates(topic, mesh, now), params.D - len(mesh)):
                state.graft(topic, peer, now)
        elif len(mesh) > params.D_hi:
            self._shrink(topic, mesh, now)
        if len(mesh) >= params.D_lo:
            outbound = sum(1 for p in mesh if state.peers[p].outbound)
            if outbound < params.D_out:
                wanted = params.D_out - outbound
                for peer in state.sample(self._candidates(topic, mesh, now, outbound_only=True), wanted):
                    state.graft(topic, peer, now)
        ticks = params.opportunistic_graft_ticks
        if ticks and state.heartbeat_ticks % ticks == 0 and len(mesh) > 1:
            self._opportunistic_graft(topic, mesh, now)

    def _shrink(self, topic: str, mesh: dict[PeerId, None], now: float) -> None:
        """Keep D peers: the D_score best by score, the rest at random, with at least D_out outbound ones among
        them (v1.1 "Mesh Maintenance"); prune the others."""
        state, params = self._state, self._state.params
        ranked = list(mesh)
        state.rng.shuffle(ranked)  # ties in score fall at random
        ranked.sort(key=self._score, reverse=True)
        rest = ranked[params.D_score :]
        state.rng.shuffle(rest)
        keep, drop = ranked[: params.D_score] + rest[: params.D - params.D_score], rest[params.D - params.D_score :]
        missing = params.D_out - sum(1 for p in keep if state.peers[p].outbound)
        if missing > 0:
            extra = [p for p in drop if state.peers[p].outbound][:missing]
            inbound = [p for p in reversed(keep) if not state.peers[p].outbound][: len(extra)]
            for add, remove in zip(extra, inbound, strict=False):
                keep[keep.index(remove)] = add
                drop[drop.index(add)] = remove
        for peer in drop:
            state.prune(topic, peer, now, px=True)

    def _opportunistic_graft(self, topic: str, mesh: dict[PeerId, None], now: float) -> None:
        """When the mesh's median score is below opportunistic_graft_threshold, graft a few better peers
        (v1.1 "Opportunistic Grafting")."""
        params = self._state.params
        scores = sorted(self._score(p) for p in mesh)
        median = scores[len(scores) // 2]
        if median >= params.opportunistic_graft_threshold:
            return
        better = self._candidates(topic, mesh, now, above=median, strictly=True)
        for peer in self._state.sample(better, params.opportunistic_graft_peers):
            self._state.graft(topic, peer, now)
            self._state.count("opportunistic_grafts")

    # --- fanout and gossip ----------------------------------------------------------------------------------------

    def _maintain_fanout(self, now: float) -> None:
        """Forget fanouts unused for fanout_ttl; keep the others at D peers above the publish threshold."""
        state, params = self._state, self._state.params
        for topic, last in list(state.fanout_last_publish.items()):
            if last + params.fanout_ttl < now:
                del state.fanout_last_publish[topic]
                state.fanout.pop(topic, None)
        for topic, fanout in state.fanout.items():
            subscribed = state.topic_peers.get(topic, {})
            for peer in [p for p in fanout if p not in subscribed or self._score(p) < params.publish_threshold]:
                del fanout[peer]
            if len(fanout) < params.D:
                pool = [p for p in subscribed if p not in fanout and self._score(p) >= params.publish_threshold]
                for peer in state.sample(pool, params.D - len(fanout)):
                    fanout[peer] = None

    def _emit_gossip(self, topic: str, exclude: dict[PeerId, None]) -> None:
        """IHAVE of the topic's recent message ids to max(D_lazy, gossip_factor x eligible) peers outside the
        mesh (or fanout) that score at least gossip_threshold."""
        ids = self._mcache.gossip_ids(topic)
        if not ids:
            return
        state, params = self._state, self._state.params
        eligible = [
            p for p in state.topic_peers.get(topic, ())
            if p not in exclude and self._score(p) >= params.gossip_threshold
        ]
        if not eligible:
            return
        target = max(params.D_lazy, int(len(eligible) * params.gossip_factor))
        for peer in state.sample(eligible, target):
            chosen = ids
            if len(ids) > params.max_ihave_length:  # a random subset keeps every message a chance to be gossiped
                chosen = state.rng.sample(ids, params.max_ihave_length)
            state.queue_ihave(peer, IHave(topic, tuple(chosen)))
