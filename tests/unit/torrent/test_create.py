"""Creating torrents: piece hashes checked against a direct computation, ordering, errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from peerloom.codec.bencode import decode
from peerloom.torrent import create as create_module
from peerloom.torrent.create import CreateError, auto_piece_length, create, scan, seed_directory
from peerloom.torrent.merkle import block_hashes, merkle_root, next_power_of_two
from peerloom.torrent.metainfo import Metainfo

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
    assert [f.path for f in scan(tree).files] == [("a.bin",), ("b.bin",), ("empty",), ("z", "deep", "c.bin")]


def test_v1_pieces_are_sha1_of_the_concatenated_files(tree: Path):
    meta = create(tree, version="v1", piece_length=PIECE)
    stream = b"".join(f.disk_path.read_bytes() for f in scan(tree).files)
    expected = b"".join(hashlib.sha1(stream[i : i + PIECE]).digest() for i in range(0, len(stream), PIECE))
    assert meta.pieces_v1 == expected
    assert not any(f.is_pad for f in meta.files)


def test_hybrid_v1_pieces_include_pad_zeros(tree: Path):
    meta = create(tree, version="hybrid", piece_length=PIECE)
    stream = b""
    for f in scan(tree).files:
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
    assert sum(seen) == sum(f.length for f in scan(tree).files)


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


def test_empty_single_file(tmp_path: Path):
    (tmp_path / "nothing").write_bytes(b"")
    meta = create(tmp_path / "nothing")
    assert meta.num_pieces == 0
    assert meta.total_length == 0


def test_hybrid_of_a_folder_holding_one_file(tmp_path: Path):
    """The default mode on the smallest folder: the v1 list keeps the folder, no pad follows a lone file
    (libtorrent's layout), and the torrent reads back as the folder with its file."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(os.urandom(5 * PIECE + 3))
    meta = create(tmp_path / "d", piece_length=PIECE)
    assert meta.version == "hybrid" and not meta.single_file
    assert [(f.path, f.is_pad) for f in meta.files] == [(("d", "f"), False)]
    assert Metainfo.parse(meta.to_bytes()) == meta


@pytest.mark.parametrize("version", ["v1", "hybrid"])
def test_folder_of_one_file_in_a_sub_folder(tmp_path: Path, version: str):
    (tmp_path / "d" / "x" / "y").mkdir(parents=True)
    (tmp_path / "d" / "x" / "y" / "f").write_bytes(os.urandom(PIECE + 1))
    meta = create(tmp_path / "d", version=version, piece_length=PIECE)
    assert [f.path for f in meta.files] == [("d", "x", "y", "f")]


def test_v2_torrent_of_a_folder_holding_one_file_is_seeded_from_that_folder(tmp_path: Path):
    """A v2 file tree of one file cannot say "in a folder" (libtorrent reads it as the file alone), so the
    file is found in the folder itself, not in the folder's parent."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 100)
    meta = create(tmp_path / "d", version="v2", piece_length=PIECE)
    assert [f.path for f in meta.files] == [("f",)]
    assert seed_directory(tmp_path / "d", meta) == tmp_path / "d"
    for version in ("v1", "hybrid"):
        assert seed_directory(tmp_path / "d", create(tmp_path / "d", version=version)) == tmp_path


def test_a_lone_file_and_an_empty_one_get_a_pad_in_hybrid(tmp_path: Path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 100)
    (tmp_path / "d" / "g").write_bytes(b"")
    meta = create(tmp_path / "d", piece_length=PIECE)
    assert [(f.path[-1], f.length) for f in meta.files] == [("f", 100), (str(PIECE - 100), PIECE - 100), ("g", 0)]


def test_executable_files_carry_the_x_attribute(tmp_path: Path):
    """BEP 47 `attr` "x" in the v1 list and the v2 tree, as libtorrent writes it for a file with u+x."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "run").write_bytes(b"#!/bin/sh\n")
    (tmp_path / "d" / "run").chmod(0o755)
    (tmp_path / "d" / "data").write_bytes(b"x")
    info = decode(create(tmp_path / "d", piece_length=PIECE).info_bytes)
    assert [e.get(b"attr") for e in info[b"files"]] == [None, b"p", b"x", b"p"]
    assert info[b"file tree"][b"run"][b""][b"attr"] == b"x"
    assert b"attr" not in info[b"file tree"][b"data"][b""]


@pytest.mark.parametrize("size", [2**27 * 2, 2**32, 2**40])
def test_piece_length_over_128_mib_is_refused_before_hashing(tmp_path: Path, size: int, monkeypatch):
    """libtorrent creates pieces of at most 128 MiB; a larger one is refused before any buffer is made."""
    (tmp_path / "f").write_bytes(b"x")

    def no_hashing(*args, **kwargs):
        raise AssertionError("hashing started")

    monkeypatch.setattr(create_module, "_Hasher", no_hashing)
    with pytest.raises(CreateError, match="power of two from 16 KiB to 128 MiB"):
        create(tmp_path / "f", piece_length=size)


def test_largest_piece_length_creates(tmp_path: Path):
    (tmp_path / "f").write_bytes(b"x" * 1000)
    meta = create(tmp_path / "f", piece_length=2**27)
    assert meta.piece_length == 2**27 and meta.num_pieces == 1


def test_symlinks_inside_are_skipped_and_reported(tmp_path: Path):
    """Links are never followed (no file from outside the folder is published, no loop is walked); the
    scan says which it left out so the CLI can tell the user."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "r"
    (root / "sub").mkdir(parents=True)
    (root / "f").write_bytes(b"x" * 10)
    (root / "file-link").symlink_to(outside / "secret")
    (root / "sub" / "dir-link").symlink_to(outside, target_is_directory=True)
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    (root / "loop").symlink_to(root, target_is_directory=True)
    source = scan(root)
    assert [f.path for f in source.files] == [("f",)]
    assert source.symlinks == ["dangling", "file-link", "loop", "sub/dir-link"]
    meta = create(root)
    assert [f.path for f in meta.data_files] == [("r", "f")]


def test_special_files_are_skipped_and_reported(tmp_path: Path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "f").write_bytes(b"x")
    os.mkfifo(root / "pipe")
    source = scan(root)
    assert [f.path for f in source.files] == [("f",)]
    assert source.special == ["pipe"]


def test_a_symlink_named_as_the_path_itself_is_resolved(tmp_path: Path):
    """The user named it: it is followed, and the torrent takes the name of what it points to (the name
    under which the data is then seeded)."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_bytes(b"x" * 10)
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "file-link").symlink_to(tmp_path / "real" / "f")
    meta = create(tmp_path / "link", version="v1")
    assert [f.path for f in meta.data_files] == [("real", "f")]
    assert create(tmp_path / "file-link", version="v1").name == "f"


def test_dot_is_the_current_folder(tmp_path: Path, monkeypatch):
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "f").write_bytes(b"x")
    monkeypatch.chdir(tmp_path / "here")
    assert create(".").name == "here"


def test_folders_nested_too_deep_are_refused(tmp_path: Path):
    deep = tmp_path.joinpath("top", *["d"] * 70)
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"x")
    with pytest.raises(CreateError, match="nested more than 64"):
        scan(tmp_path / "top")
