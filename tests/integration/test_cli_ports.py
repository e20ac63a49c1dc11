"""Every port the CLI takes is checked the same way: 1-65535 (0 only where the help says what it means); a mistake is
one line and exit 2, before anything starts. (70000 listened on 4464, 131073 on port 1, 65536 on a random port.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from peerloom.cli import app

runner = CliRunner()
OUT_OF_RANGE = ["70000", "131073", "65536", "-1", "abc", "", "1e3", "٣", "+80", "00000080"]
PEER_ID = "12D3KooWHJfdk4CxUWYdb9sY1Wz2x3dubkgbscbiDwPPJUH3buJa"
HASH = "ab" * 20


def usage_error(result: Result | subprocess.CompletedProcess[str], option: str, ports: str) -> None:
    """One line naming the option and the ports it takes; exit 2."""
    stderr = result.stderr
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == 2, (code, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert option in lines[0] and ports in lines[0], lines[0]


def port_options(tmp: Path) -> list[tuple[list[str], str, str]]:
    """(command line before the option, the option, what 0 means or "" when 0 is refused)."""
    missing = str(tmp / "missing")
    return [
        (["share", missing], "--port", "any free port"),
        (["get", f"{missing}.torrent"], "--port", "any free port"),
        (["share", missing], "--dht-port", "the TCP port's number"),
        (["get", f"{missing}.torrent"], "--dht-port", "the TCP port's number"),
        (["dht", "peers", HASH, "--no-public-bootstrap"], "--port", "any free port"),
        (["dht", "stats", "--no-public-bootstrap"], "--port", "any free port"),
        (["id", "--home", str(tmp / "home")], "--port", ""),
    ]


@pytest.mark.parametrize("port", OUT_OF_RANGE)
def test_port_options_refuse_what_is_not_a_port(tmp_path: Path, port: str) -> None:
    for before, option, zero in port_options(tmp_path):
        usage_error(runner.invoke(app, [*before, option, port]), option, f"0 ({zero}) to 65535" if zero else "1 to")


def test_port_zero_is_taken_only_where_it_means_something(tmp_path: Path) -> None:
    for before, option, zero in port_options(tmp_path):
        result = runner.invoke(app, [*before, option, "0"])
        if zero:
            assert result.exit_code != 2 and option not in result.stderr, result.stderr
        else:
            usage_error(result, option, "1 to 65535")
    shown = runner.invoke(app, ["id", "--home", str(tmp_path / "home"), "--port", "65535"])
    assert shown.exit_code == 0 and f"/ip4/127.0.0.1/tcp/65535/p2p/{shown.stdout.strip()}" in shown.stderr


def address_options(tmp: Path) -> list[tuple[list[str], str]]:
    """(command line before the option, the option) of every HOST:PORT the CLI takes (port 0 refused in all)."""
    missing = str(tmp / "missing")
    return [
        (["share", missing, "--bootstrap"], "--bootstrap"),
        (["get", f"{missing}.torrent", "--bootstrap"], "--bootstrap"),
        (["get", f"{missing}.torrent", "--peer"], "--peer"),
        (["dht", "peers", HASH, "--bootstrap"], "--bootstrap"),
        (["dht", "stats", "--bootstrap"], "--bootstrap"),
        (["dht", "ping"], "ADDRESS"),
    ]


@pytest.mark.parametrize("port", [*OUT_OF_RANGE, "0"])
def test_host_port_options_refuse_what_is_not_a_port(tmp_path: Path, port: str) -> None:
    for before, option in address_options(tmp_path):
        for address in (f"127.0.0.1:{port}", f"[::1]:{port}", f"peer.example:{port}"):
            usage_error(runner.invoke(app, [*before, address]), option, "1 to 65535")


def test_host_port_options_refuse_what_is_not_an_address(tmp_path: Path) -> None:
    for before, option in address_options(tmp_path):
        for address in ("127.0.0.1", ":6881", "::1:6881", "[::1:6881", "[not-ipv6]:6881", "127.0.0.1:6881:1"):
            usage_error(runner.invoke(app, [*before, address]), option, "1 to 65535")


def test_listen_takes_an_address_without_a_port(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    for before in (["share", missing], ["get", f"{missing}.torrent"], ["dht", "stats", "--no-public-bootstrap"]):
        for address in ("127.0.0.1:6881", "[::1]:6881", "", "0.0.0.0/0"):
            usage_error(runner.invoke(app, [*before, "--listen", address]), "--listen", "the port goes in --port")
        for address in ("127.0.0.1", "::1", "[::1]", "localhost"):  # taken: what comes next is another mistake
            assert runner.invoke(app, [*before, "--listen", address, "--port", "70000"]).stderr.count("--listen") == 0


def test_multiaddr_ports_are_checked(tmp_path: Path) -> None:
    for port in ("0", "70000"):
        addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{PEER_ID}"
        get = runner.invoke(app, ["get", str(tmp_path / "x.torrent"), "--private", "--peer", addr])
        ping = runner.invoke(app, ["ping", addr, "--home", str(tmp_path / "home")])
        for result, option in ((get, "--peer"), (ping, "ADDRESS")):
            assert result.exit_code == 2 and option in result.stderr and "port" in result.stderr, result.stderr
            assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize(("option", "value", "ports"), [
    ("--port", "70000", "0 (any free port)"),
    ("--port", "-1", "0 (any free port)"),
    ("--dht-port", "65536", "0 (the TCP port's number)"),
    ("--api", "127.0.0.1:70000", "0 (any free port)"),
    ("--api", "127.0.0.1:-1", "0 (any free port)"),
    ("--api", "localhost", "0 (any free port)"),
    ("--bootstrap", "127.0.0.1:0", "1"),
    ("--listen", "127.0.0.1:6881", None),
])
def test_daemon_port_options(tmp_path: Path, option: str, value: str, ports: str | None) -> None:
    """A daemon process: on a port mistake it must refuse at once, not start (the test would time out)."""
    args = ["daemon", "--home", str(tmp_path / "home"), "--api", "127.0.0.1:0", "--listen", "127.0.0.1", "--no-dht",
            "--no-lsd", option, value]
    usage_error(subprocess.run([sys.executable, "-m", "peerloom", *args], capture_output=True, text=True, timeout=30),
                option, f"{ports} to 65535" if ports else "the port goes in --port")
