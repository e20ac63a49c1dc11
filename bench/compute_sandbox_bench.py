"""The cost of the sandbox: the example work units run sandboxed vs the same C compiled natively, what fuel
metering and NaN canonicalisation cost, and how well two worker processes use two cores. Same run, same inputs.

- native: examples/compute/*.c built for the host with `python -m ziglang cc -O2` (needs the ziglang package),
  run as a process with the unit on stdin; the time of the best of --repeat runs.
- sandboxed: `Sandbox.run` (fuel, epoch deadline, NaN canonicalisation, WASI with captured output); compile time
  is reported apart (a worker compiles a module once per job).
- no_fuel / plain: the same module on wasmtime engines without fuel metering (and also without NaN
  canonicalisation: wasmtime's defaults), to put a number on what each costs.
- workers: 4 hash-search units on a `ComputeRunner` with 1 worker vs 2 workers (speedup; 2.0 is perfect).
Each answer is checked to be the same everywhere. Prints one JSON line; `*_ratio` values are sandboxed / native.

    python bench/compute_sandbox_bench.py [--repeat 3] [--nonces 3000000] [--samples 1048576]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wasmtime

from peerloom.apps.compute.blobs import BlobStore
from peerloom.apps.compute.runner import ComputeRunner
from peerloom.apps.compute.sandbox import Limits, Sandbox

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "compute"
LIMITS = Limits(fuel=10**13, wall_seconds=600)


def build_native(name: str, out_dir: Path) -> Path:
    exe = out_dir / name
    subprocess.run([sys.executable, "-m", "ziglang", "cc", "-O2", "-o", str(exe), str(EXAMPLES / f"{name}.c"), "-lm"],
                   check=True)
    return exe


def best_of(repeat: int, action) -> tuple[float, object]:
    best, value = math.inf, None
    for _ in range(repeat):
        began = time.perf_counter()
        value = action()
        best = min(best, time.perf_counter() - began)
    return best, value


def bare_engine(fuel: bool, nan_canonical: bool) -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = fuel
    config.cranelift_nan_canonicalization = nan_canonical
    return wasmtime.Engine(config)


def run_bare(engine: wasmtime.Engine, module: wasmtime.Module, stdin_path: Path, fuel: bool) -> bytes:
    """The module on a plain wasmtime store: WASI with stdin from a file and stdout to a file, nothing else."""
    store = wasmtime.Store(engine)
    if fuel:
        store.set_fuel(10**15)
    with tempfile.NamedTemporaryFile() as out:
        wasi = wasmtime.WasiConfig()
        wasi.stdin_file = str(stdin_path)
        wasi.stdout_file = out.name
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        start = linker.instantiate(store, module).exports(store)["_start"]
        try:
            start(store)
        except wasmtime.ExitTrap as exc:
            assert exc.code == 0
        store.close()
        return Path(out.name).read_bytes()


async def runner_time(blob_dir: Path, module_hash: str, unit: bytes, workers: int, units: int) -> float:
    async with ComputeRunner(blob_dir, workers=workers) as runner:
        await asyncio.gather(*(runner.run(module_hash, unit, LIMITS) for _ in range(workers)))  # start, compile
        began = time.perf_counter()
        await asyncio.gather(*(runner.run(module_hash, unit, LIMITS) for _ in range(units)))
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nonces", type=int, default=3_000_000)
    parser.add_argument("--samples", type=int, default=1 << 20)
    args = parser.parse_args()

    rng = random.Random(1)
    n = args.samples
    signal = struct.pack(f"<{n}f", *(0.1 * math.sin(2 * math.pi * 4321 * i / n) + rng.gauss(0, 1) for i in range(n)))
    units = {"hash_search": f"20 0 {args.nonces}\n".encode() + b"peerloom bench", "signal_search": signal}
    report: dict[str, object] = {"bench": "compute_sandbox", "repeat": args.repeat}
    sandbox = Sandbox()
    engines = {"no_fuel": bare_engine(False, True), "plain": bare_engine(False, False)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        for name, unit in units.items():
            wasm = (EXAMPLES / f"{name}.wasm").read_bytes()
            exe = build_native(name, tmp_dir)
            native_s, native_out = best_of(args.repeat, lambda exe=exe, unit=unit: subprocess.run(
                [str(exe)], input=unit, capture_output=True, check=True).stdout)
            compile_s, module = best_of(1, lambda wasm=wasm: sandbox.check(wasm))
            sandboxed_s, result = best_of(args.repeat, lambda module=module, unit=unit: sandbox.run(
                module, unit, LIMITS))
            assert result.output == native_out, (name, result.output[:80], native_out[:80])
            stdin_path = tmp_dir / f"{name}.in"
            stdin_path.write_bytes(unit)
            entry = {"native_s": round(native_s, 4), "sandboxed_s": round(sandboxed_s, 4),
                     "ratio": round(sandboxed_s / native_s, 3), "compile_s": round(compile_s, 4),
                     "fuel": result.fuel}
            for label, engine in engines.items():
                bare = wasmtime.Module(engine, wasm)
                took, out = best_of(args.repeat, lambda e=engine, m=bare, p=stdin_path: run_bare(e, m, p, False))
                assert out == native_out, (name, label)
                entry[f"{label}_s"] = round(took, 4)
            entry["fuel_cost"] = round(sandboxed_s / entry["no_fuel_s"] - 1, 3)  # type: ignore[operator]
            entry["nan_canonicalisation_cost"] = round(entry["no_fuel_s"] / entry["plain_s"] - 1, 3)  # type: ignore[operator]
            report[name] = entry
        blobs = BlobStore(tmp_dir / "blobs")
        module_hash = blobs.put((EXAMPLES / "hash_search.wasm").read_bytes())
        unit = f"20 0 {args.nonces // 4}\n".encode() + b"peerloom bench"
        one = asyncio.run(runner_time(blobs.directory, module_hash, unit, 1, 4))
        two = asyncio.run(runner_time(blobs.directory, module_hash, unit, 2, 4))
        report["workers"] = {"units": 4, "one_worker_s": round(one, 3), "two_workers_s": round(two, 3),
                             "speedup": round(one / two, 2)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
