"""The secure-layer commands as a user runs them: `id`, `ping`, and `share`/`get --private --allow`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from support.cli import listening_event

PEERLOOM = [sys.executable, "-m", "peerloom"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PEERLOOM, *args], capture_output=True, text=True, timeout=timeout)


def test_id_creates_a_private_key_file_and_is_stable(tmp_path: Path) -> None:
    first = run("id", "--home", str(tmp_path / "h"), "--json")
    assert first.returncode == 0, first.stderr
    info = json.loads(first.stdout)
    assert info["peer_id"].startswith("12D3KooW") and info["cid"].startswith("b")
    key = tmp_path / "h" / "identity.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert run("id", "--home", str(tmp_path / "h")).stdout.strip() == info["peer_id"]
    key.chmod(0o644)  # a key others can read is refused, with the fix in the message
    bad = run("id", "--home", str(tmp_path / "h"))
    assert bad.returncode == 1 and "chmod 600" in bad.stderr and "Traceback" not in bad.stderr


def test_private_share_get_and_ping_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "secret.bin"
    data.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    friend = run("id", "--home", str(tmp_path / "friend")).stdout.strip()
    seeder = subprocess.Popen(
        [*PEERLOOM, "share", str(data), "--private", "--allow", friend, "--listen", "127.0.0.1", "--no-dht", "--no-lsd",
         "--home", str(tmp_path / "seed"), "--status-lines"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        listening = listening_event(seeder)
        assert listening is not None, seeder.stderr.read() if seeder.stderr else ""
        addr, magnet = listening["secure_addr"], listening["magnet"]
        assert "/p2p/12D3KooW" in addr

        got = run("get", magnet, "--private", "--peer", addr, "-o", str(tmp_path / "dl"),
                  "--home", str(tmp_path / "friend"), "--listen", "127.0.0.1", "--json", "--no-dht", "--no-lsd",
                  timeout=120)
        assert got.returncode == 0, got.stderr
        assert (tmp_path / "dl" / "secret.bin").read_bytes() == data.read_bytes()

        pong = run("ping", addr, "--count", "2", "--home", str(tmp_path / "friend"))
        assert pong.returncode == 0, pong.stderr
        assert pong.stdout.count("pong from") == 2 and "/peerloom/bittorrent/1.0.0" in pong.stderr

        # admission is per protocol: a key the private swarm does not allow is still answered on ping and identify
        stranger = run("ping", addr, "--count", "1", "--home", str(tmp_path / "stranger"))
        assert stranger.returncode == 0 and stranger.stdout.count("pong from") == 1, stranger.stderr

        missing = run("get", magnet, "--private", "-o", str(tmp_path / "x"), "--home", str(tmp_path / "friend"))
        assert missing.returncode == 2 and "--peer" in missing.stderr
    finally:
        seeder.terminate()
        seeder.wait(20)
