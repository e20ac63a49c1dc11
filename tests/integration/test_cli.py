"""The `peerloom` command: create and info, and one clear line for every user mistake."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from support.daemon import DaemonProcess
from typer.testing import CliRunner

from peerloom.cli import app
from peerloom.cli.common import UserError, human_rate, parse_size, transfer_progress
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
    assert re.search(r"^  0 +48\.8 KiB  share/one\.bin$", human.stdout, re.M), human.stdout  # numbered as --files
    assert re.search(r"^  1 +[\d.]+ KiB  share/sub/two\.txt$", human.stdout, re.M), human.stdout  # takes them
    assert [f["index"] for f in facts["files"]] == [0, 1]

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
    assert parse_size("1.5M") == parse_size("1.5 MiB") == 3 * 2**19  # binary units, decimals taken
    assert parse_size("0.5G") == 2**29
    assert parse_size("0.1K") == 102  # a fraction of a byte is rounded


@pytest.mark.parametrize("text", ["-1M", "1.5.2M", "M", "1e3", "", "1,5M", "²", "٣K", "1" * 5000, "1.M", ".5M", "5X"])
def test_parse_size_refuses_the_rest_in_one_line(text: str, data: Path):
    with pytest.raises(UserError, match="invalid size"):
        parse_size(text)
    result = runner.invoke(app, ["create", str(data), "--piece-length", text or " "])
    assert "invalid size" in one_line_error(result) and "Traceback" not in result.output


def test_rates_and_sizes_are_in_binary_units():
    clock = [0.0]
    progress = transfer_progress()
    progress.get_time = lambda: clock[0]
    task = progress.add_task("x", total=10 * 2**20, peers=1)
    for second in range(1, 4):
        clock[0] = float(second)
        progress.update(task, completed=second * 2**20)  # 1 MiB/s
    shown = Console(file=io.StringIO(), width=200)
    shown.print(progress.get_renderable())
    text = shown.file.getvalue()  # type: ignore[attr-defined]
    assert "1.0 MiB/s" in text and "3.0/10.0 MiB" in text, text
    assert human_rate(0) == "unlimited" and human_rate(1536 * 1024) == "1.5 MiB/s"


@pytest.mark.parametrize("command", ["info", "get"])
def test_module_entry_point_shows_a_clean_error(tmp_path: Path, command: str):
    result = subprocess.run(
        [sys.executable, "-m", "peerloom.cli", command, str(tmp_path / "missing.torrent")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error:")
    assert "Traceback" not in result.stderr


async def test_limit_and_stats_print_limits_in_binary_units(tmp_path: Path):
    home = tmp_path / "home"
    daemon = await DaemonProcess(home, tmp_path / "downloads").start()
    try:
        limit = subprocess.run([sys.executable, "-m", "peerloom", "limit", "--down", "0", "--up", "1.5M", "--home",
                                str(home)], capture_output=True, text=True, timeout=60)
        assert limit.returncode == 0, limit.stderr
        assert limit.stderr.strip() == "limits now: down unlimited, up 1.5 MiB/s"
        assert (await daemon.ok("GET", "/api/v1/node"))["limits"] == {"download": 0, "upload": 3 * 2**19}
        stats = subprocess.run([sys.executable, "-m", "peerloom", "stats", "--home", str(home)], capture_output=True,
                               text=True, timeout=60)
        assert "limits  down unlimited, up 1.5 MiB/s" in stats.stdout, stats.stdout
    finally:
        assert daemon.stop() == 0
