"""Helpers for swarm tests: data sets, quick nodes on loopback, comparing downloads."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

from peerloom.node import Node, Settings
from peerloom.torrent.metainfo import Metainfo

# No DHT, no LSD and never the public DHT routers unless a test asks: tests stay on loopback and to themselves.
FAST = dict(snub_timeout=1.5, tick=0.1, connect_timeout=3.0, tracker_min_wait=0.2, dht=False, lsd=False,
            public_bootstrap=False)


def fast_settings(**overrides: object) -> Settings:
    return Settings(**{**FAST, **overrides})  # type: ignore[arg-type]


def make_single(root: Path, size: int = 3 * 1024 * 1024 + 12345, name: str = "data.bin") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_bytes(random.Random(size).randbytes(size))
    return path


def make_multi(root: Path) -> Path:
    """Nested folders, an empty file, a unicode name, sizes on and off piece boundaries."""
    top = root / "album"
    (top / "disc 1").mkdir(parents=True)
    (top / "disc 2" / "deep").mkdir(parents=True)
    rng = random.Random(7)
    (top / "disc 1" / "a.bin").write_bytes(rng.randbytes(700_000))
    (top / "disc 1" / "empty.txt").write_bytes(b"")
    (top / "disc 2" / "ünïcode.txt").write_bytes(rng.randbytes(3000))
    (top / "disc 2" / "deep" / "b.bin").write_bytes(rng.randbytes(1_048_576))
    (top / "cover.jpg").write_bytes(rng.randbytes(65_536 * 3 + 17))
    return top


def assert_same_files(meta: Metainfo, source_dir: Path, target_dir: Path, only: list[int] | None = None) -> None:
    for index, f in enumerate(meta.data_files):
        if only is not None and index not in only:
            continue
        got = target_dir.joinpath(*f.path)
        want = source_dir.joinpath(*f.path)
        assert got.exists(), f"{got} missing"
        assert got.stat().st_size == f.length
        assert got.read_bytes() == want.read_bytes(), f"{'/'.join(f.path)} differs"


def node(tmp: Path, name: str, **settings: object) -> Node:
    home = tmp / f"home-{name}"
    return Node(home, host="127.0.0.1", port=0, settings=fast_settings(**settings))


async def wait_done(torrent: object, timeout: float = 60.0) -> None:
    await asyncio.wait_for(torrent.wait_done(), timeout)  # type: ignore[attr-defined]


def corrupt_copy(source: Path, target: Path) -> None:
    """A copy of `source` with one byte flipped in every 64 KiB: every piece fails its hash."""
    data = bytearray(source.read_bytes())
    for i in range(100, len(data), 65_536):
        data[i] ^= 0xFF
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))
    os.utime(target)
