"""Mainline DHT at scale: thousands of unchanged `DhtCore` nodes on a simulated network, in one process.

Every packet is real KRPC bytes through `DhtCore.receive` (bencode encoding and decoding included: that is the code
under test). The network is a discrete-event simulation: a heap of packets ordered by delivery time, a heap of node
timers fed by `next_wakeup()` (stale entries are skipped when popped), and a heap of scripted actions (joins,
announces, lookups, departures). The clock jumps from one event to the next; nothing sleeps.

- Addresses: node i lives at its own IPv4 address 10.a.b.c, port 6881, so the per-IP logic (rate limits, tokens)
  works as on the Internet. The default per-IP rate limit stays on.
- Latency: each node has an access delay drawn once from 5..75 ms; a packet takes the sum of both ends' delays plus
  up to 2 ms of jitter (10..152 ms one way). A share `--loss` of all packets is dropped at random.
- Building the network (`--join`): "protocol" starts the nodes one after another, each bootstrapping from 1..3
  random nodes that have already joined (a few seed nodes first), so the routing tables are built by the protocol;
  "warmed" fills every table from the global sorted id list with what a converged node would know (for each of its
  buckets, k random nodes of that bucket's range, through the table's own `on_response` as if they had answered)
  and then lets the protocol run. "auto" is protocol up to 20,000 nodes, warmed above.
- Measuring: after a warm-up (announces from random nodes, and baseline lookups before any churn), `--churn` of the
  nodes vanish without a word at random times spread over the measurement window, while lookups start from random
  live nodes: find_node for random targets (success: the k closest it returns hold the closest live node other than
  the origin, known from the global list of live ids at the moment the lookup ends), find_node for the ids of live
  nodes (success: that node is returned), and get_peers for the announced info-hashes (success: the announcing
  peer is returned). `messages` is the queries a lookup sent (each answer is a second packet); `hops` and `latency`
  are the core's own `LookupResult.hops` and `duration` in simulated seconds.
- Memory per node: the process's resident set (VmRSS) after building minus before, divided by N (ids, addresses and
  the simulator's own per-node lists are made before the first reading, so they are not counted).

One JSON line per network size (each run in its own interpreter, so memory readings do not mix), then a summary line.

    python bench/dht_sim.py [--nodes 10000,100000] [--lookups N] [--seed S] [--loss 0.05] [--churn 0.2]
                            [--join protocol|warmed|auto]
"""

from __future__ import annotations

import argparse
import bisect
import gc
import heapq
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable

from peerloom.dht.events import Event, LookupDone, StoreDone
from peerloom.dht.lookup import LookupKind
from peerloom.dht.node import MAINTENANCE_INTERVAL, DhtBusyError, DhtCore
from peerloom.dht.routing import ID_BITS, REFRESH_AFTER, K

PORT = 6881
ACCESS_DELAY = (0.005, 0.075)  # one end's share of a packet's one-way latency, seconds
JITTER = 0.002
REPLACEMENTS = 2  # replacement cache per bucket: the core's author's advice for big simulations
SEEDS = 4  # protocol join: the first nodes, which bootstrap from one another
WARMUP = 60.0  # simulated seconds of protocol running (announces, baseline lookups) before the churn starts
WINDOW = 300.0  # simulated seconds over which the nodes leave and the measured lookups start
SETTLE = REFRESH_AFTER + 2 * MAINTENANCE_INTERVAL  # protocol join: one bucket-refresh round after the last join
DRAIN = 120.0  # at most this long after the window for the last lookups to end
PROGRESS_EVERY = 15.0  # wall seconds between progress lines

Handler = Callable[[Event, float], bool]  # True when the request is over


def rss_bytes() -> int:
    """The resident set size of this process now (Linux VmRSS)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class LiveIds:
    """The ids of the live nodes in sorted order, for the ground truth: the k closest by XOR distance."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = sorted(ids)

    def add(self, node_id: int) -> None:
        bisect.insort(self.ids, node_id)

    def remove(self, node_id: int) -> None:
        i = bisect.bisect_left(self.ids, node_id)
        assert self.ids[i] == node_id
        del self.ids[i]

    def closest(self, target: int, k: int) -> list[int]:
        """The k live ids closest to `target`: walk down the binary trie the sorted list is while the branch that
        shares the next bit with `target` still holds k ids; the answer lies in the last range kept."""
        ids = self.ids
        lo, hi, prefix = 0, len(ids), 0
        for bit in range(ID_BITS - 1, -1, -1):
            one = prefix | (1 << bit)
            mid = bisect.bisect_left(ids, one, lo, hi)
            if target >> bit & 1:
                nlo, nhi, nprefix = mid, hi, one
            else:
                nlo, nhi, nprefix = lo, mid, prefix
            if nhi - nlo < k:
                break
            lo, hi, prefix = nlo, nhi, nprefix
        return sorted(ids[lo:hi], key=lambda node_id: node_id ^ target)[:k]


class Network:
    """The simulated network: nodes, the three event heaps, and packet counters."""

    def __init__(self, n: int, rng: random.Random, loss: float) -> None:
        self.rng = rng
        self.loss = loss
        self.ids = [rng.getrandbits(ID_BITS) for _ in range(n)]
        self.addrs = [(f"10.{(i + 1) >> 16}.{((i + 1) >> 8) & 255}.{(i + 1) & 255}", PORT) for i in range(n)]
        self.ip_index = {addr[0]: i for i, addr in enumerate(self.addrs)}
        self.access = [rng.uniform(*ACCESS_DELAY) for _ in range(n)]
        self.nodes: list[DhtCore | None] = [None] * n
        self.sched = [math.inf] * n  # the earliest live entry of each node in the timer heap
        self.live: list[int] = []  # indices of live nodes, for random picks
        self.live_pos = [-1] * n
        self.truth = LiveIds([])
        self.waiting: dict[int, dict[int, Handler]] = {}  # node -> lookup id -> who wants its events
        self.packets: list[tuple[float, int, int, bytes, tuple[str, int]]] = []
        self.timers: list[tuple[float, int]] = []
        self.actions: list[tuple[float, int, Callable[[float], None]]] = []
        self.seq = 0
        self.now = 0.0
        self.counters = {"sent": 0, "lost": 0, "to_departed": 0, "unroutable": 0, "delivered": 0, "ticks": 0}
        self.phase = ""

    # -- nodes ---------------------------------------------------------------------------------------------------
    def create(self, i: int, now: float) -> DhtCore:
        node = DhtCore(self.ids[i].to_bytes(20, "big"), now=now, rng=self.rng, replacements=REPLACEMENTS)
        self.nodes[i] = node
        self.live_pos[i] = len(self.live)
        self.live.append(i)
        return node

    def schedule(self, i: int, node: DhtCore) -> None:
        wake = node.next_wakeup()
        if wake < self.sched[i]:
            self.sched[i] = wake
            heapq.heappush(self.timers, (wake, i))

    def remove(self, i: int) -> None:
        """Node i leaves without a word: from now on every packet to it is lost and its timers never fire."""
        self.nodes[i] = None
        pos = self.live_pos[i]
        last = self.live.pop()
        if last != i:
            self.live[pos] = last
            self.live_pos[last] = pos
        self.live_pos[i] = -1
        self.truth.remove(self.ids[i])
        self.waiting.pop(i, None)

    def random_live(self) -> int:
        return self.live[self.rng.randrange(len(self.live))]

    def call(self, i: int, packets: list[tuple[bytes, tuple[str, int]]], lookup_id: int, handler: Handler,
             now: float) -> None:
        """After a request to node i: send its packets, watch its events for `lookup_id`, reschedule its timer."""
        node = self.nodes[i]
        assert node is not None
        self.waiting.setdefault(i, {})[lookup_id] = handler
        if packets:
            self.send(i, packets, now)
        self.schedule(i, node)
        self.dispatch(i, node, now)

    def dispatch(self, i: int, node: DhtCore, now: float) -> None:
        handlers = self.waiting[i]
        for event in node.pop_events():
            if isinstance(event, LookupDone | StoreDone):
                handler = handlers.get(event.lookup_id)
                if handler is not None and handler(event, now):
                    del handlers[event.lookup_id]
        if not handlers:
            del self.waiting[i]

    # -- the network -----------------------------------------------------------------------------------------------
    def at(self, when: float, action: Callable[[float], None]) -> None:
        self.seq += 1
        heapq.heappush(self.actions, (when, self.seq, action))

    def send(self, src: int, packets: list[tuple[bytes, tuple[str, int]]], now: float) -> None:
        rnd = self.rng.random
        counters = self.counters
        source = self.addrs[src]
        delay = now + self.access[src]
        for data, (host, port) in packets:
            counters["sent"] += 1
            if rnd() < self.loss:
                counters["lost"] += 1
                continue
            dst = self.ip_index.get(host)
            if dst is None or port != PORT:
                counters["unroutable"] += 1
                continue
            self.seq += 1
            heapq.heappush(self.packets, (delay + self.access[dst] + rnd() * JITTER, self.seq, dst, data, source))

    def run_until(self, t_end: float, stop: Callable[[], bool] | None = None) -> None:
        """Process events in time order up to `t_end`, or until `stop()` holds (checked after actions and events)."""
        if stop is not None and stop():
            return
        packets, timers, actions = self.packets, self.timers, self.actions
        nodes, sched, waiting = self.nodes, self.sched, self.waiting
        heappop, heappush, inf = heapq.heappop, heapq.heappush, math.inf
        send, counters = self.send, self.counters
        delivered = ticks = to_departed = 0
        next_report = time.perf_counter() + PROGRESS_EVERY
        count = 0
        try:
            while True:
                tp = packets[0][0] if packets else inf
                tt = timers[0][0] if timers else inf
                ta = actions[0][0] if actions else inf
                if ta <= tp and ta <= tt:
                    if ta > t_end:
                        break
                    _, _, action = heappop(actions)
                    self.now = ta
                    action(ta)
                    if stop is not None and stop():
                        break
                    continue
                if tp <= tt:
                    if tp > t_end:
                        break
                    now, _, i, data, source = heappop(packets)
                    node = nodes[i]
                    if node is None:
                        to_departed += 1
                        continue
                    delivered += 1
                    out = node.receive(data, source, now)
                else:
                    if tt > t_end:
                        break
                    now, i = heappop(timers)
                    if sched[i] != now:
                        continue
                    node = nodes[i]
                    if node is None:
                        continue
                    ticks += 1
                    sched[i] = inf
                    out = node.tick(now)
                self.now = now
                if out:
                    send(i, out, now)
                wake = node.next_wakeup()
                if wake < sched[i]:
                    sched[i] = wake
                    heappush(timers, (wake, i))
                if i in waiting:
                    self.dispatch(i, node, now)
                    if stop is not None and stop():
                        break
                count += 1
                if count & 0x3FFF == 0 and time.perf_counter() > next_report:
                    next_report = time.perf_counter() + PROGRESS_EVERY
                    self.progress(delivered + counters["delivered"])
        finally:
            counters["delivered"] += delivered
            counters["ticks"] += ticks
            counters["to_departed"] += to_departed
        if t_end != inf and (stop is None or not stop()):
            self.now = max(self.now, t_end)

    def progress(self, delivered: int) -> None:
        print(f"  [{self.phase}] t={self.now:8.1f}s delivered={delivered} in flight={len(self.packets)} "
              f"live={len(self.live)} waiting={sum(map(len, self.waiting.values()))}", file=sys.stderr, flush=True)


# -- building the network ------------------------------------------------------------------------------------------
def join_by_protocol(net: Network, join_rate: float, settle: float) -> dict[str, object]:
    """Start node after node; each bootstraps (a lookup of its own id) from 1..3 nodes whose join has ended."""
    n = len(net.ids)
    rng = net.rng
    joined: list[int] = []
    records: list[tuple[int, int, int, float]] = []

    def start(i: int, now: float) -> None:
        node = net.create(i, now)
        net.truth.add(net.ids[i])
        if i == 0:
            joined.append(0)
            net.schedule(0, node)
            return
        pool = joined if i >= SEEDS else list(range(i))
        contacts = rng.sample(pool, min(len(pool), 1 if i < SEEDS else rng.randint(1, 3)))

        def done(event: Event, _now: float) -> bool:
            assert isinstance(event, LookupDone)
            result = event.result
            records.append((len(result.nodes), result.messages, result.timeouts, result.duration))
            joined.append(i)
            return True

        lookup_id, packets = node.bootstrap([net.addrs[j] for j in contacts], now)
        net.call(i, packets, lookup_id, done, now)

    for i in range(n):
        net.at(i / join_rate, lambda now, i=i: start(i, now))
    net.run_until((n - 1) / join_rate)
    net.phase = "settle"
    net.run_until(net.now + settle)
    # The core hands out only nodes that have answered it; a node known to others only through its own queries is
    # invisible to everybody else's lookups.
    verified = {entry.id for node in net.nodes if node is not None for entry in node.table if entry.responded}
    return {
        "join_rate_per_s": join_rate,
        "settle_s": settle,
        "bootstrap_lookups": len(records),
        "bootstrap_found_k": round(sum(1 for found, *_ in records if found >= K) / max(1, len(records)), 4),
        "bootstrap_found_none": sum(1 for found, *_ in records if not found),
        "bootstrap_messages_mean": round(sum(r[1] for r in records) / max(1, len(records)), 2),
        "bootstrap_latency_median_s": round(percentile([r[3] for r in records], 50), 3) if records else None,
        "nodes_verified_by_nobody": sum(1 for node_id in net.ids if node_id not in verified),
    }


def warm_tables(net: Network) -> dict[str, object]:
    """Fill every routing table with what a converged node knows: for every bucket range (ids sharing exactly d
    leading bits with the node), k random nodes of that range, inserted with the table's own `on_response`."""
    rng = net.rng
    for i in range(len(net.ids)):
        net.create(i, 0.0)
    net.truth = LiveIds(net.ids)
    ids = net.truth.ids
    index_of = {node_id: i for i, node_id in enumerate(net.ids)}
    addrs = net.addrs
    total = 0
    for i, own in enumerate(net.ids):
        node = net.nodes[i]
        assert node is not None
        insert = node.table.on_response
        for depth in range(ID_BITS):
            span = 1 << (ID_BITS - 1 - depth)
            low = ((own >> (ID_BITS - 1 - depth)) ^ 1) << (ID_BITS - 1 - depth)  # our first depth bits, then not ours
            a = bisect.bisect_left(ids, low)
            b = bisect.bisect_left(ids, low + span, a)
            picks = [ids[j] for j in rng.sample(range(a, b), K)] if b - a > K else ids[a:b]
            for node_id in picks:
                insert(node_id, addrs[index_of[node_id]], 0.0)
            total += len(picks)
            ours = own >> (ID_BITS - 1 - depth) << (ID_BITS - 1 - depth)  # the ids sharing depth + 1 bits with ours
            if bisect.bisect_left(ids, ours + span) - bisect.bisect_left(ids, ours) <= 1:
                break  # nobody else is that close: no deeper bucket has anything
        net.schedule(i, node)
        if i % 10000 == 9999:
            print(f"  [warm] {i + 1} tables filled", file=sys.stderr, flush=True)
    return {"entries_inserted_per_node": round(total / len(net.ids), 1)}


# -- measuring -----------------------------------------------------------------------------------------------------
class Measure:
    """Starts the scripted lookups and keeps what their `LookupDone` events say."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.results: dict[str, list[dict[str, float]]] = {}
        self.in_flight = 0
        self.origins: dict[int, int] = {}  # node -> measured lookups it runs (such nodes are kept alive)
        self.busy = 0
        self.announced: list[tuple[bytes, int]] = []  # (info-hash, announcing node)
        self.announce_stored: list[int] = []

    def _begin(self, origin: int) -> None:
        self.in_flight += 1
        self.origins[origin] = self.origins.get(origin, 0) + 1

    def _end(self, origin: int) -> None:
        self.in_flight -= 1
        self.origins[origin] -= 1
        if not self.origins[origin]:
            del self.origins[origin]

    def find_node(self, group: str, now: float, live_target: bool) -> None:
        net = self.net
        origin = net.random_live()
        if live_target:
            target_node = origin
            while target_node == origin and len(net.live) > 1:
                target_node = net.random_live()
            target = net.ids[target_node]
        else:
            target = net.rng.getrandbits(ID_BITS)
        self._start(group, origin, LookupKind.FIND_NODE, target.to_bytes(20, "big"), now, None)

    def get_peers(self, group: str, now: float) -> None:
        net = self.net
        if not self.announced:
            return
        info_hash, announcer = self.announced[net.rng.randrange(len(self.announced))]
        origin = announcer
        while origin == announcer:
            origin = net.random_live()
        self._start(group, origin, LookupKind.GET_PEERS, info_hash, now, net.addrs[announcer])

    def _start(self, group: str, origin: int, kind: LookupKind, target: bytes, now: float,
               peer: tuple[str, int] | None) -> None:
        net = self.net
        node = net.nodes[origin]
        assert node is not None
        try:
            lookup_id, packets = node.start_lookup(kind, target, now)
        except DhtBusyError:
            self.busy += 1
            return
        self._begin(origin)
        target_int = int.from_bytes(target, "big")
        own = net.ids[origin]

        def done(event: Event, now: float) -> bool:
            assert isinstance(event, LookupDone)
            self._end(origin)
            result = event.result
            found = {int.from_bytes(node_id, "big") for node_id, _, _ in result.nodes}
            record: dict[str, float] = {
                "hops": result.hops, "messages": result.messages, "timeouts": result.timeouts,
                "latency": result.duration,
            }
            if peer is not None:
                record["success"] = float(peer in result.peers)
            else:
                truth = [node_id for node_id in net.truth.closest(target_int, K + 1) if node_id != own][:K]
                record["success"] = float(bool(truth) and truth[0] in found)
                record["recall"] = len(found.intersection(truth)) / max(1, len(truth))
            self.results.setdefault(group, []).append(record)
            return True

        net.call(origin, packets, lookup_id, done, now)

    def announce(self, now: float) -> None:
        net = self.net
        announcer = net.random_live()
        node = net.nodes[announcer]
        assert node is not None
        info_hash = net.rng.randbytes(20)
        lookup_id, packets = node.announce(info_hash, now)
        self.in_flight += 1

        def done(event: Event, _now: float) -> bool:
            if isinstance(event, StoreDone):
                self.in_flight -= 1
                self.announce_stored.append(len(event.stored))
                if event.stored:
                    self.announced.append((info_hash, announcer))
                return True
            return False

        net.call(announcer, packets, lookup_id, done, now)

    def leave(self, _now: float) -> None:
        """One node vanishes: a random live node not running a measured lookup."""
        net = self.net
        for _ in range(100):
            victim = net.random_live()
            if victim not in self.origins:
                net.remove(victim)
                return

    def summary(self, group: str) -> dict[str, object]:
        records = self.results.get(group, [])
        if not records:
            return {"lookups": 0}

        def column(name: str) -> list[float]:
            return [record[name] for record in records]

        out: dict[str, object] = {
            "lookups": len(records),
            "success_rate": round(sum(column("success")) / len(records), 4),
            "hops_median": percentile(column("hops"), 50),
            "hops_p99": percentile(column("hops"), 99),
            "messages_mean": round(sum(column("messages")) / len(records), 2),
            "messages_p99": percentile(column("messages"), 99),
            "timeouts_mean": round(sum(column("timeouts")) / len(records), 2),
            "latency_median_s": round(percentile(column("latency"), 50), 3),
            "latency_p99_s": round(percentile(column("latency"), 99), 3),
        }
        if "recall" in records[0]:
            out["k_closest_recall"] = round(sum(column("recall")) / len(records), 4)
        return out


# -- one run -------------------------------------------------------------------------------------------------------
def run(n: int, opts: argparse.Namespace) -> dict[str, object]:
    wall_start = time.perf_counter()
    lookups = opts.lookups if opts.lookups is not None else (500 if n <= 20000 else 1000)
    loss = opts.loss
    measure_loss = loss if opts.measure_loss is None else opts.measure_loss
    churn, window = opts.churn, opts.window
    join = opts.join if opts.join != "auto" else ("protocol" if n <= 20000 else "warmed")
    rng = random.Random(opts.seed)
    net = Network(n, rng, loss)
    gc.collect()
    rss_before = rss_bytes()
    net.phase = "build"
    print(f"dht_sim: {n} nodes, join={join}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    if join == "protocol":
        build_info = join_by_protocol(net, opts.join_rate, SETTLE if opts.settle is None else opts.settle)
    else:
        gc.disable()  # millions of long-lived table entries: no point scanning them while they are made
        build_info = warm_tables(net)
        gc.enable()
    gc.collect()
    gc.freeze()  # the built network is long-lived: keep the collector off it
    build_wall = time.perf_counter() - t0
    rss_built = rss_bytes()
    built_counters = dict(net.counters)
    table_sizes = [node.table.size for node in net.nodes if node is not None]

    measure = Measure(net)
    baseline = max(1, lookups // 5)
    extra = max(1, lookups // 5)
    start = net.now
    net.phase = "warm-up"
    t0 = time.perf_counter()
    for _ in range(extra):
        net.at(start + rng.uniform(0, WARMUP / 2), measure.announce)
    for _ in range(baseline):
        net.at(start + rng.uniform(WARMUP / 2, WARMUP), lambda now: measure.find_node("before_churn", now, False))
    net.run_until(start + WARMUP)
    net.run_until(math.inf, stop=lambda: measure.in_flight == 0)
    warmup_wall = time.perf_counter() - t0
    warm_counters = dict(net.counters)

    net.phase = "measure"
    net.loss = measure_loss
    t0 = time.perf_counter()
    start = net.now
    leaving = round(churn * n)
    for _ in range(leaving):
        net.at(start + rng.uniform(0, window), measure.leave)
    for _ in range(lookups):
        net.at(start + rng.uniform(0, window), lambda now: measure.find_node("find_node", now, False))
    for _ in range(extra):
        net.at(start + rng.uniform(0, window), lambda now: measure.find_node("find_node_live_target", now, True))
    for _ in range(extra):
        net.at(start + rng.uniform(0, window), lambda now: measure.get_peers("get_peers", now))
    net.run_until(start + window)
    net.run_until(start + window + DRAIN, stop=lambda: measure.in_flight == 0)
    measure_wall = time.perf_counter() - t0
    rss_end = rss_bytes()

    counters = net.counters
    window_packets = {name: counters[name] - warm_counters[name] for name in counters}
    stats = [node.stats for node in net.nodes if node is not None]
    total_wall = time.perf_counter() - wall_start
    find = measure.summary("find_node")
    goal_hops = math.log2(n) / 2 + 1
    return {
        "bench": "dht_sim",
        "nodes": n,
        "join": join,
        "seed": opts.seed,
        "loss": loss,
        "measure_loss": measure_loss,
        "churn": churn,
        "nodes_left": n - len(net.live),
        "log2n_half_plus_1": round(goal_hops, 2),
        "find_node": find,
        "find_node_live_target": measure.summary("find_node_live_target"),
        "find_node_before_churn": measure.summary("before_churn"),
        "get_peers": measure.summary("get_peers"),
        "announces": {
            "count": len(measure.announce_stored),
            "stored_on_mean": round(sum(measure.announce_stored) / max(1, len(measure.announce_stored)), 2),
        },
        "lookups_refused_busy": measure.busy,
        "lookups_unfinished": measure.in_flight,
        "build": {**build_info, "packets": built_counters["sent"],
                  "table_size_mean": round(sum(table_sizes) / len(table_sizes), 1)},
        "measure_window": {
            "simulated_s": window,
            "packets_sent": window_packets["sent"],
            "packets_lost": window_packets["lost"],
            "packets_to_departed_nodes": window_packets["to_departed"],
            "packets_per_live_node_per_s": round(window_packets["sent"] / max(1.0, net.now - start) / len(net.live), 3),
        },
        "node_counters": {
            "timeouts": sum(s.timeouts for s in stats),
            "rate_limited": sum(s.rate_limited for s in stats),
            "send_failures": sum(s.send_failures for s in stats),
            "late_or_unexpected_replies": sum(s.unexpected for s in stats),
            "malformed": sum(s.malformed for s in stats),
        },
        "memory": {
            "method": "VmRSS delta over building / N",
            "bytes_per_node_built": (rss_built - rss_before) // n,
            "bytes_per_node_end": (rss_end - rss_before) // n,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        },
        "simulated_s": round(net.now, 1),
        "wall_s": {"build": round(build_wall, 1), "warmup": round(warmup_wall, 1), "measure": round(measure_wall, 1),
                   "total": round(total_wall, 1)},
        "goals": {
            "find_node_success_100pct": find.get("success_rate") == 1.0,
            "median_hops_ok": find.get("hops_median", math.inf) <= goal_hops,
            "under_10_min": total_wall < 600,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="10000,100000", help="comma-separated network sizes")
    parser.add_argument("--lookups", type=int, default=None,
                        help="measured find_node lookups (default 500; 1000 above 20,000 nodes); a fifth as many of "
                             "each of: baseline lookups, live-target lookups, announces, get_peers")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loss", type=float, default=0.05, help="share of packets lost")
    parser.add_argument("--measure-loss", type=float, default=None,
                        help="packet loss from the churn window on (default: --loss); 0 separates what the routing "
                             "tables miss from what lost packets cost")
    parser.add_argument("--churn", type=float, default=0.2, help="share of the nodes that leave during the window")
    parser.add_argument("--join", choices=("protocol", "warmed", "auto"), default="auto",
                        help="auto: protocol up to 20,000 nodes, warmed above")
    parser.add_argument("--join-rate", type=float, default=50.0, help="protocol join: nodes started per second")
    parser.add_argument("--settle", type=float, default=None,
                        help=f"protocol join: simulated seconds run after the last join (default {SETTLE:.0f}: one "
                             "bucket-refresh round, without which nodes heard only through their queries stay "
                             "unverified and are handed to nobody)")
    parser.add_argument("--window", type=float, default=WINDOW, help="simulated seconds of the measurement window")
    opts = parser.parse_args()
    sizes = [int(part) for part in opts.nodes.split(",") if part]

    if len(sizes) == 1:
        print(json.dumps(run(sizes[0], opts)), flush=True)
        return

    reports = []
    passed = [f"--{name.replace('_', '-')}={value}" for name, value in vars(opts).items()
              if value is not None and name != "nodes"]
    for n in sizes:  # one interpreter per size, so one run's memory does not show in the next one's readings
        command = [sys.executable, os.path.abspath(__file__), *passed, f"--nodes={n}"]
        child = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        line = child.stdout.strip().splitlines()[-1]
        print(line, flush=True)
        reports.append(json.loads(line))
    print(json.dumps({
        "bench": "dht_sim_summary",
        "runs": [{
            "nodes": r["nodes"], "join": r["join"], "find_node_success": r["find_node"].get("success_rate"),
            "live_target_success": r["find_node_live_target"].get("success_rate"),
            "get_peers_success": r["get_peers"].get("success_rate"),
            "hops_median": r["find_node"].get("hops_median"), "hops_goal": r["log2n_half_plus_1"],
            "messages_mean": r["find_node"].get("messages_mean"),
            "latency_median_s": r["find_node"].get("latency_median_s"),
            "bytes_per_node": r["memory"]["bytes_per_node_built"], "wall_s": r["wall_s"]["total"],
            "goals": r["goals"],
        } for r in reports],
    }), flush=True)


if __name__ == "__main__":
    main()
