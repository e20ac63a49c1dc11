"""The `peerloom` command: create and info, and one clear line for every user mistake."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from peerloom.cli import app, parse_size
from peerloom.torrent.metainfo import Metainfo

runner = CliRunner()
BAD = sorted((Path(__file__).parent.parent / "data" / "bad_torrents").glob("*.torrent"))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    (root / "sub").mkdir(parents=True)
    (root / "one.bin").write_bytes(b"1" * 50_000)
    (root / "sub" / "two.txt").write_bytes("ünïcode".encode() * 1000)
    return root


def test_help_lists_the_commands():
    peerloom = shutil.which("peerloom", path=str(Path(sys.executable).parent))
    assert peerloom, "the console script is installed next to the interpreter"
    result = subprocess.run([peerloom, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "create" in result.stdout and "info" in result.stdout


def test_create_then_info(data: Path, tmp_path: Path):
    out = tmp_path / "share.torrent"
    result = runner.invoke(
        app, ["create", str(data), "-o", str(out), "--tracker", "http://127.0.0.1:1/a", "--piece-length", "16K"]
    )
    assert result.exit_code == 0, result.output
    meta = Metainfo.parse(out.read_bytes())
    assert meta.version == "hybrid"
    assert meta.piece_length == 16384
    assert meta.trackers == (("http://127.0.0.1:1/a",),)

    shown = runner.invoke(app, ["info", str(out), "--json"])
    assert shown.exit_code == 0
    facts = json.loads(shown.stdout)
    assert facts["info_hash_v1"] == meta.info_hash_v1.hex()
    assert facts["info_hash_v2"] == meta.info_hash_v2.hex()
    assert [f["path"] for f in facts["files"]] == ["share/one.bin", "share/sub/two.txt"]
    assert facts["total_size"] == 50_000 + len("ünïcode".encode()) * 1000

    human = runner.invoke(app, ["info", str(out)])
    assert meta.info_hash_v1.hex() in human.stdout
    assert "share/sub/two.txt" in human.stdout

    magnet = runner.invoke(app, ["info", facts["magnet"], "--json"])
    assert magnet.exit_code == 0
    assert json.loads(magnet.stdout)["info_hash_v2"] == meta.info_hash_v2.hex()


@pytest.mark.parametrize(("flag", "version"), [("--v1", "v1"), ("--v2", "v2"), ("--hybrid", "hybrid")])
def test_versions_private_and_comment(data: Path, tmp_path: Path, flag: str, version: str):
    out = tmp_path / "t.torrent"
    args = ["create", str(data / "one.bin"), "-o", str(out), flag, "--private", "--comment", "hi"]
    assert runner.invoke(app, args).exit_code == 0
    meta = Metainfo.parse(out.read_bytes())
    assert (meta.version, meta.private, meta.comment) == (version, True, "hi")


def test_existing_output_needs_force(data: Path, tmp_path: Path):
    out = tmp_path / "t.torrent"
    out.write_bytes(b"precious")
    result = runner.invoke(app, ["create", str(data), "-o", str(out)])
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert out.read_bytes() == b"precious"
    assert runner.invoke(app, ["create", str(data), "-o", str(out), "--force"]).exit_code == 0


def one_line_error(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_every_hostile_torrent_gives_one_line(path: Path):
    line = one_line_error(runner.invoke(app, ["info", str(path)]))
    assert path.name in line


def test_user_mistakes_give_one_line(tmp_path: Path, data: Path):
    assert "no such file" in one_line_error(runner.invoke(app, ["info", str(tmp_path / "none.torrent")]))
    assert "directory" in one_line_error(runner.invoke(app, ["info", str(tmp_path)]))
    assert "no such file" in one_line_error(runner.invoke(app, ["create", str(tmp_path / "nothing")]))
    assert "info-hash" in one_line_error(runner.invoke(app, ["info", "magnet:?dn=x"]))
    assert "invalid size" in one_line_error(runner.invoke(app, ["create", str(data), "--piece-length", "big"]))
    assert "power of two" in one_line_error(
        runner.invoke(app, ["create", str(data), "-o", str(tmp_path / "x"), "--piece-length", "20K"])
    )
    assert "one of" in one_line_error(runner.invoke(app, ["create", str(data), "--v1", "--v2"]))


def test_parse_size():
    assert parse_size("262144") == 262144
    assert parse_size("256K") == parse_size("256KiB") == parse_size("256kb") == 262144
    assert parse_size("4M") == 4 * 2**20


def test_module_entry_point_shows_a_clean_error(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "peerloom.cli", "info", str(tmp_path / "missing.torrent")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error:")
    assert "Traceback" not in result.stderr
