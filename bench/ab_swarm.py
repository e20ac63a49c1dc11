"""Two versions of peerloom against each other: the same swarm, alternating runs, one JSON line with the medians.

    python bench/ab_swarm.py --before /tmp/before --after . [--size 1G] [--version hybrid] [--leechers 1] [--rounds 5]

`--before` and `--after` are checkouts (e.g. `git worktree add /tmp/before REV`); each run imports its checkout's
`src` through PYTHONPATH. One torrent (made by `--after`) and one data file on /dev/shm serve every run. A run starts
a seeder on the data, waits until it seeds, starts the leechers, and times from their start to the last one's exit;
runs alternate before/after so that a change of load hits both alike. This measures only what differs between the
two checkouts, with no third-party client in the run: swarm_bench's ratio against libtorrent carries libtorrent's
own variance, which on two cores is larger than the few per cent a refactoring must be shown not to lose.

Prints one JSON line per run and a last line with the median seconds and leecher CPU seconds of each side and
`after_over_before` (median time after / before: below 1.0 is faster).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from swarm_bench import free_port, make_data, parse_size, stop  # the bench's own helpers


def node_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "peerloom", *args, "--no-dht", "--no-lsd"]


def one_run(tree: Path, torrent: Path, src: Path, work: Path, leechers: int) -> tuple[float, float]:
    """Seconds from the leechers' start to the last one's exit, and the leechers' mean CPU seconds."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_port()
    seeder = subprocess.Popen(
        node_cmd("get", str(torrent), "-o", str(src), "--seed", "--port", str(port), "--listen", "127.0.0.1",
                 "--home", str(work / "home-seed"), "--status-lines"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert seeder.stdout is not None
        for line in seeder.stdout:
            if '"seeding"' in line:
                break
        else:
            raise RuntimeError(f"the seeder of {tree} exited before seeding")
        start = time.monotonic()
        procs = [
            subprocess.Popen(node_cmd("get", str(torrent), "-o", str(work / f"dst{i}"), "--peer", f"127.0.0.1:{port}",
                                      "--listen", "127.0.0.1", "--home", str(work / f"home-{i}")),
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i in range(leechers)
        ]
        cpu = 0.0
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise RuntimeError(f"a leecher of {tree} failed with exit code {proc.returncode}")
            cpu += usage.ru_utime + usage.ru_stime
        return time.monotonic() - start, cpu / leechers
    finally:
        stop(seeder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--size", type=parse_size, default=parse_size("1G"))
    ap.add_argument("--version", default="hybrid", choices=["v1", "v2", "hybrid"])
    ap.add_argument("--leechers", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    before, after = args.before.resolve(), args.after.resolve()
    for tree in (before, after):  # bytecode compiled, as installed wheels have it (see swarm_bench)
        compileall.compile_dir(tree / "src" / "peerloom", quiet=1)
    with tempfile.TemporaryDirectory(prefix="peerloom-ab-", dir="/dev/shm") as tmp:
        root = Path(tmp)
        src = root / "src"
        src.mkdir()
        make_data(src / "data.bin", args.size)
        torrent = root / "bench.torrent"
        make = f"from peerloom.torrent.create import create; import sys; sys.stdout.buffer.write(" \
               f"create({str(src / 'data.bin')!r}, version={args.version!r}).to_bytes())"
        torrent.write_bytes(subprocess.run([sys.executable, "-c", make], env=dict(os.environ, PYTHONPATH=str(
            after / "src")), check=True, capture_output=True).stdout)
        results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for round_ in range(args.rounds):
            for side, tree in (("before", before), ("after", after)):
                seconds, cpu = one_run(tree, torrent, src, root / "work", args.leechers)
                results[side].append((seconds, cpu))
                print(json.dumps({"round": round_, "side": side, "seconds": round(seconds, 2),
                                  "leecher_cpu_s": round(cpu, 2)}), flush=True)
    summary: dict[str, object] = {"size_bytes": args.size, "version": args.version, "leechers": args.leechers,
                                  "rounds": args.rounds}
    for side, runs in results.items():
        summary[f"{side}_median_s"] = round(statistics.median(s for s, _ in runs), 2)
        summary[f"{side}_median_leecher_cpu_s"] = round(statistics.median(c for _, c in runs), 2)
    summary["after_over_before"] = round(summary["after_median_s"] / summary["before_median_s"], 3)  # type: ignore[operator]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
