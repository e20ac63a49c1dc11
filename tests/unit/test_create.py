"""Creating torrents: piece hashes checked against a direct computation, ordering, errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from peerloom.torrent import create as create_module
from peerloom.torrent.create import CreateError, auto_piece_length, create, scan
from peerloom.torrent.merkle import block_hashes, merkle_root, next_power_of_two

PIECE = 16384


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "z" / "deep").mkdir(parents=True)
    (root / "b.bin").write_bytes(os.urandom(3 * PIECE + 5))
    (root / "a.bin").write_bytes(os.urandom(PIECE - 1))
    (root / "empty").write_bytes(b"")
    (root / "z" / "deep" / "c.bin").write_bytes(os.urandom(2 * PIECE))
    return root


def test_scan_orders_as_the_v2_file_tree(tree: Path):
    assert [f.path for f in scan(tree)] == [("a.bin",), ("b.bin",), ("empty",), ("z", "deep", "c.bin")]


def test_v1_pieces_are_sha1_of_the_concatenated_files(tree: Path):
    meta = create(tree, version="v1", piece_length=PIECE)
    stream = b"".join(f.disk_path.read_bytes() for f in scan(tree))
    expected = b"".join(hashlib.sha1(stream[i : i + PIECE]).digest() for i in range(0, len(stream), PIECE))
    assert meta.pieces_v1 == expected
    assert not any(f.is_pad for f in meta.files)


def test_hybrid_v1_pieces_include_pad_zeros(tree: Path):
    meta = create(tree, version="hybrid", piece_length=PIECE)
    stream = b""
    for f in scan(tree):
        data = f.disk_path.read_bytes()
        stream += data + bytes(-len(data) % PIECE)
    expected = b"".join(hashlib.sha1(stream[i : i + PIECE]).digest() for i in range(0, len(stream), PIECE))
    assert meta.pieces_v1 == expected


def test_v2_roots_are_the_merkle_roots_of_each_file(tree: Path):
    meta = create(tree, version="v2", piece_length=PIECE)
    for f in meta.files:
        data = (tree.parent / Path(*f.path)).read_bytes()
        if not data:
            assert f.pieces_root is None
            continue
        leaves = block_hashes(data)
        assert f.pieces_root == merkle_root(leaves, next_power_of_two(len(leaves)))
    assert set(meta.piece_layers) == {f.pieces_root for f in meta.files if f.length > PIECE}


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
def test_one_thread_and_small_chunks_give_the_same_torrent(tree: Path, version, monkeypatch):
    two = create(tree, version=version, piece_length=PIECE, threads=2, creation_date=0)
    monkeypatch.setattr(create_module, "CHUNK_SIZE", PIECE)
    one = create(tree, version=version, piece_length=PIECE, threads=1, creation_date=0)
    assert one == two


def test_progress_reports_every_byte(tree: Path):
    seen = []
    create(tree, piece_length=PIECE, progress=seen.append)
    assert sum(seen) == sum(f.length for f in scan(tree))


def test_auto_piece_length():
    assert auto_piece_length(0) == 16384
    assert auto_piece_length(10 * 2**20) == 16384
    for total in (2**30, 3 * 2**30, 20 * 2**30):
        length = auto_piece_length(total)
        assert length & (length - 1) == 0
        assert 1000 <= total / length <= 2000
    assert auto_piece_length(2**50) == 16 * 2**20


def test_errors(tmp_path: Path):
    with pytest.raises(CreateError, match="no such file"):
        create(tmp_path / "missing")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(CreateError, match="no files"):
        create(tmp_path / "empty-dir")
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(CreateError, match="power of two"):
        create(tmp_path / "f", piece_length=3 * PIECE)


def test_directory_symlinks_are_not_followed(tmp_path: Path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "f").write_bytes(b"x" * 10)
    (root / "loop").symlink_to(root, target_is_directory=True)
    assert [f.path for f in scan(root)] == [("f",)]


def test_empty_single_file(tmp_path: Path):
    (tmp_path / "nothing").write_bytes(b"")
    meta = create(tmp_path / "nothing")
    assert meta.num_pieces == 0
    assert meta.total_length == 0
