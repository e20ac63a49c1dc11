"""A torrent's files stay inside their save folder even where a symbolic link in it leads out (issue 12, item 12:
a magnet's file names are only known once its metadata arrives, after the daemon checked the save path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerloom.torrent.create import create
from peerloom.torrent.metainfo import Metainfo
from peerloom.torrent.storage import Storage, StorageError


def multi_file_torrent(tmp_path: Path) -> Metainfo:
    src = tmp_path / "src" / "album"
    src.mkdir(parents=True)
    (src / "a.txt").write_bytes(b"a" * 40_000)
    (src / "sub").mkdir()
    (src / "sub" / "b.txt").write_bytes(b"b" * 30_000)
    return create(src, version="v1", piece_length=16384)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    place = tmp_path / "elsewhere"
    place.mkdir()
    (place / "b.txt").write_bytes(b"precious")
    return place


def test_a_link_in_the_save_folder_that_leads_out_is_never_written_through(tmp_path: Path, outside: Path) -> None:
    meta = multi_file_torrent(tmp_path)
    save = tmp_path / "downloads"
    (save / "album").mkdir(parents=True)
    (save / "album" / "sub").symlink_to(outside)  # album/sub/b.txt would be elsewhere/b.txt
    storage = Storage(meta, save)
    with pytest.raises(StorageError, match="leads out of"):
        storage.write_piece(meta.num_pieces - 1, b"x" * storage.pieces.piece_size(meta.num_pieces - 1))
    with pytest.raises(StorageError, match="leads out of"):
        storage.fit_files(range(len(meta.files)))
    assert (outside / "b.txt").read_bytes() == b"precious"
    assert sorted(p.name for p in outside.iterdir()) == ["b.txt"]
    storage.close()


def test_a_linked_file_is_not_read_nor_deleted_through_a_linked_folder(tmp_path: Path, outside: Path) -> None:
    meta = multi_file_torrent(tmp_path)
    save = tmp_path / "downloads"
    (save / "album").mkdir(parents=True)
    (save / "album" / "sub").symlink_to(outside)
    storage = Storage(meta, save)
    with pytest.raises(StorageError, match="leads out of"):
        storage.read(meta.num_pieces - 1)
    storage.delete_files()
    assert (outside / "b.txt").read_bytes() == b"precious"


def test_a_save_folder_that_is_itself_a_link_works(tmp_path: Path) -> None:
    meta = multi_file_torrent(tmp_path)
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    storage = Storage(meta, tmp_path / "link")
    storage.fit_files(range(len(meta.files)))
    storage.write_piece(0, b"a" * 16384)
    assert (real / "album" / "a.txt").read_bytes()[:16384] == b"a" * 16384
    storage.close()
