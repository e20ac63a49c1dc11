"""The 50-node pub/sub mesh on loopback: the plan (made by the test) and the worker processes that run it.

A plan names every node (its home, whose key is its identity across restarts, and its fixed secure port), the few
peers each one dials, when each churning node leaves and comes back, and which node publishes which message when.
Every time in a plan is in seconds after T0, a `time.monotonic()` moment (one clock for every process of this
machine) that the test hands the workers once the mesh has formed:

    worker → test: "ready"        (its nodes listen)
    test → worker: "connect"      (each node subscribes and dials its plan peers)
    worker → test: "meshed"       (each of its nodes has MESHED mesh peers)
    test → worker: "start T0"
    worker → test: "result JSON"  (at T0 + plan.end: publishes, receipts, live intervals, all monotonic times)

Each worker runs its share of the nodes in one event loop (uvloop when installed). A node keeps at least
`min_peers` connections by dialling random plan members when it has fewer (the stand-in for a discovery service:
peers whose neighbours left would otherwise stay alone), and a restarted node dials its plan peers again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from peerloom.apps.pubsub.score import ScoreParams
from peerloom.apps.pubsub.service import PubSubService
from peerloom.identity import Identity
from peerloom.node import Node
from peerloom.settings import Settings

TOPIC = "peerloom-mesh/test"
MESHED = 2  # mesh peers every node has before the test starts publishing
MESH_WAIT = 60.0


@dataclass
class NodePlan:
    index: int
    home: str
    port: int
    peer_id: str
    dials: list[int]  # indices of the nodes it dials at T0 and after each restart
    downtimes: list[tuple[float, float]] = field(default_factory=list)  # (leaves at, back at), after T0


@dataclass
class Plan:
    nodes: list[NodePlan]
    publishes: list[tuple[float, int]]  # message k: (when, index of the publishing node)
    end: float  # the workers stop and report at T0 + end
    min_peers: int = 3

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Plan:
        raw = json.loads(path.read_text())
        nodes = [NodePlan(**{**n, "downtimes": [tuple(d) for d in n["downtimes"]]}) for n in raw["nodes"]]
        return cls(nodes, [tuple(p) for p in raw["publishes"]], raw["end"], raw["min_peers"])

    def addr(self, index: int) -> str:
        n = self.nodes[index]
        return f"/ip4/127.0.0.1/tcp/{n.port}/p2p/{n.peer_id}"


def make_plan(root: Path, *, nodes: int, ports: list[int], dials: int, churn: float, rate: float, publish_for: float,
              down_for: float, start_publishing: float, tail: float, seed: int) -> Plan:
    """A random plan: each node dials `dials` others; a `churn` fraction of the nodes leave once for `down_for`
    seconds, spread over the publishing time; stable nodes publish at `rate` messages a second."""
    rng = random.Random(seed)
    plans = []
    for i in range(nodes):
        home = root / f"node-{i}"
        identity = Identity.load_or_create(home)
        others = [j for j in range(nodes) if j != i]
        plans.append(NodePlan(i, str(home), ports[i], str(identity.peer_id), rng.sample(others, dials)))
    churning = rng.sample(range(nodes), round(churn * nodes))
    first, last = start_publishing + 1.0, start_publishing + publish_for - down_for - 1.0
    for n, i in enumerate(sorted(churning)):
        leave = first + (last - first) * n / max(1, len(churning) - 1)
        plans[i].downtimes.append((round(leave, 3), round(leave + down_for, 3)))
    stable = [i for i in range(nodes) if i not in churning]
    count = int(publish_for * rate)
    publishes = [(round(start_publishing + k / rate, 3), rng.choice(stable)) for k in range(count)]
    return Plan(plans, publishes, start_publishing + publish_for + tail)


# -- the worker -------------------------------------------------------------------------------------------------------


class MeshNode:
    """One plan node in a worker: started, stopped and restarted on schedule; what it received, and when it was up.
    Every time it records is a `time.monotonic()` reading."""

    def __init__(self, plan: Plan, index: int, records: dict) -> None:
        self.plan = plan
        self.me = plan.nodes[index]
        self.t0 = 0.0  # set when the test says "start"
        self.node: Node | None = None
        self.pubsub = PubSubService()
        self.incarnation = 0
        self.up = 0.0  # when this incarnation subscribed
        self.records = records  # shared by the worker's nodes: "received", "published", "live"
        self.rng = random.Random(index)

    async def start(self) -> None:
        settings = Settings(dht=False, lsd=False, public_bootstrap=False, trackers=False, secure_port=self.me.port,
                            pubsub=False)
        # every peer is on 127.0.0.1: whitelisted, or the IP colocation penalty (score P6, > 10 peers on one IP)
        # makes them all negative and the mesh empties
        self.pubsub = PubSubService(score_params=ScoreParams(ip_colocation_factor_whitelist=("127.0.0.0/8",)))
        self.node = Node(self.me.home, host="127.0.0.1", settings=settings, services=[self.pubsub])
        await self.node.start()
        self.incarnation += 1

    async def stop(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            await node.stop()

    async def join(self) -> None:
        """Subscribe and dial the plan peers."""
        sub = self.pubsub.subscribe(TOPIC)
        self.up = time.monotonic()
        asyncio.get_running_loop().create_task(self._read(sub, self.incarnation))
        await asyncio.gather(*(self._dial(j) for j in self.me.dials))

    def meshed(self) -> bool:
        return len(self.pubsub.mesh(TOPIC)) >= MESHED

    async def churn(self) -> None:
        """Leave and rejoin on schedule, stop at the end."""
        for leave, back in self.me.downtimes:
            await self._sleep_until(leave)
            self.records["live"].append((self.me.index, self.up, time.monotonic()))
            await self.stop()
            await self._sleep_until(back)
            await self.start()
            await self.join()
        await self._sleep_until(self.plan.end)
        self.records["live"].append((self.me.index, self.up, time.monotonic()))

    async def _dial(self, index: int) -> None:
        if self.node is None:
            return
        with contextlib.suppress(Exception):
            await self.node.secure_host.connect(self.plan.addr(index))

    async def _read(self, sub, incarnation: int) -> None:  # type: ignore[no-untyped-def]
        async for msg in sub:
            self.records["received"].append((self.me.index, incarnation, int(msg.data), time.monotonic()))

    async def keep_peers(self) -> None:
        """Every second: fewer than `min_peers` connections means dialling random plan members."""
        while True:
            await asyncio.sleep(1.0)
            node = self.node
            if node is None:
                continue
            missing = self.plan.min_peers - len(node.secure_host.connections)
            if missing > 0:
                others = [j for j in range(len(self.plan.nodes)) if j != self.me.index]
                await asyncio.gather(*(self._dial(j) for j in self.rng.sample(others, missing)))

    async def publish(self, k: int) -> None:
        if self.node is None:
            return
        now = time.monotonic()
        result = await self.pubsub.publish(TOPIC, b"%d" % k)
        self.records["published"].append((k, self.me.index, now, result.peers))

    async def _sleep_until(self, at: float) -> None:
        await asyncio.sleep(max(0.0, self.t0 + at - time.monotonic()))


async def command(expected: str) -> list[str]:
    """The next line the test sends, split; it must start with `expected`."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    words = line.split()
    if not words or words[0] != expected:
        raise SystemExit(f"expected {expected!r} from the test, got {line!r}")
    return words


async def run_worker(plan: Plan, indices: list[int]) -> None:
    records: dict = {"received": [], "published": [], "live": []}
    mesh = [MeshNode(plan, i, records) for i in indices]
    for m in mesh:
        await m.start()
    print("ready", flush=True)
    await command("connect")
    await asyncio.gather(*(m.join() for m in mesh))
    loop = asyncio.get_running_loop()
    keepers = [loop.create_task(m.keep_peers()) for m in mesh]
    async with asyncio.timeout(MESH_WAIT):
        while not all(m.meshed() for m in mesh):
            await asyncio.sleep(0.1)
    print("meshed", flush=True)
    t0 = float((await command("start"))[1])
    by_index = {}
    for m in mesh:
        m.t0 = t0
        by_index[m.me.index] = m
    for k, (at, publisher) in enumerate(plan.publishes):
        if publisher in by_index:
            loop.call_later(max(0.0, t0 + at - time.monotonic()),
                            lambda k=k, m=by_index[publisher]: loop.create_task(m.publish(k)))
    await asyncio.gather(*(m.churn() for m in mesh))
    for task in keepers:
        task.cancel()
    stats = {m.me.index: m.pubsub.stats() for m in mesh if m.node is not None}
    for m in mesh:
        await m.stop()
    print("result " + json.dumps({**records, "stats": stats}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("plan", type=Path)
    parser.add_argument("indices", type=lambda s: [int(i) for i in s.split(",")])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    plan = Plan.load(args.plan)
    try:
        import uvloop
    except ImportError:
        asyncio.run(run_worker(plan, args.indices))
    else:
        uvloop.run(run_worker(plan, args.indices))


if __name__ == "__main__":
    main()
