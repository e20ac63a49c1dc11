"""Torrent creation speed: peerloom vs libtorrent's create_torrent on the same file, in the same run.

Writes a file of --size bytes (default 1 GiB) once, reads it once so both tools hash from the page
cache (hashing, not the disk, is what is compared), then times peerloom and libtorrent alternately
for v1 and hybrid torrents at the same piece length and checks they produce the same info-hashes.
Prints one JSON line; `ratio` is peerloom's time over libtorrent's (below 1.0: peerloom is faster).

    python bench/create_bench.py [--size 1G] [--repeat 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import libtorrent as lt

from peerloom.cli.common import parse_size
from peerloom.torrent.create import auto_piece_length, create


def libtorrent_create(path: Path, piece_length: int, version: str) -> tuple[bytes | None, bytes | None]:
    flags = lt.create_torrent.v1_only if version == "v1" else 0
    creator = lt.create_torrent(lt.list_files(str(path)), piece_length, flags=flags)
    lt.set_piece_hashes(creator, str(path.parent))
    info = lt.torrent_info(creator.generate())
    hashes = info.info_hashes()
    return (
        hashes.v1.to_bytes() if hashes.has_v1() else None,
        hashes.v2.to_bytes() if hashes.has_v2() else None,
    )


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the test file (default: system temp)")
    args = parser.parse_args()
    size = parse_size(args.size)

    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        path = Path(work) / "bench.bin"
        with open(path, "wb") as stream:
            block = os.urandom(1 << 20)
            for _ in range(size // len(block)):
                stream.write(block[:-1] + os.urandom(1))  # no two blocks alike
            stream.write(os.urandom(size % len(block)))
        with open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
        piece_length = auto_piece_length(size)
        report: dict[str, object] = {
            "bench": "create",
            "size_bytes": size,
            "piece_length": piece_length,
            "cpus": os.cpu_count(),
            "libtorrent": lt.__version__,
        }
        for version in ("v1", "hybrid"):
            ours, theirs, ours_one_thread = [], [], []
            for _ in range(args.repeat):
                seconds, meta = timed(lambda v=version: create(path, version=v, piece_length=piece_length))
                ours.append(seconds)
                seconds, hashes = timed(lambda v=version: libtorrent_create(path, piece_length, v))
                theirs.append(seconds)
                assert hashes == (meta.info_hash_v1, meta.info_hash_v2), "info-hashes differ from libtorrent"
                seconds, _ = timed(lambda v=version: create(path, version=v, piece_length=piece_length, threads=1))
                ours_one_thread.append(seconds)
            mine, lib = statistics.median(ours), statistics.median(theirs)
            report[version] = {
                "peerloom_s": round(mine, 3),
                "peerloom_1_thread_s": round(statistics.median(ours_one_thread), 3),
                "libtorrent_s": round(lib, 3),
                "peerloom_MBps": round(size / mine / 1e6, 1),
                "libtorrent_MBps": round(size / lib / 1e6, 1),
                "ratio": round(mine / lib, 3),
            }
        print(json.dumps(report))


if __name__ == "__main__":
    main()
