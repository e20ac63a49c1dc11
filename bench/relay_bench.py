"""Throughput through a Circuit Relay v2 relay against a direct secure stream, measured in the same run.

    python bench/relay_bench.py [--size 512M] [--chunk 1M] [--runs 1]

Three processes on 127.0.0.1 (bench/relay_node.py): a relay R (no circuit limits), a target B that reserves on R and
sinks streams, and a client A, started once per measurement, that writes `--size` bytes on one sink stream to B:
first directly (the reference: one secure yamux stream), then over `/p2p-circuit` through R (Noise + yamux inside a
yamux stream of each of the two connections to R). Each is repeated `--runs` times and the best taken.
Prints ONE JSON line on stdout: MB/s of both and ratio_relayed_vs_direct (issue 18's goal: >= 0.50).
The relayed path does three times the cipher work of the direct one across the three processes, on two cores.

For bench/stream_bench.py: `await measure(size, chunk)` returns the same figures as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from stream_node import parse_size

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "relay_node.py"
GOAL_RATIO = 0.50
TIMEOUT = 600.0


def log(text: str) -> None:
    print(f"[relay_bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def _line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
    if not line:
        raise RuntimeError(f"relay_node.py (pid {proc.pid}) exited without output")
    return json.loads(line)


@contextlib.asynccontextmanager
async def _server(*args: str) -> AsyncIterator[dict[str, Any]]:
    """A relay_node.py server: yields its first JSON line, to which its exit line (CPU used) is added as "exit" when
    it stops (by closing its stdin, then by its PID)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, str(NODE_SCRIPT), *args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    hello: dict[str, Any] = {}
    try:
        hello = await _line(proc)
        yield hello
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            while (line := await asyncio.wait_for(_line(proc), 15)).get("event") != "exit":
                pass  # stream_node's sink prints a line per batch of streams
            hello["exit"] = line
            await asyncio.wait_for(proc.wait(), 15)
        except (TimeoutError, RuntimeError, ValueError):
            proc.kill()
            await proc.wait()


async def _client(addr: str, size: int, chunk: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(sys.executable, str(NODE_SCRIPT), "client", addr, str(size),
                                                "--chunk", str(chunk), stdout=asyncio.subprocess.PIPE)
    result = await _line(proc)
    await proc.wait()
    if result["counted"] != size:
        raise RuntimeError(f"the sink counted {result['counted']} of {size} bytes")
    return result


async def measure(size: int = 512 << 20, chunk: int = 1 << 20, runs: int = 1) -> dict[str, Any]:
    """Direct and relayed throughput (MB/s, best of `runs`) and their ratio (see the module docstring)."""
    async with _server("relay") as relay, _server("target", relay["addr"]) as target:
        best: dict[str, dict[str, Any]] = {}
        for name, addr in (("direct", target["addr"]), ("relayed", target["circuit"])):
            for _ in range(runs):
                log(f"{name}: {size >> 20} MiB")
                result = await _client(addr, size, chunk)
                assert result["relayed"] == (name == "relayed")
                if name not in best or result["seconds"] < best[name]["seconds"]:
                    best[name] = result
    rates = {name: round(r["bytes"] / 1e6 / r["seconds"], 1) for name, r in best.items()}
    return {
        "bench": "relay",
        "size": size,
        "direct_MBps": rates["direct"],
        "relayed_MBps": rates["relayed"],
        "ratio_relayed_vs_direct": round(rates["relayed"] / rates["direct"], 3),
        "goal_ratio": GOAL_RATIO,
        "details": {**best, "relay_process": relay.get("exit"), "target_process": target.get("exit")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=512 << 20)
    parser.add_argument("--chunk", type=parse_size, default=1 << 20)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.size, args.chunk, args.runs))))


if __name__ == "__main__":
    main()
