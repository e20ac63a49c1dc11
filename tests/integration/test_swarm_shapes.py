"""Torrents of small folders shared and fetched between peerloom nodes on loopback: a folder holding one
file (the default hybrid once could not even be made of it), one file deep in sub-folders, empty files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from support.swarm import assert_same_files, node, wait_done

from peerloom.torrent.create import seed_directory
from peerloom.torrent.magnet import Magnet


def _one_in_folder(src: Path) -> Path:
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(random.Random(1).randbytes(5 * 1024 * 1024))
    return src / "d"


def _one_in_subfolder(src: Path) -> Path:
    (src / "d" / "x" / "y").mkdir(parents=True)
    (src / "d" / "x" / "y" / "f").write_bytes(random.Random(2).randbytes(300_000))
    return src / "d"


def _with_empty_files(src: Path) -> Path:
    (src / "d" / "sub").mkdir(parents=True)
    (src / "d" / "a").write_bytes(b"")
    (src / "d" / "b").write_bytes(random.Random(3).randbytes(70_000))
    (src / "d" / "sub" / "c").write_bytes(b"")
    return src / "d"


SHAPES = {"one_in_folder": _one_in_folder, "one_in_subfolder": _one_in_subfolder, "with_empty_files": _with_empty_files}


@pytest.mark.parametrize("version", ["hybrid", "v1", "v2"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_share_and_get(tmp_path: Path, shape: str, version: str) -> None:
    data = SHAPES[shape](tmp_path / "src")
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        shared = await seeder.share(data, version=version, piece_length=32768)
        meta = shared.meta
        assert meta is not None and meta.version == version
        magnet = Magnet.from_metainfo(meta, peers=(("127.0.0.1", seeder.port),))
        t = await leecher.add(str(magnet), tmp_path / "dst")
        await wait_done(t)
        st = t.status()
        assert st.progress == 1.0 and st.hash_failures == 0
    assert_same_files(meta, seed_directory(data, meta), tmp_path / "dst")
    assert sum(f.stat().st_size for f in (tmp_path / "dst").rglob("*") if f.is_file()) == meta.total_length
