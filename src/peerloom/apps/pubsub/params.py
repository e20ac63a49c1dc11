"""The GossipSub router's parameters, by their names in the gossipsub v1.0/v1.1/v1.2 specs, with the defaults the
specs and js-libp2p @libp2p/gossipsub 17 use (constants.ts). Times are in seconds.

The score thresholds (gossipsub v1.1, "Score Thresholds") live here too: the router compares scores with them,
while score.py computes the scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peerloom.apps.pubsub.rpc import RpcLimits

MESHSUB_V10 = "/meshsub/1.0.0"
MESHSUB_V11 = "/meshsub/1.1.0"
MESHSUB_V12 = "/meshsub/1.2.0"
PROTOCOLS = (MESHSUB_V12, MESHSUB_V11, MESHSUB_V10)  # by preference


@dataclass(frozen=True)
class GossipParams:
    """Mesh degree, timing, gossip and v1.1/v1.2 hardening parameters of one router."""

    # mesh degree (v1.0 "Parameters"; D_score and D_out from v1.1 "Mesh Maintenance")
    D: int = 6
    D_lo: int = 4
    D_hi: int = 12
    D_score: int = 4
    D_out: int = 2
    D_lazy: int = 6
    # timing
    heartbeat_interval: float = 1.0
    heartbeat_initial_delay: float = 0.1  # js: 100 ms after start
    fanout_ttl: float = 60.0
    seen_ttl: float = 120.0
    # message cache and gossip (v1.0 "Message Cache", v1.1 "Gossip Emission")
    mcache_len: int = 5
    mcache_gossip: int = 3
    gossip_factor: float = 0.25
    gossip_retransmission: int = 3  # times one peer may IWANT the same message from us
    max_ihave_length: int = 5000  # ids we ask one peer for per heartbeat, and ids in one IHAVE we send
    max_ihave_messages: int = 10  # IHAVE RPCs handled per peer per heartbeat
    iwant_followup_time: float = 3.0  # a promised message must arrive this soon after our IWANT
    # PRUNE, backoff and peer exchange (v1.1 "Prune Backoff and Peer Exchange")
    prune_backoff: float = 60.0
    unsubscribe_backoff: float = 10.0
    backoff_slack: float = 2.0  # we GRAFT this long after a backoff ends (go-libp2p: two heartbeats), never early
    graft_flood_threshold: float = 10.0
    do_px: bool = False
    prune_peers: int = 16
    # v1.1 hardening
    flood_publish: bool = True
    opportunistic_graft_ticks: int = 60
    opportunistic_graft_peers: int = 2
    gossip_threshold: float = -10.0
    publish_threshold: float = -50.0
    graylist_threshold: float = -80.0
    accept_px_threshold: float = 10.0
    opportunistic_graft_threshold: float = 5.0
    score_refresh_interval: float = 1.0  # how often PeerScore.refresh runs: ScoreParams.decay_interval
    # v1.2 IDONTWANT
    idontwant_min_size: int = 512  # js GossipsubIdontwantMinDataSize
    max_idontwant_messages: int = 512  # ids accepted per peer per heartbeat
    max_peer_topics: int = 1000  # topics remembered per peer (js bounds them at 1 MiB of topic entries per peer)
    # messages awaiting the application's verdict (validate=True) are dropped after this long
    validation_timeout: float = 30.0
    rpc_limits: RpcLimits = field(default_factory=RpcLimits)

    def __post_init__(self) -> None:
        # v1.1 "Mesh Maintenance": D_out < D_lo and D_out <= D/2; D_lo <= D <= D_hi; D_score <= D
        if not (0 <= self.D_lo <= self.D <= self.D_hi and 0 <= self.D_score <= self.D):
            raise ValueError("gossipsub needs D_lo <= D <= D_hi and D_score <= D")
        if self.D_out >= max(self.D_lo, 1) or self.D_out > self.D // 2:
            raise ValueError("gossipsub needs D_out < D_lo and D_out <= D/2")
        if not 0 < self.mcache_gossip <= self.mcache_len:
            raise ValueError("gossipsub needs 0 < mcache_gossip <= mcache_len")
        # v1.1 "Overview of New Parameters": the constraints of the score thresholds
        if not self.graylist_threshold < self.publish_threshold <= self.gossip_threshold < 0:
            raise ValueError("score thresholds need graylist < publish <= gossip < 0")
        if self.accept_px_threshold < 0 or self.opportunistic_graft_threshold < 0:
            raise ValueError("accept_px_threshold and opportunistic_graft_threshold must be >= 0")
