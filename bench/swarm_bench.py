"""Swarm throughput: peerloom -> peerloom vs libtorrent -> libtorrent, measured in the same run.

    python bench/swarm_bench.py [--size 1G] [--where shm|disk|both] [--versions v1,hybrid] [--leechers 4]
                                [--piece-length 256K] [--maker peerloom|libtorrent] [--encryption default|rc4]
                                [--transport tcp|utp] [--rounds 3]

Every node is its own process on 127.0.0.1 (two cores: seeder and leecher each get one). The seeder
is started and ready first; a leecher's time runs from its process start to its last verified byte,
so both clients pay their start-up. Prints one JSON line with MB/s, the peerloom/libtorrent ratio, the
peak RSS of the peerloom leecher, and the CPU seconds each seeder and leecher spent (steadier than wall
time when the machine is shared). `--where shm` keeps both copies in /dev/shm (engine speed),
`disk` in a temporary directory on disk (writing new blocks here caps near 270 MB/s for any client).
`--maker` picks the client that makes the .torrent (both clients then download that same file) and
`--piece-length` its piece length; without it each maker picks its own (peerloom: 1 MiB for 1 GiB;
libtorrent 2.1: 256 KiB for 512 MiB, 512 KiB for 1 GiB), so torrents like those other clients publish can be timed.
`--encryption rc4` runs every connection RC4-encrypted (MSE/PE): peerloom's `--encryption require` on every node,
libtorrent's policies forced with RC4 only; `default` leaves each client at its default (both try the MSE
handshake and then, offered both, run the stream in plaintext).
`--transport utp` runs both swarms over uTP (BEP 29): the peerloom leechers dial uTP first, libtorrent's TCP is off.
`--rounds N` runs each measurement N times, alternating which client goes first (peerloom first in even rounds,
libtorrent first in odd ones), and reports each client's median time and CPU seconds and the ratio of the medians,
with every round's rates under `rounds`. Alternating matters on this machine: it is a VM whose free memory is handed
back to the host a few seconds after it is freed (virtio-balloon free page reporting), so whichever client writes
its 1 GiB first into tmpfs pays for the host faulting that memory in again (dd into /dev/shm: 0.3 GB/s cold against
1.5 GB/s warm), which made a single round favour the client that ran second.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from peerloom.torrent.create import create

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def make_torrent(data: Path, version: str, piece_length: int | None, maker: str) -> tuple[bytes, int]:
    """The .torrent file's bytes and its piece length, made by peerloom or by libtorrent."""
    if maker == "peerloom":
        meta = create(data, version=version, piece_length=piece_length)  # type: ignore[arg-type]
        return meta.to_bytes(), meta.piece_length
    import libtorrent as lt  # only the libtorrent maker needs it

    # piece size 0 lets libtorrent choose; default flags make a hybrid (v1 + v2) torrent in libtorrent 2.x
    flags = lt.create_torrent.v1_only if version == "v1" else 0
    made = lt.create_torrent(lt.list_files(str(data)), piece_length or 0, flags)
    lt.set_piece_hashes(made, str(data.parent))
    return lt.bencode(made.generate()), made.piece_length()


def make_data(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            f.write(chunk)
            left -= len(chunk)


def wait_line(proc: subprocess.Popen, predicate, timeout: float = 600.0) -> dict:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"process exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if predicate(msg):
            return msg
    raise TimeoutError("no expected line")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --encryption: the arguments it gives peerloom's nodes and lt_node.py
ENCRYPTION = {"default": ([], []), "rc4": (["--encryption", "require"], ["--encryption", "rc4"])}


def peerloom_cmd(*args: str, encryption: str) -> list[str]:
    # peers are given explicitly: no DHT or LSD traffic in the measurement (libtorrent's are off too)
    return [sys.executable, "-m", "peerloom", *args, "--no-dht", "--no-lsd", *ENCRYPTION[encryption][0]]


def run_peerloom(
    torrent: Path, src: Path, work: Path, leechers: int, encryption: str, transport: str = "tcp"
) -> tuple[float, int, float, float]:
    """Seconds until every leecher is done (from leecher start), the peak RSS (bytes) of one leecher, and the
    CPU seconds of the seeder (during the transfer) and of one leecher (on average)."""
    seed_port = free_port()
    seeder = subprocess.Popen(
        peerloom_cmd("get", str(torrent), "-o", str(src), "--seed", "--port", str(seed_port), "--listen",
                     "127.0.0.1", "--home", str(work / "home-seed"), "--status-lines", encryption=encryption),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_line(seeder, lambda m: m.get("event") == "status" and m.get("state") == "seeding")
        start = time.monotonic()
        seeder_cpu0 = cpu_seconds(seeder.pid)
        procs = []
        work.mkdir(parents=True, exist_ok=True)
        for i in range(leechers):
            log = (work / f"leecher{i}.log").open("w")
            procs.append(subprocess.Popen(
                peerloom_cmd("get", str(torrent), "-o", str(work / f"dst{i}"), "--peer", f"127.0.0.1:{seed_port}",
                             "--listen", "127.0.0.1", "--home", str(work / f"home-{i}"), "--json",
                             "--transport", transport, encryption=encryption),
                stdout=log, stderr=log,
            ))
        peak = 0
        leecher_cpu = 0.0
        for i, proc in enumerate(procs):
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise RuntimeError(f"peerloom leecher failed: {(work / f'leecher{i}.log').read_text()[-2000:]}")
            peak = max(peak, usage.ru_maxrss * 1024)
            leecher_cpu += usage.ru_utime + usage.ru_stime
        elapsed = time.monotonic() - start
        seeder_cpu = cpu_seconds(seeder.pid) - seeder_cpu0
    finally:
        stop(seeder)
    return elapsed, peak, seeder_cpu, leecher_cpu / leechers


def run_libtorrent(
    torrent: Path, src: Path, work: Path, leechers: int, encryption: str, transport: str = "tcp"
) -> tuple[float, float, float]:
    seed_port = free_port()
    node = [sys.executable, str(HERE / "lt_node.py"), "--transport", transport]
    flags = ENCRYPTION[encryption][1]
    seeder = subprocess.Popen([*node, "seed", str(torrent), str(src), str(seed_port), *flags],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_line(seeder, lambda m: m.get("event") == "ready")
        start = time.monotonic()
        seeder_cpu0 = cpu_seconds(seeder.pid)
        procs = [
            subprocess.Popen([*node, "get", str(torrent), str(work / f"lt-dst{i}"), str(free_port()), str(seed_port),
                              *flags],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(leechers)
        ]
        leecher_cpu = 0.0
        for proc in procs:
            wait_line(proc, lambda m: m.get("event") == "done")
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = 0
            leecher_cpu += usage.ru_utime + usage.ru_stime
        elapsed = time.monotonic() - start
        return elapsed, cpu_seconds(seeder.pid) - seeder_cpu0, leecher_cpu / leechers
    finally:
        stop(seeder)


def summarise(runs: dict[str, list[tuple[float, float, float]]], total_bytes: int, peak_rss: int) -> dict:
    """Each client's median over the rounds (time, and CPU seconds of its seeder and of one leecher), the ratio of
    the median rates, and every round's rate."""
    def median(client: str, field: int) -> float:
        return statistics.median(run[field] for run in runs[client])

    pl_rate = total_bytes / median("peerloom", 0) / 1e6
    lt_rate = total_bytes / median("libtorrent", 0) / 1e6
    return {
        "peerloom_MBps": round(pl_rate, 1),
        "libtorrent_MBps": round(lt_rate, 1),
        "ratio": round(pl_rate / lt_rate, 2),
        "peerloom_leecher_peak_rss_MB": round(peak_rss / 1e6, 1),
        # CPU seconds (user+system): a steadier measure than wall time on a shared machine
        "cpu_s": {
            "peerloom_seeder": round(median("peerloom", 1), 2), "libtorrent_seeder": round(median("libtorrent", 1), 2),
            "peerloom_leecher": round(median("peerloom", 2), 2),
            "libtorrent_leecher": round(median("libtorrent", 2), 2),
        },
        "rounds": {client: [round(total_bytes / run[0] / 1e6, 1) for run in client_runs]
                   for client, client_runs in runs.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1G")
    ap.add_argument("--where", default="both", choices=["shm", "disk", "both"])
    ap.add_argument("--versions", default="v1,hybrid")
    ap.add_argument("--leechers", type=int, default=4, help="leechers in the 1 -> N run (0 to skip it)")
    ap.add_argument("--piece-length", type=parse_size, default=None,
                    help="piece length of the torrent, e.g. 256K, 64K, 16K (default: the maker's own choice)")
    ap.add_argument("--maker", default="peerloom", choices=["peerloom", "libtorrent"],
                    help="the client that makes the .torrent both clients download")
    ap.add_argument("--encryption", default="default", choices=sorted(ENCRYPTION),
                    help="rc4: every connection MSE-encrypted with RC4, on both clients")
    ap.add_argument("--transport", default="tcp", choices=["tcp", "utp"], help="the transport of both swarms")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each client, alternating which goes first")
    args = ap.parse_args()
    # bytecode compiled once, as an installed wheel has it: with PYTHONDONTWRITEBYTECODE set (this machine sets it) an
    # editable checkout would otherwise compile every module again at each node's start (~0.25 s, timed by this bench)
    compileall.compile_dir(Path(__file__).resolve().parents[1] / "src" / "peerloom", quiet=1)
    size = parse_size(args.size)
    places = ["shm", "disk"] if args.where == "both" else [args.where]
    results: dict[str, object] = {"size_bytes": size, "maker": args.maker, "encryption": args.encryption,
                                  "transport": args.transport, "rounds": args.rounds}
    for where in places:
        base = Path("/dev/shm") if where == "shm" else None
        with tempfile.TemporaryDirectory(prefix="peerloom-bench-", dir=base) as tmp:
            root = Path(tmp)
            src = root / "src"
            src.mkdir()
            make_data(src / "data.bin", size)
            for version in args.versions.split(","):
                torrent_bytes, piece_length = make_torrent(src / "data.bin", version, args.piece_length, args.maker)
                torrent = root / f"{version}.torrent"
                torrent.write_bytes(torrent_bytes)
                for n in [1] + ([args.leechers] if args.leechers > 1 else []):
                    key = f"{where}_{version}_1to{n}"
                    work = root / f"work-{version}-{n}"
                    runs: dict[str, list[tuple[float, float, float]]] = {"peerloom": [], "libtorrent": []}
                    peaks: list[int] = []
                    for round_ in range(args.rounds):
                        order = ["peerloom", "libtorrent"] if round_ % 2 == 0 else ["libtorrent", "peerloom"]
                        for client in order:
                            if client == "peerloom":
                                seconds, rss, seed_cpu, leech_cpu = run_peerloom(
                                    torrent, src, work / "pl", n, args.encryption, args.transport
                                )
                                peaks.append(rss)
                            else:
                                seconds, seed_cpu, leech_cpu = run_libtorrent(
                                    torrent, src, work / "lt", n, args.encryption, args.transport
                                )
                            shutil.rmtree(work, ignore_errors=True)
                            runs[client].append((seconds, seed_cpu, leech_cpu))
                    results[key] = summarise(runs, n * size, max(peaks))
                    results[key]["piece_length"] = piece_length  # type: ignore[index]
                    print(json.dumps({key: results[key]}), file=sys.stderr, flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
