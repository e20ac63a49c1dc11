"""Volunteer computing end to end: volunteer processes (`peerloom compute volunteer`) on loopback and a submitter
node in this process. Same run, same inputs; prints one JSON line.

- speedup: one signal-search job (--units chunks of --samples samples) on 1 volunteer vs on 2 volunteers, quorum 1,
  each volunteer with one task slot (goal >= 1.7 on a 2-core machine);
- quorum_cost: the same job on the same 2 volunteers with quorum 2 against quorum 1 (2.0 is what replication costs
  when the volunteers are the bottleneck);
- sandbox_ratio: one unit of 2^20 samples in the sandbox (`Sandbox.run`, compiled beforehand) vs the same C program
  built for the host with ziglang and run as a process (goal <= 1.5); sandbox_cpu_ratio is the same by CPU time;
- noop_units_per_s: --noop units of a module that does nothing, quorum 2, across 4 volunteers (two task slots each):
  validated units per second, the scheduling overhead (goal >= 200), and the CPU time all processes spent per unit
  (steadier than the rate when other work shares the machine).
The machine is shared: `load` is the 1-minute load average when the run began, to read the numbers against.

    python bench/compute_bench.py [--units 24] [--samples 131072] [--noop 600] [--only speedup|noop|sandbox]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import wasmtime
from compute_sandbox_bench import build_native

from peerloom.apps.compute.sandbox import Limits, Sandbox
from peerloom.node import Node
from peerloom.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "compute"
LIMITS = Limits(fuel=10**12, wall_seconds=600)
NOOP = wasmtime.wat2wasm('(module (func (export "_start")))')


def tone(n: int, seed: int) -> bytes:
    """n float32 samples: uniform noise and a tone (cheap to make in Python, and a real search for the module)."""
    rng = random.Random(seed)
    k = 50 + seed % 1000
    return struct.pack(f"<{n}f", *(0.3 * math.sin(2 * math.pi * k * i / n) + rng.random() - 0.5 for i in range(n)))


class Volunteers:
    """`peerloom compute volunteer` processes, killed by their process group at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, count: int, cores: int) -> list[str]:
        procs = []
        for _ in range(count):
            home = self.root / f"v{len(self.procs)}"
            proc = subprocess.Popen([sys.executable, "-m", "peerloom", "compute", "volunteer", "--home", str(home),
                                     "--listen", "127.0.0.1", "--cores", str(cores), "--json"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
            self.procs.append(proc)
            procs.append(proc)
        addrs = []
        for proc in procs:
            assert proc.stdout is not None
            text = ""
            while True:  # --json prints one (indented) object
                text += proc.stdout.readline().decode()
                with contextlib.suppress(ValueError):
                    addrs.append(json.loads(text)["addrs"][0])
                    break
        return addrs

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def tree_cpu_seconds() -> float:
    """CPU seconds (user and system) used so far by this process and every process below it (volunteers, their
    workers): on a shared machine the work done per unit is steadier than the wall-clock rate."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, int]] = {}  # pid -> (parent, ticks)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2:].split()
            stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    mine, total, grew = {os.getpid()}, 0, True
    while grew:
        grew = False
        for pid, (parent, _) in stats.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                grew = True
    for pid in mine:
        total += stats.get(pid, (0, 0))[1]
    return total / tick


async def run_job(root: Path, name: str, module: bytes, inputs: list[bytes], addrs: list[str], quorum: int,
                  limits: Limits = LIMITS) -> tuple[float, list[bytes], float]:
    """Seconds from submit to the last validated unit, on a fresh submitter, after a warm-up job of one unit per
    volunteer (their worker processes started, the module fetched and compiled); the outputs; the CPU seconds every
    process of the run used meanwhile."""
    settings = Settings(dht=False, lsd=False, mdns=False, pubsub=False, trackers=False)
    async with Node(root / name, host="127.0.0.1", settings=settings) as node:
        compute = node.compute
        assert compute is not None
        warm = await compute.submit(module, [b"warm-up %d" % i for i in range(2 * len(addrs))], 1, limits=limits)
        for addr in addrs:
            await compute.add_volunteer(addr)
        await warm.wait()
        began, cpu = time.perf_counter(), tree_cpu_seconds()
        job = await compute.submit(module, inputs, quorum, limits=limits)
        outcomes = await job.wait()
        elapsed, cpu = time.perf_counter() - began, tree_cpu_seconds() - cpu
    assert all(o.output is not None for o in outcomes), [o.error for o in outcomes if o.error][:3]
    return elapsed, [o.output or b"" for o in outcomes], cpu


async def measure(args: argparse.Namespace, root: Path) -> dict[str, object]:
    result: dict[str, object] = {}
    if args.only in (None, "speedup"):
        result |= await speedup(args, root)
    if args.only in (None, "noop"):
        result |= await noop(args, root)
    return result


async def speedup(args: argparse.Namespace, root: Path) -> dict[str, object]:
    module = (EXAMPLES / "signal_search.wasm").read_bytes()
    inputs = [tone(args.samples, seed) for seed in range(args.units)]
    result: dict[str, object] = {"units": args.units, "samples": args.samples}
    volunteers = Volunteers(root / "volunteers")
    try:
        addrs = volunteers.start(2, cores=1)
        one, answers, _ = await run_job(root, "one", module, inputs, addrs[:1], 1)
        two, answers2, _ = await run_job(root, "two", module, inputs, addrs, 1)
        two_q2, answers3, _ = await run_job(root, "two-q2", module, inputs, addrs, 2)
        assert answers == answers2 == answers3
        result |= {"one_volunteer_s": round(one, 3), "two_volunteers_s": round(two, 3),
                   "speedup": round(one / two, 3), "quorum2_s": round(two_q2, 3),
                   "quorum_cost": round(two_q2 / two, 3)}
    finally:
        volunteers.stop()
    return result


async def noop(args: argparse.Namespace, root: Path) -> dict[str, object]:
    volunteers = Volunteers(root / "noop-volunteers")
    try:
        addrs = volunteers.start(4, cores=2)
        noop_inputs = [b"%d" % i for i in range(args.noop)]
        elapsed, _, cpu = await run_job(root, "noop", NOOP, noop_inputs, addrs, 2, Limits(fuel=1000, wall_seconds=10))
        return {"noop_units": args.noop, "noop_s": round(elapsed, 3), "noop_units_per_s": round(args.noop / elapsed, 1),
                "noop_cpu_ms_per_unit": round(cpu * 1000 / args.noop, 2)}
    finally:
        volunteers.stop()


def sandbox_vs_native(root: Path, repeat: int) -> dict[str, object]:
    """Best of `repeat` runs each, by the wall clock and by CPU time (this process's for the sandbox, the child's for
    the native program): on a loaded machine the CPU-time ratio is the steadier of the two."""
    unit = tone(1 << 20, 7)
    stdin = root / "unit.f32"
    stdin.write_bytes(unit)
    sandbox = Sandbox()
    module = sandbox.check((EXAMPLES / "signal_search.wasm").read_bytes())
    exe = build_native("signal_search", root)

    def native_run() -> bytes:
        with stdin.open("rb") as f:
            return subprocess.run([str(exe)], stdin=f, capture_output=True, check=True).stdout

    sandboxed_s = native_s = sandboxed_cpu = native_cpu = math.inf
    sandboxed, native = None, b""
    for _ in range(repeat):  # interleaved, so that a busy spell of the machine weighs on both alike
        began, cpu = time.perf_counter(), time.process_time()
        sandboxed = sandbox.run(module, unit, LIMITS)
        sandboxed_s, sandboxed_cpu = (min(sandboxed_s, time.perf_counter() - began),
                                      min(sandboxed_cpu, time.process_time() - cpu))
        began, cpu = time.perf_counter(), children_cpu()
        native = native_run()
        native_s, native_cpu = min(native_s, time.perf_counter() - began), min(native_cpu, children_cpu() - cpu)
    assert sandboxed is not None and sandboxed.output == native, (sandboxed, native)
    return {"native_s": round(native_s, 4), "sandboxed_s": round(sandboxed_s, 4),
            "sandbox_ratio": round(sandboxed_s / native_s, 3),
            "sandbox_cpu_ratio": round(sandboxed_cpu / native_cpu, 3)}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_loop(main: Coroutine[Any, Any, dict[str, object]]) -> dict[str, object]:
    """`main` on uvloop when installed, as `peerloom` commands and the daemon run a node."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=24)
    parser.add_argument("--samples", type=int, default=1 << 17)
    parser.add_argument("--noop", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("speedup", "noop", "sandbox"), help="run one part (default: all)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="compute-bench-"))
    try:
        result: dict[str, object] = {"load": round(os.getloadavg()[0], 2)}
        if args.only != "sandbox":
            result |= run_loop(measure(args, root))
        if args.only in (None, "sandbox"):
            result |= sandbox_vs_native(root, args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["goals"] = {"speedup": ">= 1.7", "sandbox_ratio": "<= 1.5", "noop_units_per_s": ">= 200"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
