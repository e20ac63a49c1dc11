"""Secure stream throughput and handshake rate of peerloom's peer layer, against raw TCP and js-libp2p.

    python bench/stream_bench.py [--size 2G] [--chunk 1M] [--streams 16] [--handshakes 200] [--concurrency 8]
                                 [--js-size 1G] [--only raw,secure1,secure16,handshake,js] [--profile DIR]

Every endpoint is its own OS process on 127.0.0.1 (bench/stream_node.py, or js-libp2p's tests/interop/js/peer.mjs),
one process per side on this two-core machine. Measured in one run:
  raw TCP       asyncio Protocols on uvloop, sender writing `--chunk` blocks with pause/resume_writing; the
                receiver counts to EOF and answers the count (8 bytes), like the sink protocol;
  cipher        the reference for the secure layer (issue 18): the same, each `--chunk` sealed with
                ChaCha20-Poly1305 `encrypt_into` as Noise-sized frames (2-byte length, 64 KiB - 1) into pooled
                buffers, the receiver a BufferedProtocol that `decrypt_into`s one reused buffer; no handshake,
                no yamux: what Python moves here with the cipher alone. ratio_secure_vs_cipher: goal >= 0.60;
  secure1       one peerloom Host dialing another and writing `--size` bytes on one /peerloom/sink/1.0.0 stream;
  relay         secure1's stream through a peerloom Circuit Relay v2 server (a third process, no circuit limits):
                the sink reserves on the relay, the client dials its /p2p-circuit address; the stream is encrypted
                end to end inside the two secure connections to the relay. ratio_relay_vs_direct: goal >= 0.50;
  secure16      the same bytes over `--streams` parallel streams of one connection (size/streams each);
  handshake     fresh connections per second (TCP + multistream + Noise XX + yamux + one ping, then close),
                sequential and with `--concurrency` workers (see stream_node.handshake_client);
  js            js-libp2p -> js-libp2p sink, peerloom -> js and js -> peerloom, with `--js-size` bytes (default:
                the size capped at 1 GiB, since js-libp2p runs near 100 MB/s here).
Payloads come from memory. Throughput clocks run from the first byte written to the count received (js-libp2p's
own clock starts at opening the stream). MB/s is 10^6 bytes per second. Prints progress on stderr and ONE JSON
line on stdout. `--profile DIR` adds a py-spy profiled secure1 run (both sides: DIR/secure1-{sender,receiver}.txt,
collapsed stacks) and a self-time summary; `--native` makes py-spy show C and Rust frames too.
On a shared machine, wall-clock rates swing with other load: `details.*.cpu_bound_MBps` (bytes over the CPU time of
the busier side) and the page-fault counts are steadier figures for comparing code changes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_SCRIPT = HERE / "stream_node.py"
GOAL_RATIO = 0.70
GOAL_RATIO_CIPHER = 0.60  # issue 18: one secure yamux stream against the bare framed cipher stream
JS_CAP = 1 << 30
GOAL_RATIO_RELAY = 0.50  # issue 18: one stream through a peerloom relay against one direct secure stream
STEPS = ("raw", "cipher", "secure1", "relay", "secure16", "handshake", "js")
STOP_GRACE = 15.0
TIMEOUT = 900.0


def log(text: str) -> None:
    print(f"[stream_bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def mbps(size: int, seconds: float) -> float:
    return round(size / 1e6 / seconds, 1)


class Node:
    """One stream_node.py process (optionally under `py-spy record`), talked to through JSON lines on stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, what: str) -> None:
        self.proc = proc
        self.what = what

    @classmethod
    async def start(cls, *args: str, profile: Path | None = None, native: bool = False) -> Node:
        cmd = [sys.executable, str(NODE_SCRIPT), *args]
        if profile is not None:
            # --native needs to pause the process for each sample; without it, sampling does not stop it
            mode = ["--native"] if native else ["--nonblocking"]
            spy = [str(Path(sys.executable).parent / "py-spy"), "record", *mode, "-r", "200", "-f", "raw"]
            cmd = [*spy, "-o", str(profile), "--", *cmd]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT
        )
        return cls(proc, args[0])

    async def line(self, timeout: float = TIMEOUT, event: str | None = None) -> dict[str, Any]:
        """The next JSON line on its stdout (with `event`, if given: others are skipped)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    await self.proc.wait()
                    raise RuntimeError(f"{self.what} (pid {self.proc.pid}) exited {self.proc.returncode} early")
                with contextlib.suppress(ValueError):
                    obj = json.loads(raw)
                    if isinstance(obj, dict) and (event is None or obj.get("event") == event):
                        return obj

    async def stop(self) -> None:
        """Close its stdin (a server's stop signal), then SIGTERM and SIGKILL this PID if it lingers."""
        proc = self.proc
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE)
                return
            except TimeoutError:
                continue


async def run_client(*args: str, profile: Path | None = None, native: bool = False) -> dict[str, Any]:
    client = await Node.start(*args, profile=profile, native=native)
    try:
        return await client.line()
    finally:
        await client.stop()


@contextlib.asynccontextmanager
async def server(kind: str, profile: Path | None = None, native: bool = False):
    node = await Node.start(kind, profile=profile, native=native)
    try:
        hello = await node.line(60.0)
        yield node, hello
    finally:
        await node.stop()


# --- measurements -------------------------------------------------------------------------------------------------


async def measure_raw(size: int, chunk: int, kind: str = "raw") -> dict[str, Any]:
    """Raw TCP (`kind` "raw") or the cipher reference ("cipher"): one client and one server process."""
    async with server(f"{kind}-server") as (node, hello):
        res = await run_client(f"{kind}-client", str(hello["port"]), str(size), "--chunk", str(chunk))
        receiver = await node.line(30.0, event="sinks_done") if kind == "cipher" else None
    check_count(res, size, f"{kind} TCP")
    out = {
        "MBps": mbps(size, res["seconds"]),
        "seconds": round(res["seconds"], 3),
        "sender_cpu_s": res["cpu_s"],
        "sender_sys_s": res["sys_s"],
        "sender_page_faults": res["page_faults"],
    }
    if receiver is not None:
        out.update(receiver_cpu_s=receiver["cpu_s"], receiver_page_faults=receiver["page_faults"],
                   cpu_bound_MBps=mbps(size, max(res["cpu_s"], receiver["cpu_s"])))
    return out


async def measure_secure(
    size: int, chunk: int, streams: int, profile: Path | None = None, native: bool = False
) -> dict[str, Any]:
    recv_profile = profile.with_name(profile.name + "-receiver.txt") if profile else None
    send_profile = profile.with_name(profile.name + "-sender.txt") if profile else None
    async with server("host-server", recv_profile, native) as (node, hello):
        args = ("host-client", hello["addr"], str(size), "--streams", str(streams), "--chunk", str(chunk))
        res = await run_client(*args, profile=send_profile, native=native)
        receiver = await node.line(30.0, event="sinks_done")
    check_count(res, size, f"peerloom {streams} stream(s)")
    return {
        "MBps": mbps(size, res["seconds"]),
        "seconds": round(res["seconds"], 3),
        "sender_cpu_s": res["cpu_s"],
        "sender_sys_s": res["sys_s"],
        "sender_page_faults": res["page_faults"],
        "receiver_cpu_s": receiver["cpu_s"],
        "receiver_sys_s": receiver["sys_s"],
        "receiver_page_faults": receiver["page_faults"],
        "sender_cpu_util": round(res["cpu_s"] / res["seconds"], 2),
        "receiver_cpu_util": round(receiver["cpu_s"] / receiver["seconds"], 2),
        # what the busier side's CPU time alone allows: a figure less hurt by other load on a shared machine
        "cpu_bound_MBps": mbps(size, max(res["cpu_s"], receiver["cpu_s"])),
    }


async def measure_relay(size: int, chunk: int) -> dict[str, Any]:
    """One stream from a client to a sink that is reachable only through a relay (three processes)."""
    async with server("relay-server") as (relay, relay_hello):
        node = await Node.start("host-server", "--relay", relay_hello["addr"])
        try:
            hello = await node.line(60.0)
            res = await run_client("host-client", hello["addr"], str(size), "--chunk", str(chunk), "--limited")
            receiver = await node.line(30.0, event="sinks_done")
        finally:
            await node.stop()
        await relay.stop()
        relay_exit = await relay.line(30.0, event="exit")
    check_count(res, size, "peerloom through a relay")
    return {
        "MBps": mbps(size, res["seconds"]),
        "seconds": round(res["seconds"], 3),
        "sender_cpu_s": res["cpu_s"],
        "receiver_cpu_s": receiver["cpu_s"],
        "relay_cpu_s": relay_exit["cpu_s"],
        "relayed_bytes": relay_exit["relayed_bytes"],
        "cpu_bound_MBps": mbps(size, max(res["cpu_s"], receiver["cpu_s"], relay_exit["cpu_s"])),
    }


async def measure_handshakes(count: int, concurrency: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with server("host-server") as (_, hello):
        for workers in (1, concurrency):
            args = ("handshake-client", hello["addr"], "--count", str(count), "--concurrency", str(workers))
            res = await run_client(*args)
            out[workers] = res
            log(f"handshakes, concurrency {workers}: {res['per_s']:.0f}/s ({res['failures']} failures)")
    return out


def check_count(res: dict[str, Any], size: int, what: str) -> None:
    if res.get("counted") != size:
        raise RuntimeError(f"{what}: the receiver counted {res.get('counted')} bytes of {size}")


async def measure_js(js_size: int, chunk: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from support.jslibp2p import JsPeer, ensure_installed, run_dial

    installed = await asyncio.to_thread(ensure_installed)
    if not installed:
        return {"skipped": installed.reason}
    out: dict[str, Any] = {}
    timeout = max(300.0, js_size / 20e6)  # js-libp2p's own deadline: well above 20 MB/s
    async with JsPeer.listen() as js:
        target = js.addrs[0]
        log(f"js-libp2p -> js-libp2p sink, {js_size} bytes")
        res = await run_dial(target, sink=js_size, chunk=chunk, timeout=timeout)
        out["js_js"] = res["sink"]
        log(f"peerloom -> js-libp2p sink, {js_size} bytes")
        mine = await run_client("host-client", target, str(js_size), "--chunk", str(chunk))
        check_count(mine, js_size, "peerloom -> js")
        out["peerloom_to_js"] = {"mb_per_s": mbps(js_size, mine["seconds"]), "seconds": mine["seconds"]}
    log(f"js-libp2p -> peerloom sink, {js_size} bytes")
    async with server("host-server") as (node, hello):
        res = await run_dial(hello["addr"], sink=js_size, chunk=chunk, timeout=timeout)
        receiver = await node.line(30.0, event="sinks_done")
        out["js_to_peerloom"] = {**res["sink"], "receiver_cpu_util": round(receiver["cpu_s"] / receiver["seconds"], 2)}
    return out


# --- profile summary ----------------------------------------------------------------------------------------------


PROFILE_AREAS = {  # source file of the innermost Python frame -> where the time goes
    "noise.py": "Noise framing + ChaCha20-Poly1305",
    "yamux.py": "yamux framing/parsing",
    "stream.py": "Stream read/write",
    "connection.py": "Connection driver (incl. transport.write = socket send)",
    "host.py": "Host",
    "stream_node.py": "bench application",
}


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Self time per function (innermost Python frame of each py-spy sample, line numbers merged) and per area,
    in % of the samples taken while the process was busy (py-spy leaves idle samples out) once imports were done.
    Time in uvloop's C code (socket reads, callbacks) shows as self time of the loop's `run` frames; with
    --native, C frames (cryptography's Rust, libc, uvloop) appear as frames of their own."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit() or "importlib._bootstrap" in stack:
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        self_time[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
        python = [f for f in frames if f.endswith(".py)")]
        source = python[-1].rsplit("(", 1)[1].rstrip(")") if python else ""
        areas[PROFILE_AREAS.get(source, "event loop (uvloop C code) and asyncio")] += n

    def pct(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    return {
        "samples": total,
        "area_pct": {name: pct(n) for name, n in areas.most_common()},
        "self_pct": {name: pct(n) for name, n in self_time.most_common(top)},
        "inclusive_pct": {name: pct(n) for name, n in inclusive.most_common(top + 10)},
    }


def _frame_name(frame: str) -> str:
    """`encrypt (peerloom/net/noise.py:512)` -> `encrypt (noise.py)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({Path(where).name})" if where else name


# --- main -----------------------------------------------------------------------------------------------------------


def ratios(result: dict[str, Any], name: str, measured: dict[str, Any], reference: dict[str, Any], goal: float) -> None:
    """`ratio_NAME` (wall-clock MB/s against the reference's), its goal, and the same ratio from CPU time (bytes per
    CPU second of the busiest process): steadier on a shared host."""
    result[f"ratio_{name}"] = round(measured["MBps"] / reference["MBps"], 3)
    result[f"goal_ratio_{name}"] = goal
    result[f"ratio_{name}_cpu_bound"] = round(measured["cpu_bound_MBps"] / reference["cpu_bound_MBps"], 3)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    size, chunk, steps = args.size, args.chunk, set(args.only)
    js_size = args.js_size if args.js_size is not None else min(size, JS_CAP)
    result: dict[str, Any] = {"size_bytes": size, "chunk_bytes": chunk}
    notes = [
        "one OS process per endpoint on 127.0.0.1, uvloop on the Python side; data from memory",
        "clocks run from the first byte written to the 8-byte count received; MB = 10^6 bytes",
        "details.*.cpu_bound_MBps = bytes / CPU seconds of the busier side (steadier than wall time on a busy host)",
    ]
    details: dict[str, Any] = {}

    if "raw" in steps:
        log(f"raw TCP, {size} bytes")
        details["raw_tcp"] = raw = await measure_raw(size, chunk)
        result["raw_tcp_MBps"] = raw["MBps"]
        log(f"raw TCP: {raw['MBps']} MB/s")
    if "cipher" in steps:
        log(f"cipher reference (framed ChaCha20-Poly1305 over TCP), {size} bytes")
        details["cipher_ref"] = ref = await measure_raw(size, chunk, "cipher")
        result["cipher_ref_MBps"] = ref["MBps"]
        log(f"cipher reference: {ref['MBps']} MB/s")
    if "secure1" in steps:
        log(f"peerloom, 1 stream, {size} bytes")
        details["secure_1stream"] = one = await measure_secure(size, chunk, 1)
        result["secure_1stream_MBps"] = one["MBps"]
        log(f"peerloom 1 stream: {one['MBps']} MB/s")
        if "raw_tcp_MBps" in result:
            result["ratio_secure_vs_raw"] = round(one["MBps"] / result["raw_tcp_MBps"], 3)
            result["goal_ratio_secure_vs_raw"] = GOAL_RATIO
        if "cipher_ref" in details:
            ratios(result, "secure_vs_cipher", one, details["cipher_ref"], GOAL_RATIO_CIPHER)
    if "relay" in steps:
        log(f"peerloom, 1 stream through a peerloom relay, {size} bytes")
        details["relay_1stream"] = relayed = await measure_relay(size, chunk)
        result["relay_1stream_MBps"] = relayed["MBps"]
        log(f"peerloom 1 stream through a relay: {relayed['MBps']} MB/s")
        if "secure_1stream" in details:
            ratios(result, "relay_vs_direct", relayed, details["secure_1stream"], GOAL_RATIO_RELAY)
    if "secure16" in steps:
        log(f"peerloom, {args.streams} streams, {size} bytes")
        details["secure_streams"] = many = await measure_secure(size, chunk, args.streams)
        result[f"secure_{args.streams}streams_MBps"] = many["MBps"]
        log(f"peerloom {args.streams} streams: {many['MBps']} MB/s")
    if "handshake" in steps:
        hs = await measure_handshakes(args.handshakes, args.concurrency)
        result["handshakes_per_s_sequential"] = round(hs[1]["per_s"], 1)
        result[f"handshakes_per_s_concurrent{args.concurrency}"] = round(hs[args.concurrency]["per_s"], 1)
        keep = ("connections", "median_ms", "p90_ms", "failures", "cpu_s", "sys_s")
        details["handshakes"] = {f"concurrency_{k}": {key: v[key] for key in keep} for k, v in hs.items()}
        notes.append(
            f"handshakes: {args.handshakes} fresh connections per figure, each Host.connect + Host.ping + "
            "Connection.close (identify runs on each connection as usual); concurrency C = C client Hosts with "
            "their own identities in one process, each dialing sequentially, so the server never sees two "
            "connections of one PeerId at once and closing drops the connection from the client Host at once"
        )
    if "js" in steps:
        if shutil.which("node") is None or shutil.which("npm") is None:
            js = {"skipped": "node or npm not found on PATH"}
        else:
            js = await measure_js(js_size, chunk)
        if "skipped" in js:
            result["js_skipped_reason"] = js["skipped"]
        else:
            result["js_size_bytes"] = js_size
            if js_size < size:
                notes.append(f"js runs capped at {js_size} bytes (js-libp2p moves ~100 MB/s here); rates compare")
            result["js_js_MBps"] = js["js_js"]["mb_per_s"]
            if "secure_1stream_MBps" in result:
                result["ratio_secure_vs_js"] = round(result["secure_1stream_MBps"] / result["js_js_MBps"], 2)
            result["peerloom_to_js_MBps"] = js["peerloom_to_js"]["mb_per_s"]
            result["js_to_peerloom_MBps"] = js["js_to_peerloom"]["mb_per_s"]
            details["js"] = js
            notes.append(f"js-libp2p sends {chunk}-byte chunks; its clock starts at opening the stream")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        base = args.profile / "secure1"
        log(f"peerloom, 1 stream, {size} bytes, under py-spy (profiles in {args.profile})")
        prof = await measure_secure(size, chunk, 1, base, args.native)
        result["secure_1stream_profiled_MBps"] = prof["MBps"]
        details["profile"] = {
            side: summarize_profile(base.with_name(f"secure1-{side}.txt")) for side in ("sender", "receiver")
        }
    result["details"] = details
    result["notes"] = notes
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=2 << 30, help="bytes per throughput run (default 2G)")
    parser.add_argument("--chunk", type=parse_size, default=1 << 20, help="bytes per write (default 1M)")
    parser.add_argument("--streams", type=int, default=16, help="parallel streams of the multi-stream run")
    parser.add_argument("--handshakes", type=int, default=200, help="connections per handshake figure")
    parser.add_argument("--concurrency", type=int, default=8, help="parallel dialers of the second handshake figure")
    parser.add_argument("--js-size", type=parse_size, default=None, help="bytes per js run (default: min(size, 1G))")
    parser.add_argument(
        "--only", type=lambda s: [x for x in s.split(",") if x], default=list(STEPS), help=",".join(STEPS)
    )
    parser.add_argument("--profile", type=Path, default=None, help="also profile secure1 with py-spy into DIR")
    parser.add_argument("--native", action="store_true", help="py-spy --native (C/Rust frames too)")
    args = parser.parse_args()
    if unknown := set(args.only) - set(STEPS):
        parser.error(f"unknown --only steps: {', '.join(sorted(unknown))}")
    result = asyncio.run(run(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
