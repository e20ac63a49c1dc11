"""Magnet links, multiaddrs, peer ids and paths the CLI prints are never wrapped, not even on a 40-column terminal
or in a redirected log, so that copying one gives the whole address."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from peerloom.codec.multiaddr import Multiaddr
from peerloom.torrent.magnet import Magnet

PEERLOOM = [sys.executable, "-m", "peerloom"]
NARROW = {**os.environ, "COLUMNS": "40"}
QUIET = ["--no-dht", "--no-lsd", "--listen", "127.0.0.1", "--no-daemon"]


def peerloom(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PEERLOOM, *args], capture_output=True, text=True, timeout=120, env=NARROW)


def line_with(text: str, needle: str) -> str:
    lines = [line for line in text.splitlines() if needle in line]
    assert len(lines) == 1, text
    return lines[0]


def secure_address(line: str, peer_id: str) -> str:
    """The multiaddr in `line`, checked whole: it parses and ends in the node's PeerId."""
    found = re.search(r"/ip4/\S+", line)
    assert found, line
    addr = Multiaddr(found[0].rstrip("'"))
    assert str(addr.peer_id) == peer_id, line
    return str(addr)


def test_share_get_and_id_print_addresses_and_links_whole(tmp_path: Path) -> None:
    data = tmp_path / "secret-data-with-a-long-enough-name.bin"
    data.write_bytes(os.urandom(300_000))
    seed_id = peerloom("id", "--home", str(tmp_path / "seed")).stdout.strip()
    friend_id = peerloom("id", "--home", str(tmp_path / "friend")).stdout.strip()

    shown = peerloom("id", "--home", str(tmp_path / "seed"), "--port", "4001")
    assert line_with(shown.stderr, "listen address:") == f"listen address: /ip4/127.0.0.1/tcp/4001/p2p/{seed_id}"

    out, log = tmp_path / "share.out", tmp_path / "share.log"
    with open(out, "w") as stdout, open(log, "w") as stderr:
        seeder = subprocess.Popen([*PEERLOOM, "share", str(data), "--private", "--allow", friend_id, *QUIET,
                                   "--home", str(tmp_path / "seed"), "--torrent", str(tmp_path / "t.torrent")],
                                  stdout=stdout, stderr=stderr, env=NARROW)
    try:
        deadline = time.monotonic() + 60
        while "peerloom get" not in log.read_text() and seeder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        printed = out.read_text().splitlines()
        assert len(printed) == 1, printed
        magnet = Magnet.parse(printed[0])
        assert magnet.name == data.name and printed[0].startswith("magnet:?")
        shared = log.read_text()
        listening = secure_address(line_with(shared, "secure layer at"), seed_id)
        command = line_with(shared, "peerloom get")
        assert command == f"  peerloom get '{printed[0]}' --private --peer {listening}", shared

        target = tmp_path / ("a-folder-with-a-name-longer-than-the-terminal-is-wide" * 2)
        got = peerloom("get", printed[0], "--private", "--peer", listening, "-o", str(target), *QUIET,
                       "--home", str(tmp_path / "friend"))
        assert got.returncode == 0, got.stderr
        secure_address(line_with(got.stderr, "secure layer at"), friend_id)
        done = line_with(got.stderr, "done:")
        assert done.startswith(f"done: {data.name} (") and done.endswith(f") verified in {target}"), got.stderr
    finally:
        seeder.send_signal(signal.SIGTERM)
        seeder.wait(30)

    info = peerloom("info", str(tmp_path / "t.torrent"))
    assert line_with(info.stdout, "magnet:") == f"magnet:       {printed[0]}"
