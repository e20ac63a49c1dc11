"""`peerloom connect share|socks|status` as a user runs them, each command its own process on loopback: an exit
and a SOCKS5 proxy through it, curl downloading through the proxy, the traffic shown by `status` on both homes
afterwards; mistakes are one line and exit 2."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest
from support.cli import peerloom
from support.daemon import DaemonProcess
from support.exit_net import body, http_server, long_command

pytestmark = pytest.mark.timeout(90)
PEERLOOM = (sys.executable, "-m", "peerloom")


async def test_share_and_socks_commands_carry_a_download_and_status_shows_the_bytes(tmp_path: Path) -> None:
    curl = shutil.which("curl")
    assert curl, "curl (Debian) is the SOCKS5 client of this test"
    exit_home, client_home = tmp_path / "exit", tmp_path / "client"
    code, stdout, _ = await peerloom("id", "--home", str(client_home), "--json")
    client_id = json.loads(stdout)["peer_id"]
    out = tmp_path / "download.bin"
    share = ("connect", "share", "--allow", client_id, "--allow-private", "--no-daemon", "--no-dht", "--listen",
             "127.0.0.1", "--home", str(exit_home), "--json")
    async with http_server() as http_port, long_command(*PEERLOOM, *share, "--ports", str(http_port)) as shared:
        assert shared["policy"]["allowed_peers"] == [client_id] and shared["policy"]["ports"] == [http_port]
        async with long_command(*PEERLOOM, "connect", "socks", "--via", shared["addrs"][0], "--listen", "127.0.0.1:0",
                           "--no-daemon", "--home", str(client_home), "--json") as proxy:
            proc = await asyncio.create_subprocess_exec(
                curl, "--silent", "--show-error", "--fail", "--max-time", "60", "--socks5-hostname",
                proxy["listen"], f"http://127.0.0.1:{http_port}/data", "-o", str(out),
                stderr=asyncio.subprocess.PIPE)
            _, stderr = await proc.communicate()
            assert proc.returncode == 0, stderr.decode()
    assert out.read_bytes() == body()
    code, stdout, _ = await peerloom("connect", "status", "--home", str(exit_home), "--json")
    assert code == 0
    served = json.loads(stdout)["traffic"]["served"][client_id]
    exit_id = shared["addrs"][0].rsplit("/", 1)[1]
    code, stdout, _ = await peerloom("connect", "status", "--home", str(client_home), "--json")
    used = json.loads(stdout)["traffic"]["used"][exit_id]
    assert served == used and served["connections"] == 1 and served["from_destination"] > len(body())


@pytest.mark.parametrize("args", [
    ("share", "--allow", "not-a-peer-id"),
    ("share", "--allow", "12D3KooWGhR8gHJehxZyhDXu51yqP8Vt8iBSydFgVnQjBkvYXDQY", "--ports", "80,x"),
    ("socks", "--via", "/ip4/127.0.0.1/tcp/4001"),
    ("socks", "--via", "12D3KooWGhR8gHJehxZyhDXu51yqP8Vt8iBSydFgVnQjBkvYXDQY", "--listen", "0.0.0.0:1080"),
])
async def test_mistakes_are_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, stdout, stderr = await peerloom("connect", *args, "--home", str(tmp_path), "--no-daemon")
    assert code == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1, stderr


async def test_with_a_daemon_running_the_commands_go_to_it(tmp_path: Path) -> None:
    """`share` sets the daemon's policy, `socks` makes it run a proxy, `status` shows both (no node of their own)."""
    home = tmp_path / "daemon"
    daemon = DaemonProcess(home, tmp_path / "dl")
    other = "12D3KooWGhR8gHJehxZyhDXu51yqP8Vt8iBSydFgVnQjBkvYXDQY"
    try:
        await daemon.start()
        code, stdout, stderr = await peerloom("connect", "share", "--allow", other, "--ports", "443",
                                              "--home", str(home), "--json")
        assert code == 0, stderr
        assert json.loads(stdout) == {"serving": True, "allowed_peers": [other], "ports": [443],
                                      "allow_private": False, "rate": 0}
        code, stdout, stderr = await peerloom("connect", "socks", "--via", other, "--listen", "127.0.0.1:0",
                                              "--home", str(home), "--json")
        assert code == 0, stderr
        assert json.loads(stdout)["via"] == other
        code, stdout, stderr = await peerloom("connect", "status", "--home", str(home), "--json")
        shown = json.loads(stdout)["exit"]
        assert shown["policy"]["allowed_peers"] == [other] and len(shown["socks"]) == 1
    finally:
        assert await asyncio.to_thread(daemon.stop) == 0, daemon.log.read_text()[-2000:]
