"""GossipSub at scale: thousands of unchanged sans-I/O `GossipSub` routers on a simulated network, in one process.

Every RPC is real protobuf bytes through `GossipSub.handle_rpc` (encoding, decoding, Ed25519 signing and
verification, scoring included: that is the code under test). The network is a discrete-event simulation: one heap
of events ordered by simulated time (RPC arrivals, node timers from `next_wakeup()` — stale ones are skipped when
popped —, publications, attacker bursts); the clock jumps from one event to the next, nothing sleeps.

- Nodes: N routers with distinct Ed25519 identities and distinct IPv4 addresses (10.a.b.c), all subscribed to one
  topic. Each dials `--dials` (default 8..10) others chosen at random; both ends `add_peer` (the dialler outbound).
- Links: each has a one-way latency drawn once from `--latency` (default 10..100 ms); each node's uplink sends one
  RPC after the other at `--bandwidth` (default 10 Mbit/s), so RPCs of one link keep their order and a node that
  forwards a message to its mesh sends the copies one after another (the window in which an IDONTWANT can arrive
  first: with no serialisation delay an IDONTWANT could never overtake the copy it is meant to stop). After the
  warm-up a share `--loss` (default 1 %) of all RPCs is dropped at random (control messages too).
- Warm-up: subscriptions and `--warmup` simulated seconds of heartbeats (mesh building), no loss.
- Measuring: `--messages` messages of `--size` bytes published by random honest nodes, one every `--interval`
  seconds, then `--drain` seconds for gossip (IHAVE/IWANT) to repair what loss broke.
  * delivery rate: honest subscribers that got `Deliver` for a message / (honest subscribers - its publisher);
  * hops: carried by the simulator, not the protocol: the publisher is hop 0 and a node's hop is its first
    sender's hop + 1 (`Deliver.source`), p50/p99 over all deliveries; latency likewise from the publication time;
  * amplification: copies of honest messages received by honest nodes (publish entries in the RPCs they were
    handed, duplicates included) / deliveries;
  * the lowest score an honest node gives an honest peer at the end, and how many such links are negative.
- Attack (`--attackers 0.1`): that share of the nodes run the same router (so they join meshes during the warm-up)
  and, from the start of the measured phase, also send each of their peers an RPC with `--attack-batch` messages
  carrying bad signatures every `--attack-interval` seconds. Reported: the share of (honest node, attacker) links
  where the honest node scores the attacker below the graylist threshold at the end, when 50/99/100 % of them first
  were (probed every 0.1 simulated seconds), and the honest delivery rate.
- IDONTWANT (gossipsub v1.2) is on unless `--no-idontwant`; `--both` runs each size twice, with and without.

One JSON line per run. CPU seconds (process time) and wall seconds cover the whole run, building included.

    python bench/gossip_sim.py [--nodes 1000,10000] [--messages 20] [--attackers 0.1] [--both] [--seed 1]

Measured 2026-12-02 on the shared 2-core VM (defaults: 4 KiB messages, 10 Mbit/s uplinks, 10..100 ms, 1 % loss):
every run delivered 100 % (no message twice to one application), and no honest node scored an honest peer below 0.

| nodes | IDONTWANT | attackers | hops p50/p99 | latency p50/p99 ms | amplification | graylisted | CPU s |
|------:|-----------|----------:|-------------:|-------------------:|--------------:|-----------:|------:|
| 1,000 | on        | 0         | 4 / 7        | 182 / 253          | 7.36          |            | 21    |
| 1,000 | off       | 0         | 4 / 7        | 180 / 248          | 7.86          |            | 15    |
| 1,000 | on        | 100       | 4 / 7        | 180 / 250          | 6.84          | 100 % in 0.2 s | 28 |
| 10,000 | on       | 0         | 5 / 8        | 243 / 309          | 7.38          |            | 293   |
| 10,000 | off      | 0         | 5 / 8        | 241 / 309          | 7.88          |            | 176   |
| 10,000 | on       | 1,000     | 5 / 8        | 249 / 320          | 6.76          | 100 % in 0.2 s | 407 |

IDONTWANT saves ~6 % of the copies here: it can only stop a copy its peer has not sent yet, and with 4 KiB messages
the window is the few ms the copies wait on an uplink. Meshes settle at 8.9 peers on average, not D=6 (every node
grafts 6 at once during the warm-up and accepts GRAFTs up to D_hi), hence ~7.4-7.9 copies per delivery. In the
attack runs the attackers' negative scores get them pruned from the honest meshes, so fewer copies pass through them.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, replace

from peerloom.apps.pubsub.params import GossipParams
from peerloom.apps.pubsub.router import Deliver, GossipSub, SendRpc
from peerloom.apps.pubsub.rpc import RPC, Message, encode_rpc
from peerloom.apps.pubsub.score import PeerScore, ScoreParams
from peerloom.codec.varint import decode_varint
from peerloom.identity import Identity, PeerId

TOPIC = "peerloom-sim"
PROTOCOL = "/meshsub/1.2.0"
RPC_PUBLISH_KEY = 2 << 3 | 2  # rpc.proto: RPC.publish, field 2, length-delimited
# event kinds, in the heap as (time, sequence, kind, a, b, payload)
RPC_ARRIVES, ATTACK_ARRIVES, TIMER, PUBLISH, ATTACK, PROBE = 0, 1, 2, 3, 4, 5
PROBE_INTERVAL = 0.1  # simulated seconds between looks at how many attacker links are graylisted


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 1000
    messages: int = 20
    size: int = 4096
    dials: tuple[int, int] = (8, 10)
    latency: tuple[float, float] = (0.010, 0.100)
    bandwidth: float = 10e6  # bits/s of each node's uplink; 0: unlimited
    loss: float = 0.01
    warmup: float = 10.0
    interval: float = 0.2
    drain: float = 10.0
    idontwant: bool = True
    attackers: float = 0.0
    attack_interval: float = 0.05
    attack_batch: int = 4
    seed: int = 1


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class Simulation:
    """One network of routers and the event heap that drives it."""

    def __init__(self, config: SimConfig, *, progress: bool = False) -> None:
        self.config = config
        self.progress = progress
        self.rng = random.Random(config.seed)
        n = config.nodes
        self.identities = [Identity.generate() for _ in range(n)]
        self.ids: list[PeerId] = [identity.peer_id for identity in self.identities]
        self.index = {peer: i for i, peer in enumerate(self.ids)}
        attackers = round(n * config.attackers)
        self.attacker = [False] * n
        for i in self.rng.sample(range(n), attackers):
            self.attacker[i] = True
        params = self.params = self.gossip_params()
        self.routers = [
            GossipSub(
                identity, params=params, score=PeerScore(ScoreParams()), rng=random.Random(self.rng.random())
            )
            for identity in self.identities
        ]
        self.links: list[dict[int, float]] = [{} for _ in range(n)]
        self.heap: list[tuple[float, int, int, int, int, object]] = []
        self.sequence = 0
        self.wakeup: list[float | None] = [None] * n
        self.uplink_free = [0.0] * n  # when each node's uplink has sent what is queued on it
        self.now = 0.0
        self.lossy = False
        # measurements
        self.published: dict[bytes, tuple[int, float]] = {}  # msg_id -> (publisher, time)
        self.hops: dict[bytes, dict[int, int]] = {}
        self.deliveries: list[tuple[int, float]] = []  # (hop, latency) of each delivery to an honest node
        self.copies = 0
        self.attack_start = 0.0
        self.graylisted_after: dict[str, float] = {}  # "50%", "99%", "100%" -> simulated seconds into the attack
        self.rpcs = 0
        self.dropped = 0
        self._counted: tuple[bytes, int] = (b"", 0)

    def gossip_params(self) -> GossipParams:
        params = GossipParams()
        if not self.config.idontwant:
            params = replace(params, idontwant_min_size=1 << 62)
        return params

    # --- the network ----------------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Each node dials a few random others; latencies drawn once per link."""
        n = self.config.nodes
        lo, hi = self.config.dials
        for i in range(n):
            want = self.rng.randint(lo, hi)
            for j in [j for j in self.rng.sample(range(n), min(n, want + 1)) if j != i][:want]:
                if j in self.links[i]:
                    continue
                latency = self.rng.uniform(*self.config.latency)
                self.links[i][j] = self.links[j][i] = latency
                self.routers[i].add_peer(self.ids[j], PROTOCOL, outbound=True, ip=self.ip(j), now=self.now)
                self.routers[j].add_peer(self.ids[i], PROTOCOL, outbound=False, ip=self.ip(i), now=self.now)
        for i in range(n):
            self.after(i)

    @staticmethod
    def ip(i: int) -> str:
        return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"

    def push(self, at: float, kind: int, a: int, b: int = 0, payload: object = None) -> None:
        self.sequence += 1
        heapq.heappush(self.heap, (at, self.sequence, kind, a, b, payload))

    def after(self, i: int) -> None:
        """Route what node i produced and re-arm its timer."""
        router = self.routers[i]
        for event in router.take_events():
            if isinstance(event, SendRpc):
                self.send(i, self.index[event.peer], event.data)
            elif isinstance(event, Deliver):
                self.delivered(i, event)
        wake = router.next_wakeup()
        if wake is not None and (self.wakeup[i] is None or wake < self.wakeup[i]):
            self.wakeup[i] = wake
            self.push(wake, TIMER, i)

    def send(self, i: int, j: int, data: bytes, kind: int = RPC_ARRIVES) -> None:
        self.rpcs += 1
        if self.lossy and self.rng.random() < self.config.loss:
            self.dropped += 1
            return
        start = self.now
        if self.config.bandwidth:
            start = max(start, self.uplink_free[i]) + len(data) * 8 / self.config.bandwidth
            self.uplink_free[i] = start
        self.push(start + self.links[i][j], kind, i, j, data)

    def count_messages(self, data: bytes) -> int:
        """Publish entries in an RPC (the forwarding path sends one bytes object to many peers: count it once)."""
        last, count = self._counted
        if data is not last:
            count = pos = 0
            while pos < len(data):  # top-level fields only: a key byte (fields 1..3), a length, the body
                key = data[pos]
                length, pos = decode_varint(data, pos + 1)
                pos += length
                count += key == RPC_PUBLISH_KEY
            self._counted = (data, count)
        return count

    def delivered(self, i: int, event: Deliver) -> None:
        hops = self.hops.get(event.msg_id)
        if hops is None:  # not one of ours (cannot happen: attackers' messages never validate)
            return
        hop = hops[self.index[event.source]] + 1
        hops[i] = hop
        if not self.attacker[i]:
            self.deliveries.append((hop, self.now - self.published[event.msg_id][1]))

    # --- the loop -------------------------------------------------------------------------------------------------

    def run_until(self, end: float) -> None:
        heap = self.heap
        routers = self.routers
        while heap and heap[0][0] <= end:
            at, sequence, kind, a, b, payload = heapq.heappop(heap)
            if self.progress and not sequence & 0x3FFFF:
                print(f"sim t={at:.2f}s events={sequence} heap={len(heap)}", file=sys.stderr, flush=True)
            self.now = at
            if kind in (RPC_ARRIVES, ATTACK_ARRIVES):
                if kind == RPC_ARRIVES and not self.attacker[b]:
                    self.copies += self.count_messages(payload)
                routers[b].handle_rpc(self.ids[a], payload, at)
                self.after(b)
            elif kind == TIMER:
                if self.wakeup[a] != at:
                    continue
                self.wakeup[a] = None
                routers[a].tick(at)
                self.after(a)
            elif kind == PUBLISH:
                self.publish(a)
            elif kind == ATTACK:
                self.attack(a, b)
            elif kind == PROBE:
                self.probe()
        self.now = end

    def publish(self, i: int) -> None:
        data = self.rng.randbytes(self.config.size)
        result = self.routers[i].publish(TOPIC, data, self.now)
        self.published[result.msg_id] = (i, self.now)
        self.hops[result.msg_id] = {i: 0}
        self.after(i)

    def attack(self, i: int, serial: int) -> None:
        """Attacker i sends each of its peers a batch of messages with bad signatures, and schedules its next one."""
        batch = []
        for k in range(self.config.attack_batch):
            seqno = (serial * self.config.attack_batch + k).to_bytes(8, "big")
            data = self.rng.randbytes(64)
            batch.append(Message(TOPIC, data, self.ids[i].to_bytes(), seqno, self.rng.randbytes(64)))
        rpc = encode_rpc(RPC(publish=tuple(batch)))
        for j in self.links[i]:
            self.send(i, j, rpc, ATTACK_ARRIVES)
        self.push(self.now + self.config.attack_interval, ATTACK, i, serial + 1)

    # --- the experiment -------------------------------------------------------------------------------------------

    def run(self) -> dict[str, object]:
        config = self.config
        cpu, wall = time.process_time(), time.perf_counter()
        self.connect()
        for i, router in enumerate(self.routers):
            router.subscribe(TOPIC, self.now)
            self.after(i)
        self.run_until(config.warmup)
        self.lossy = True
        honest = [i for i in range(config.nodes) if not self.attacker[i]]
        start = self.now
        for i in range(config.nodes):
            if self.attacker[i]:
                self.push(start + self.rng.uniform(0, config.attack_interval), ATTACK, i, 0)
        if self.config.attackers:
            self.attack_start = start
            self.push(start, PROBE, 0)
        for k in range(config.messages):
            self.push(start + k * config.interval, PUBLISH, self.rng.choice(honest))
        end = start + config.messages * config.interval + config.drain
        self.run_until(end)
        expected = config.messages * (len(honest) - 1)
        delivered = len(self.deliveries)
        reached = sum(1 for msg_id, hops in self.hops.items() for i in hops
                      if not self.attacker[i] and i != self.published[msg_id][0])
        result: dict[str, object] = {
            "nodes": config.nodes,
            "messages": config.messages,
            "idontwant": config.idontwant,
            "attackers": sum(self.attacker),
            "links": sum(len(peers) for peers in self.links) // 2,
            "delivery_rate": round(reached / expected, 6) if expected else None,
            "app_duplicates": delivered - reached,  # a message delivered twice to one node (must be 0)
            "hops_p50": percentile([h for h, _ in self.deliveries], 50) if delivered else None,
            "hops_p99": percentile([h for h, _ in self.deliveries], 99) if delivered else None,
            "latency_ms_p50": round(1000 * percentile([t for _, t in self.deliveries], 50), 1) if delivered else None,
            "latency_ms_p99": round(1000 * percentile([t for _, t in self.deliveries], 99), 1) if delivered else None,
            "amplification": round(self.copies / delivered, 3) if delivered else None,
            "rpcs": self.rpcs,
            "rpcs_dropped": self.dropped,
        }
        result.update(self.honest_scores())
        if config.attackers:
            result.update(self.graylisted())
        result["cpu_s"] = round(time.process_time() - cpu, 1)
        result["wall_s"] = round(time.perf_counter() - wall, 1)
        return result

    def honest_scores(self) -> dict[str, object]:
        """Scores honest nodes give one another at the end: the lowest, and links where it is negative."""
        lowest, negative = math.inf, 0
        for i, router in enumerate(self.routers):
            if self.attacker[i]:
                continue
            for j in self.links[i]:
                if not self.attacker[j]:
                    score = router.peer_score(self.ids[j], self.now)
                    lowest = min(lowest, score)
                    negative += score < 0
        return {"honest_score_min": round(lowest, 3), "honest_negative_links": negative}

    def attacker_links(self) -> tuple[int, int]:
        """(honest node, attacker) links, and how many of them have the attacker below the graylist threshold."""
        links = below = 0
        for i, router in enumerate(self.routers):
            if self.attacker[i]:
                continue
            for j in self.links[i]:
                if self.attacker[j]:
                    links += 1
                    below += router.peer_score(self.ids[j], self.now) < self.params.graylist_threshold
        return links, below

    def probe(self) -> None:
        """Note when 50 %, 99 % and all attacker links are first graylisted; look again until all are."""
        links, below = self.attacker_links()
        for share in (50, 99, 100):
            if below * 100 >= share * links and f"{share}%" not in self.graylisted_after:
                self.graylisted_after[f"{share}%"] = round(self.now - self.attack_start, 3)
        if below < links:
            self.push(self.now + PROBE_INTERVAL, PROBE, 0)

    def graylisted(self) -> dict[str, object]:
        links, below = self.attacker_links()
        return {
            "attacker_links": links,
            "graylisted_fraction": round(below / links, 6) if links else None,
            "graylisted_after_s": self.graylisted_after,
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1000,10000", help="comma-separated network sizes")
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096, help="bytes of data per message")
    parser.add_argument("--bandwidth", type=float, default=10.0, help="Mbit/s of each uplink; 0: unlimited")
    parser.add_argument("--loss", type=float, default=0.01)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--drain", type=float, default=10.0)
    parser.add_argument("--attackers", type=float, default=0.0, help="share of the nodes that flood bad messages")
    parser.add_argument("--no-idontwant", action="store_true")
    parser.add_argument("--both", action="store_true", help="each size with and without IDONTWANT")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def configs(args: argparse.Namespace) -> list[SimConfig]:
    runs = []
    for nodes in (int(text) for text in args.nodes.split(",")):
        for idontwant in ((True, False) if args.both else (not args.no_idontwant,)):
            runs.append(
                SimConfig(
                    nodes=nodes, messages=args.messages, size=args.size, bandwidth=args.bandwidth * 1e6,
                    loss=args.loss, warmup=args.warmup,
                    interval=args.interval, drain=args.drain, idontwant=idontwant, attackers=args.attackers,
                    seed=args.seed,
                )
            )
    return runs


def main(argv: list[str] | None = None) -> None:
    for config in configs(parse_args(argv)):
        print(json.dumps(Simulation(config, progress=True).run()), flush=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip tearing down 10,000 routers one object at a time
