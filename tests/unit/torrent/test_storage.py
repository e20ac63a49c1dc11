"""Piece geometry over files, piece verification (v1/v2/hybrid), and file I/O."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peerloom.torrent.create import create
from peerloom.torrent.storage import PieceMap, PieceVerifier, Storage

PIECE = 32768


def make_tree(root: Path) -> Path:
    top = root / "set"
    (top / "sub").mkdir(parents=True)
    (top / "a.bin").write_bytes(os.urandom(PIECE * 2 + 1000))
    (top / "empty").write_bytes(b"")
    (top / "sub" / "b.bin").write_bytes(os.urandom(5000))
    (top / "sub" / "c.bin").write_bytes(os.urandom(PIECE * 3))
    return top


def stream_of(meta, root: Path) -> bytes:
    """The piece stream as the torrent defines it, built naively from the files."""
    out = bytearray()
    for f in meta.files:
        if meta.pieces_v1 is None:
            out += bytes(f.offset - len(out))
        out += bytes(f.length) if f.is_pad else root.joinpath(*f.path).read_bytes()
    return bytes(out)


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
def test_pieces_cover_the_files_and_verify(tmp_path: Path, version: str) -> None:
    top = make_tree(tmp_path)
    meta = create(top, version=version, piece_length=PIECE)
    pieces = PieceMap(meta)
    verifier = PieceVerifier(meta, pieces)
    storage = Storage(meta, tmp_path)
    stream = stream_of(meta, tmp_path)
    assert pieces.num_pieces == meta.num_pieces
    for i in range(pieces.num_pieces):
        data = storage.read(i)
        assert data is not None and len(data) == pieces.piece_size(i)
        assert data == stream[i * PIECE : i * PIECE + len(data)]
        assert verifier.verify(i, data)
        corrupt = bytearray(data)
        corrupt[len(corrupt) // 2] ^= 1
        assert not verifier.verify(i, corrupt)
    storage.close()


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
def test_write_pieces_rebuilds_the_files(tmp_path: Path, version: str) -> None:
    top = make_tree(tmp_path / "src")
    meta = create(top, version=version, piece_length=PIECE)
    source = Storage(meta, tmp_path / "src")
    target = Storage(meta, tmp_path / "dst")
    target.fit_files(range(len(meta.files)))
    for i in reversed(range(meta.num_pieces)):
        data = source.read(i)
        assert data is not None
        target.write_piece(i, data)
    target.close()
    for f in meta.data_files:
        assert (tmp_path / "dst").joinpath(*f.path).read_bytes() == (tmp_path / "src").joinpath(*f.path).read_bytes()
    assert not any(p.name.startswith(".pad") for p in (tmp_path / "dst").rglob("*")), "pad files must not be written"


def test_missing_file_reads_as_none_and_file_state(tmp_path: Path) -> None:
    top = make_tree(tmp_path)
    meta = create(top, version="v1", piece_length=PIECE)
    (top / "sub" / "c.bin").unlink()
    storage = Storage(meta, tmp_path)
    assert storage.read(meta.num_pieces - 1) is None
    assert storage.read(0) is not None
    state = storage.file_state()
    assert (-1, -1) in state


def test_wanted_pieces_follow_file_selection(tmp_path: Path) -> None:
    top = make_tree(tmp_path)
    meta = create(top, version="hybrid", piece_length=PIECE)
    pieces = PieceMap(meta)
    names = ["/".join(f.path) for f in meta.data_files]
    only_b = [names.index("set/sub/b.bin")]
    wanted = pieces.wanted_pieces(only_b)
    assert sum(wanted) == 1
    assert sum(pieces.wanted_pieces(None)) == meta.num_pieces
    assert sum(pieces.wanted_pieces([])) == 0


def test_v2_pieces_are_per_file_and_short_at_file_ends(tmp_path: Path) -> None:
    top = make_tree(tmp_path)
    meta = create(top, version="v2", piece_length=PIECE)
    pieces = PieceMap(meta)
    sizes = [pieces.piece_size(i) for i in range(pieces.num_pieces)]
    # a.bin: 2 full + 1000; sub/b.bin: 5000; sub/c.bin: 3 full (tree order: a.bin, empty, sub/...)
    assert sorted(sizes) == sorted([PIECE, PIECE, 1000, 5000, PIECE, PIECE, PIECE])


def test_delete_files_removes_the_torrents_files_and_the_folders_they_leave_empty(tmp_path: Path) -> None:
    top = make_tree(tmp_path)
    meta = create(top, version="hybrid", piece_length=PIECE)
    (top / "sub" / "mine.txt").write_text("not the torrent's")
    (tmp_path / "neighbour.txt").write_text("beside the torrent")
    Storage(meta, tmp_path).delete_files()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "neighbour.txt", "set", "set/sub", "set/sub/mine.txt"]
    (top / "sub" / "mine.txt").unlink()
    Storage(meta, tmp_path).delete_files()
    assert [p.name for p in tmp_path.iterdir()] == ["neighbour.txt"] and tmp_path.is_dir()
