"""Names, paths and error texts come from the network and the file system: the CLI shows them as they are, never as
rich markup or :emoji: codes, and shows control characters (ESC, CR, C1, bidi overrides) escaped, never raw."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from support.daemon import DaemonProcess
from typer.testing import CliRunner

from peerloom.cli import app

runner = CliRunner()
PEERLOOM = [sys.executable, "-m", "peerloom"]
ENV = {**os.environ, "COLUMNS": "250", "LINES": "50"}
QUIET = ["--no-dht", "--no-lsd", "--no-public-bootstrap", "--listen", "127.0.0.1"]

HOSTILE = {  # a name -> how the CLI must show it
    "[/x]": "[/x]",
    "[bold]x[/bold]": "[bold]x[/bold]",
    ":-1:": ":-1:",
    "\x1b[31mred": "\\x1b[31mred",
    "cr\rover": "cr\\rover",
    "c1\x9bcsi": "c1\\x9bcsi",
    "bidi\u202eevil": "bidi\\u202eevil",
}
NAMES = sorted(HOSTILE)
FILE_NAMES = [name for name in NAMES if "/" not in name]  # what a file system can hold
# what must never reach a terminal raw: C0 (but the newline) and C1 controls, DEL, bidi controls, line separators
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def magnet(name: str, info_hash: str = "0123456789abcdef0123456789abcdef01234567") -> str:
    return f"magnet:?xt=urn:btih:{info_hash}&dn={quote(name, safe='')}"


def assert_shown(text: str, name: str) -> None:
    assert HOSTILE[name] in text, text
    assert not RAW.search(text), repr(text)
    assert "Traceback" not in text and "👎" not in text, text


def one_line_error(result: object, name: str) -> None:
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    lines = [line for line in result.stderr.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert_shown(lines[0], name)


@pytest.mark.parametrize("name", NAMES, ids=ascii)
def test_info_of_a_magnet_shows_its_name_as_it_is(name: str) -> None:
    result = runner.invoke(app, ["info", magnet(name)])
    assert result.exit_code == 0, result.output
    assert_shown(result.stdout, name)
    as_json = runner.invoke(app, ["info", magnet(name), "--json"])
    assert json.loads(as_json.stdout)["name"] == name  # machine output keeps the name exactly...
    assert not RAW.search(as_json.stdout)  # ...with the controls as JSON escapes


@pytest.mark.parametrize("name", FILE_NAMES, ids=ascii)
def test_create_and_info_of_files_with_hostile_names(tmp_path: Path, name: str) -> None:
    single = tmp_path / name
    single.write_bytes(b"x" * 1000)
    folder = tmp_path / f"dir{name}"
    folder.mkdir()
    (folder / name).write_bytes(b"y" * 3000)
    (folder / "other.bin").write_bytes(b"z" * 2000)
    for source in (single, folder):
        torrent = tmp_path / f"{source.name}.torrent"
        made = runner.invoke(app, ["create", str(source), "-o", str(torrent)])
        assert made.exit_code == 0, made.output
        assert_shown(made.stderr + made.stdout, name)
        shown = runner.invoke(app, ["info", str(torrent)])
        assert shown.exit_code == 0, shown.output
        assert_shown(shown.stdout, name)


@pytest.mark.parametrize("name", NAMES, ids=ascii)
def test_error_lines_show_hostile_file_names(tmp_path: Path, name: str) -> None:
    missing = tmp_path / f"{name}.torrent"  # `[/x]` is a folder `[` and a file `x]`
    one_line_error(runner.invoke(app, ["info", str(missing)]), name)
    one_line_error(runner.invoke(app, ["create", str(missing)]), name)
    one_line_error(runner.invoke(app, ["get", str(missing)]), name)
    one_line_error(runner.invoke(app, ["share", str(missing)]), name)
    missing.parent.mkdir(exist_ok=True)
    missing.write_bytes(b"d4:infoi1ee")  # a corrupt torrent: the error names the file
    one_line_error(runner.invoke(app, ["info", str(missing)]), name)


def run_on_a_terminal(args: list[str], until: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run peerloom with its stderr on a pseudo-terminal (so progress bars are drawn) until it has drawn `until`
    (or `timeout` passed), then Ctrl-C. Waiting for the drawing, not a fixed time: a loaded machine starts it late."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*PEERLOOM, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
                            env=ENV)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while until not in b"".join(chunks).decode(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    os.close(master)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("name", ["[/x]", ":-1:", "\x1b[31mred"], ids=ascii)
def test_get_draws_a_hostile_magnet_name_on_a_terminal(tmp_path: Path, name: str) -> None:
    code, shown = run_on_a_terminal(["get", magnet(name), "-o", str(tmp_path / "out"), "--home", str(tmp_path / "h"),
                                     "--no-daemon", *QUIET], until=f"{HOSTILE[name]} (fetching metadata)")
    assert code == 130, shown  # stopped by Ctrl-C while fetching the metadata, with one line saying so
    assert "Traceback" not in shown and "Exception" not in shown, shown
    assert f"{HOSTILE[name]} (fetching metadata)" in shown, shown
    assert "👎" not in shown and "\x1b[31mred" not in shown  # (rich's own styles are other sequences)


async def peerloom(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*PEERLOOM, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=ENV)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_ls_pause_and_get_through_a_daemon_show_hostile_names(tmp_path: Path) -> None:
    home = tmp_path / "home"
    daemon = await DaemonProcess(home, tmp_path / "downloads").start()
    h = ["--home", str(home)]
    try:
        ids = {}
        for i, name in enumerate(NAMES):
            answer = await daemon.ok("POST", "/api/v1/torrents", {"magnet": magnet(name, f"{i:040x}"), "paused": True})
            ids[name] = answer["torrent"]["id"]
        await daemon.ok("POST", "/api/v1/torrents", {"magnet": magnet("plain.bin", "f" * 40), "paused": True})

        code, out, err = await peerloom("ls", *h)
        assert code == 0, err
        for name in NAMES:
            assert_shown(out, name)
        assert "plain.bin" in out
        code, out, err = await peerloom("ls", "--json", *h)
        assert code == 0 and not RAW.search(out), err
        assert {t["name"] for t in json.loads(out)} == {*NAMES, "plain.bin"}

        for name in NAMES:
            code, _, err = await peerloom("pause", ids[name], *h)
            assert code == 0, err
            assert_shown(err, name)
            code, _, err = await peerloom("resume", ids[name], *h)
            assert code == 0, err
            assert_shown(err, name)

        inside = str(tmp_path / "downloads" / "o")  # the daemon saves inside its download folder only
        code, _, err = await peerloom("get", magnet("[/x] again", "e" * 40), "--detach", "-o", inside, *h)
        assert code == 0 and "added to the daemon" in err and "[/x] again" in err, err
    finally:
        assert daemon.stop() == 0
