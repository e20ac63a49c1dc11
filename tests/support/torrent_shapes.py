"""Inputs of every shape a torrent can have, to compare peerloom's torrents with libtorrent's.

Each maker writes one input under `base` (deterministic bytes, so the torrents are the same on every
run) and returns the path to make a torrent of: a single file, one file in a folder or deep in one,
several files, empty files, files of whole pieces, nested folders, an executable file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

PIECE = 32 * 1024
VERSIONS = ("v1", "v2", "hybrid")


def write(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes((i * 31 + seed) % 251 for i in range(size)))


def _single(base: Path) -> Path:
    write(base / "movie.bin", 5 * PIECE + 1234, 1)
    return base / "movie.bin"


def _single_whole_pieces(base: Path) -> Path:
    write(base / "exact.bin", 4 * PIECE, 2)
    return base / "exact.bin"


def _one_in_folder(base: Path) -> Path:
    write(base / "d" / "f", 3 * PIECE + 77, 3)
    return base / "d"


def _one_in_subfolder(base: Path) -> Path:
    write(base / "d" / "x" / "y" / "f", 2 * PIECE + 5, 4)
    return base / "d"


def _one_and_an_empty_file(base: Path) -> Path:
    write(base / "d" / "f", 2 * PIECE + 9, 5)
    (base / "d" / "zero").write_bytes(b"")
    return base / "d"


def _several(base: Path) -> Path:
    for i, size in enumerate((100_000, 50_000, 1, PIECE - 1, PIECE + 1)):
        write(base / "several" / f"file{i}", size, 6 + i)
    return base / "several"


def _empty_files(base: Path) -> Path:
    top = base / "empties"
    top.mkdir(parents=True)
    (top / "a-empty").write_bytes(b"")  # first
    write(top / "b-data", 40_000, 11)
    (top / "c-empty").write_bytes(b"")  # after a file that ends inside a piece
    write(top / "d" / "inner", 10, 12)
    (top / "d" / "z-empty").write_bytes(b"")  # empty in a sub-folder, last in the v1 list
    return top


def _whole_pieces(base: Path) -> Path:
    write(base / "exact" / "a", 2 * PIECE, 13)  # no pad files needed anywhere
    write(base / "exact" / "b", PIECE, 14)
    return base / "exact"


def _nested(base: Path) -> Path:
    tree = base / "album"
    write(tree / "b-second.bin", 3 * PIECE, 15)
    write(tree / "a-first.bin", 100_000, 16)
    (tree / "empty.txt").write_bytes(b"")
    write(tree / "dir" / "nested" / "deep.bin", 40_000, 17)
    write(tree / "dir" / "ünïcødé ☃.txt", 777, 18)
    write(tree / "tiny", 10, 19)
    return tree


def _executable(base: Path) -> Path:
    write(base / "tools" / "run.sh", 300, 20)
    (base / "tools" / "run.sh").chmod(0o755)  # BEP 47 attr "x", as libtorrent writes it
    write(base / "tools" / "readme", 50_000, 21)
    return base / "tools"


SHAPES: dict[str, Callable[[Path], Path]] = {
    "single": _single,
    "single_whole_pieces": _single_whole_pieces,
    "one_in_folder": _one_in_folder,
    "one_in_subfolder": _one_in_subfolder,
    "one_and_an_empty_file": _one_and_an_empty_file,
    "several": _several,
    "empty_files": _empty_files,
    "whole_pieces": _whole_pieces,
    "nested": _nested,
    "executable": _executable,
}


def libtorrent_torrent(path: Path, version: str, *, tail_padding: bool = True) -> bytes:
    """libtorrent's .torrent of `path` with the default flags, `v1_only` or `v2_only`; without
    `tail_padding`, the hybrid layout of older libtorrent versions (pads before files, none at the end)."""
    import libtorrent as lt

    flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}[version]
    if not tail_padding:
        flags |= lt.create_torrent.canonical_files_no_tail_padding
    # libtorrent keeps a v1 torrent's files in directory-listing order; v1 defines no order, so give
    # it the files sorted as BEP 52 sorts them (v2 and hybrid torrents are sorted by libtorrent too).
    entries = sorted(lt.list_files(str(path)), key=lambda e: e.filename.encode().split(b"/"))
    creator = lt.create_torrent(entries, PIECE, flags=flags)
    lt.set_piece_hashes(creator, str(path.parent))
    return lt.bencode(creator.generate())
