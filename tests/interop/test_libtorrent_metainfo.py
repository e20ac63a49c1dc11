"""Torrents made by peerloom and by libtorrent from the same inputs are the same torrents.

Each shape is one input (a single file, one file in a folder or deep in one, several files, empty
files, files of whole pieces, nested folders, an executable file). For each shape and each version
(v1, v2, hybrid) both creators make a torrent and the info dictionaries are compared byte for byte;
then each side reads the other's torrent and must see the same info-hashes, files and piece count.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from support.torrent_shapes import PIECE, SHAPES, VERSIONS, libtorrent_torrent

from peerloom.torrent.create import create
from peerloom.torrent.metainfo import Metainfo

lt = pytest.importorskip("libtorrent", reason="libtorrent Python bindings are not installed")

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: make(tmp_path_factory.mktemp(name)) for name, make in SHAPES.items()}


def _libtorrent_view(data: bytes) -> tuple[object, list[tuple[tuple[str, ...], int]]]:
    """libtorrent's reading of a .torrent: its torrent_info and its files (padding left out)."""
    info = lt.torrent_info(lt.bdecode(data))
    storage = info.layout()
    files = [
        (tuple(storage.file_path(i).split(os.sep)), storage.file_size(i))
        for i in range(storage.num_files())
        if not storage.file_flags(i) & lt.file_storage.flag_pad_file
    ]
    return info, files


def _assert_same_reading(meta: Metainfo, data: bytes) -> None:
    """libtorrent reads `data` (the bytes of `meta`) as the same torrent peerloom does."""
    info, files = _libtorrent_view(data)
    hashes = info.info_hashes()
    assert hashes.has_v1() == (meta.info_hash_v1 is not None)
    assert hashes.has_v2() == (meta.info_hash_v2 is not None)
    if meta.info_hash_v1:
        assert hashes.v1.to_bytes() == meta.info_hash_v1
    if meta.info_hash_v2:
        assert hashes.v2.to_bytes() == meta.info_hash_v2
    assert files == [(f.path, f.length) for f in meta.data_files]
    assert info.num_pieces() == meta.num_pieces
    assert info.piece_length() == meta.piece_length
    if meta.version != "v2":  # libtorrent lays a v2-only torrent out with pads of its own, in no info dict
        assert info.total_size() == sum(f.length for f in meta.files)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_same_info_dictionary_as_libtorrent(inputs: dict[str, Path], shape: str, version: str) -> None:
    path = inputs[shape]
    ours = create(path, version=version, piece_length=PIECE)
    data = libtorrent_torrent(path, version)
    theirs = Metainfo.parse(data)

    assert ours.info_bytes == theirs.info_bytes
    assert ours.info_hash_v1 == theirs.info_hash_v1
    assert ours.info_hash_v2 == theirs.info_hash_v2
    assert dict(ours.piece_layers) == dict(theirs.piece_layers)
    assert ours.version == theirs.version == version
    _assert_same_reading(theirs, data)  # peerloom reads libtorrent's torrent as libtorrent does


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_libtorrent_loads_peerloom_torrents(inputs: dict[str, Path], shape: str, version: str) -> None:
    ours = create(inputs[shape], version=version, piece_length=PIECE, trackers=["http://127.0.0.1:1/announce"])
    data = ours.to_bytes()
    _assert_same_reading(ours, data)
    assert lt.load_torrent_buffer(data).trackers == ["http://127.0.0.1:1/announce"]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_hybrid_without_tail_padding_is_read(inputs: dict[str, Path], shape: str) -> None:
    """libtorrent before 2.0.? put pads before files and none after the last; it still reads those, so do we."""
    data = libtorrent_torrent(inputs[shape], "hybrid", tail_padding=False)
    meta = Metainfo.parse(data)
    assert meta.version == "hybrid"
    _assert_same_reading(meta, data)
    assert not meta.files[-1].is_pad


def test_hybrids_of_several_files_have_pad_files(inputs: dict[str, Path]) -> None:
    """BEP 47 pads after every file that ends inside a piece, the last one too; none for a lone file."""
    several = Metainfo.parse(libtorrent_torrent(inputs["several"], "hybrid"))
    assert [f.is_pad for f in several.files] == [False, True] * 5
    alone = Metainfo.parse(libtorrent_torrent(inputs["one_in_folder"], "hybrid"))
    assert [f.path for f in alone.files] == [("d", "f")]


def test_libtorrent_accepts_peerloom_data_as_complete(inputs: dict[str, Path], tmp_path: Path) -> None:
    """libtorrent checks the files on disk against peerloom's hybrid torrent and finds every piece."""
    for shape in ("nested", "one_in_folder"):
        path = inputs[shape]
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
        assert handle.status().num_pieces == ours.num_pieces, shape
        assert handle.status().is_seeding, shape
        session.remove_torrent(handle)
        del session
        assert os.listdir(path)  # libtorrent did not touch or delete the data
