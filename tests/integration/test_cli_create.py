"""`peerloom create` and `share` on what a folder may hold: links, odd piece lengths, a lone file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import listening_event
from typer.testing import CliRunner

from peerloom.cli import app
from peerloom.torrent import create as create_module
from peerloom.torrent.metainfo import Metainfo

runner = CliRunner()
PEERLOOM = [sys.executable, "-m", "peerloom"]


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """A folder holding one file, a link to a file outside it and a link to a folder."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"not for sharing")
    root = tmp_path / "d"
    root.mkdir()
    (root / "f").write_bytes(b"x" * 100_000)
    (root / "link").symlink_to(tmp_path / "outside" / "secret")
    (root / "dir-link").symlink_to(tmp_path / "outside", target_is_directory=True)
    return root


def test_create_says_which_symlinks_it_skipped(linked: Path, tmp_path: Path):
    out = tmp_path / "d.torrent"
    result = runner.invoke(app, ["create", str(linked), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped 2 symlinks (not followed): dir-link, link" in result.stderr.splitlines()
    meta = Metainfo.parse(out.read_bytes())
    assert [f.path for f in meta.data_files] == [("d", "f")]  # the default hybrid of a one-file folder


@pytest.mark.parametrize(("size", "shown"), [("256M", "256 MiB"), ("4G", "4 GiB"), ("1T", "1 TiB"), ("20K", "20 KiB")])
def test_piece_length_out_of_bounds_is_one_line_before_hashing(tmp_path: Path, size: str, shown: str, monkeypatch):
    (tmp_path / "f").write_bytes(b"x")

    def no_hashing(*args, **kwargs):
        raise AssertionError("hashing started")

    monkeypatch.setattr(create_module, "_Hasher", no_hashing)
    result = runner.invoke(app, ["create", str(tmp_path / "f"), "-o", str(tmp_path / "t"), "--piece-length", size])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # no traceback
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: piece length must be a power of two from 16 KiB to 128 MiB, not {shown}"]
    assert not (tmp_path / "t").exists()


def test_share_says_which_symlinks_it_skipped(linked: Path, tmp_path: Path):
    seeder = subprocess.Popen(
        [*PEERLOOM, "share", str(linked), "--listen", "127.0.0.1", "--no-dht", "--no-lsd", "--no-daemon",
         "--home", str(tmp_path / "home"), "--status-lines"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        listening = listening_event(seeder)
        assert listening is not None
    finally:
        seeder.terminate()
        _, stderr = seeder.communicate(timeout=20)
    assert "skipped 2 symlinks (not followed): dir-link, link" in stderr.splitlines()
