"""Crash safety: a `peerloom get` killed with SIGKILL half-way resumes without fetching verified pieces again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from support.swarm import make_single, node

from peerloom.torrent.create import create

SIZE = 24 * 1024 * 1024


def start_get(torrent: Path, dst: Path, home: Path, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "peerloom", "get", str(torrent), "-o", str(dst), "--peer", f"127.0.0.1:{port}",
         "--listen", "127.0.0.1", "--home", str(home), "--no-dht", "--no-lsd", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


async def test_kill_9_at_half_then_resume(tmp_path: Path) -> None:
    import asyncio

    data = make_single(tmp_path / "src", size=SIZE)
    meta = create(data, version="hybrid", piece_length=262144)
    torrent = tmp_path / "t.torrent"
    torrent.write_bytes(meta.to_bytes())
    home = tmp_path / "leech-home"
    async with node(tmp_path, "seed") as seeder:
        await seeder.add(meta, tmp_path / "src", trusted_complete=True)
        first = start_get(torrent, tmp_path / "dst", home, seeder.port, "--status-lines", "--limit-rate", "6M")
        progress_at_kill = 0.0
        try:
            assert first.stdout is not None
            while True:
                line = await asyncio.to_thread(first.stdout.readline)
                assert line, f"get exited early: {first.stderr.read() if first.stderr else ''}"
                msg = json.loads(line)
                if msg["event"] == "status" and msg["progress"] >= 0.5:
                    progress_at_kill = msg["progress"]
                    os.kill(first.pid, signal.SIGKILL)
                    break
        finally:
            if first.poll() is None:
                first.kill()
            await asyncio.to_thread(first.wait)
        assert first.returncode == -signal.SIGKILL
        assert 0.5 <= progress_at_kill < 0.9

        second = start_get(torrent, tmp_path / "dst", home, seeder.port, "--json")
        stdout, stderr = await asyncio.to_thread(second.communicate, timeout=120)
        assert second.returncode == 0, stderr
    final = json.loads(stdout)
    assert final["progress"] == 1.0 and final["hash_failures"] == 0
    # every piece verified before the kill was kept: the second run fetched only what was missing
    assert final["downloaded"] <= (1.0 - progress_at_kill) * SIZE + 2 * 262144
    assert final["checked_pieces"] >= int(progress_at_kill * meta.num_pieces)
    assert (tmp_path / "dst" / data.name).read_bytes() == data.read_bytes()
