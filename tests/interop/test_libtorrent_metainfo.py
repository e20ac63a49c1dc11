"""Torrents made by peerloom and by libtorrent from the same inputs are the same torrents.

Each case builds one input (a single file, or a nested directory with an empty file and a unicode
name), creates a v1, v2 and hybrid torrent of it with both, and compares the info dictionaries byte
for byte, both ways: peerloom parses libtorrent's output and libtorrent loads peerloom's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from peerloom.torrent.create import create
from peerloom.torrent.metainfo import Metainfo

lt = pytest.importorskip("libtorrent", reason="libtorrent Python bindings are not installed")

pytestmark = pytest.mark.interop

PIECE = 32 * 1024
FLAGS = {"v1": "v1_only", "v2": "v2_only", "hybrid": None}


def _write(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes((i * 31 + seed) % 251 for i in range(size)))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("inputs")
    single = base / "single" / "movie.bin"
    _write(single, 5 * PIECE + 1234, 1)
    tree = base / "multi" / "album"
    _write(tree / "b-second.bin", 3 * PIECE, 2)  # ends on a piece boundary: no pad after it
    _write(tree / "a-first.bin", 100_000, 3)
    (tree / "empty.txt").write_bytes(b"")
    _write(tree / "dir" / "nested" / "deep.bin", 40_000, 4)
    _write(tree / "dir" / "ünïcødé ☃.txt", 777, 5)
    _write(tree / "tiny", 10, 6)
    return {"single": single, "multi": tree}


def _libtorrent_torrent(path: Path, version: str) -> bytes:
    flags = 0 if FLAGS[version] is None else getattr(lt.create_torrent, FLAGS[version])
    # libtorrent keeps a v1 torrent's files in directory-listing order; v1 defines no order, so give
    # it the files sorted as BEP 52 sorts them (v2 and hybrid torrents are sorted by libtorrent too).
    entries = sorted(lt.list_files(str(path)), key=lambda e: e.filename.encode().split(b"/"))
    creator = lt.create_torrent(entries, PIECE, flags=flags)
    lt.set_piece_hashes(creator, str(path.parent))
    return lt.bencode(creator.generate())


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
@pytest.mark.parametrize("shape", ["single", "multi"])
def test_same_info_dictionary_as_libtorrent(inputs: dict[str, Path], shape: str, version: str) -> None:
    path = inputs[shape]
    ours = create(path, version=version, piece_length=PIECE)
    theirs = Metainfo.parse(_libtorrent_torrent(path, version))

    assert ours.info_bytes == theirs.info_bytes
    assert ours.info_hash_v1 == theirs.info_hash_v1
    assert ours.info_hash_v2 == theirs.info_hash_v2
    assert dict(ours.piece_layers) == dict(theirs.piece_layers)
    assert ours.version == theirs.version == version
    assert [f.path for f in theirs.data_files] == [f.path for f in ours.data_files]


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
@pytest.mark.parametrize("shape", ["single", "multi"])
def test_libtorrent_loads_peerloom_torrents(
    inputs: dict[str, Path], shape: str, version: str, tmp_path: Path
) -> None:
    path = inputs[shape]
    ours = create(path, version=version, piece_length=PIECE, trackers=["http://127.0.0.1:1/announce"])
    torrent_file = tmp_path / "t.torrent"
    torrent_file.write_bytes(ours.to_bytes())

    info = lt.torrent_info(str(torrent_file))
    hashes = info.info_hashes()
    assert hashes.has_v1() == (ours.info_hash_v1 is not None)
    assert hashes.has_v2() == (ours.info_hash_v2 is not None)
    if ours.info_hash_v1:
        assert hashes.v1.to_bytes() == ours.info_hash_v1
    if ours.info_hash_v2:
        assert hashes.v2.to_bytes() == ours.info_hash_v2
    storage = info.files()
    their_files = [
        (tuple(storage.file_path(i).split(os.sep)), storage.file_size(i))
        for i in range(storage.num_files())
        if not storage.file_flags(i) & lt.file_storage.flag_pad_file
    ]
    assert their_files == [(f.path, f.length) for f in ours.data_files]
    assert info.num_pieces() == ours.num_pieces
    assert info.piece_length() == PIECE
    assert [t.url for t in info.trackers()] == ["http://127.0.0.1:1/announce"]


def test_libtorrent_accepts_peerloom_data_as_complete(inputs: dict[str, Path], tmp_path: Path) -> None:
    """libtorrent checks the files on disk against peerloom's hybrid torrent and finds every piece."""
    path = inputs["multi"]
    ours = create(path, version="hybrid", piece_length=PIECE)
    session = lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
        }
    )
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(lt.bdecode(ours.to_bytes()))
    params.save_path = str(path.parent)
    handle = session.add_torrent(params)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = handle.status()
        if status.state in (lt.torrent_status.seeding, lt.torrent_status.finished):
            break
        time.sleep(0.05)
    assert handle.status().num_pieces == ours.num_pieces
    assert handle.status().is_seeding
    session.remove_torrent(handle)
    del session
    assert os.listdir(path)  # libtorrent did not touch or delete the data
