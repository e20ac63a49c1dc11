"""A 50-node GossipSub mesh on loopback, in 5 processes of 10 nodes, real sockets: every message reaches every
subscriber that was live for the whole time window of that message, while 20 % of the nodes leave and rejoin.

The workers connect their nodes (each dials 3 random others) and publishing starts once every node has 2 mesh peers.
Definitions (times on the machine's one monotonic clock):
- message k is published at t_k by a node that stays up (the publisher is never among its receivers);
- a node is *live for message k* when one incarnation of it (start to stop, same identity and port) was subscribed
  from t_k - SETTLE until t_k + DEADLINE at least: SETTLE is the time a (re)started node is given to dial its
  peers and join the mesh, DEADLINE the time a message has to arrive;
- delivery of k is complete when every node live for k received k by t_k + DEADLINE. The test asks for 100 %,
  each message at most once per incarnation, and prints the p50/p99 latency of those deliveries.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from support.pubsub_mesh import make_plan

import peerloom

pytestmark = pytest.mark.timeout(150)

NODES, PROCESSES = 50, 5
CHURN = 0.2  # the fraction of nodes that leave and rejoin once each
SETTLE, DEADLINE = 2.0, 5.0
SUPPORT = Path(__file__).resolve().parent.parent / "support"


def free_ports(count: int) -> list[int]:
    """Ports below the kernel's ephemeral range, free now. Each node keeps its port across restarts (churn): a port
    from the ephemeral range could meanwhile become the local port of another node's outgoing connection, and the
    restarted node would fail to bind it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(max(1024, low - 12000), low)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def expect(workers: list[subprocess.Popen[str]], tmp_path: Path, word: str) -> list[str]:
    lines = []
    for n, w in enumerate(workers):
        assert w.stdout is not None
        line = w.stdout.readline()
        assert line.split(" ", 1)[0].strip() == word, (tmp_path / f"worker-{n}.log").read_text()[-3000:]
        lines.append(line)
    return lines


def tell(workers: list[subprocess.Popen[str]], line: str) -> None:
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(line + "\n")
        w.stdin.flush()


def run_workers(plan_file: Path, tmp_path: Path) -> list[dict]:
    """Start the worker processes, release them together once all are ready, and collect their results."""
    src = Path(peerloom.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(SUPPORT.parent)])}
    workers: list[subprocess.Popen[str]] = []
    with contextlib.ExitStack() as stack:
        try:
            for w in range(PROCESSES):
                log = stack.enter_context(open(tmp_path / f"worker-{w}.log", "w"))
                indices = ",".join(str(i) for i in range(w, NODES, PROCESSES))
                workers.append(subprocess.Popen(
                    [sys.executable, str(SUPPORT / "pubsub_mesh.py"), str(plan_file), indices],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, text=True,
                ))
            expect(workers, tmp_path, "ready")
            tell(workers, "connect")
            expect(workers, tmp_path, "meshed")
            tell(workers, f"start {time.monotonic() + 0.2}")
            results = []
            for line in expect(workers, tmp_path, "result"):
                results.append(json.loads(line[len("result "):]))
            for w in workers:
                assert w.wait(30) == 0
            return results
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait()


def test_fifty_nodes_deliver_every_message_to_every_live_subscriber_while_a_fifth_churn(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, nodes=NODES, ports=free_ports(NODES), dials=3, churn=CHURN, rate=5.0,
                     publish_for=16.0, down_for=3.0, start_publishing=1.0, tail=DEADLINE + 1.0, seed=14)
    plan_file = tmp_path / "plan.json"
    plan.save(plan_file)
    results = run_workers(plan_file, tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(results))  # for a look after a failure

    published = {k: (node, at) for r in results for k, node, at, _ in r["published"]}
    assert sorted(published) == list(range(len(plan.publishes)))  # every planned message went out
    assert all(peers > 0 for r in results for *_, peers in r["published"])
    live = [(node, up, down) for r in results for node, up, down in r["live"]]
    received: dict[tuple[int, int], float] = {}
    copies = Counter()
    for r in results:
        for node, incarnation, k, at in r["received"]:
            copies[(node, incarnation, k)] += 1
            received[(node, k)] = min(at, received.get((node, k), at))
    assert max(copies.values()) == 1  # exactly once per incarnation at the application

    expected = delivered = 0
    latencies = []
    missing = []
    for k, (publisher, t_pub) in published.items():
        receivers = {n for n, up, down in live if n != publisher and up <= t_pub - SETTLE and down >= t_pub + DEADLINE}
        for n in receivers:
            expected += 1
            at = received.get((n, k))
            if at is not None and at <= t_pub + DEADLINE:
                delivered += 1
                latencies.append(at - t_pub)
            else:
                missing.append((k, n))
    p50, p99 = statistics.median(latencies) * 1000, percentile(latencies, 0.99) * 1000
    churned = sum(1 for n in plan.nodes if n.downtimes)
    print(f"\n50-node mesh: {len(published)} messages, {churned} nodes left and rejoined, "
          f"{delivered}/{expected} deliveries to live subscribers, latency p50 {p50:.1f} ms p99 {p99:.1f} ms")
    assert expected > 0.8 * len(published) * (NODES - 1)
    assert not missing, f"{len(missing)} deliveries missing, e.g. {missing[:10]}"
