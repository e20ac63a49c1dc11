"""A full disk, for real (a small tmpfs, mounted as root): under the download folder, under the node's home at start
and part-way through a download, and under a daemon. Each ends in one clear line (or a clear API error), never a
traceback or a hang. Also a state file that is not a database (no mount needed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.swarm import fast_settings, make_single, node

from peerloom.api.server import make_app
from peerloom.api.service import Daemon
from peerloom.node import Node
from peerloom.torrent.create import create
from peerloom.torrent.magnet import Magnet

TOKEN = "test-token-0123456789-abcdefghijklmnopqrstuvwxyz"
DISK_FULL = "database or disk is full"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mount)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(disk: Path) -> None:
    """Write zeros until the disk has no room left."""
    with (disk / "filler").open("ab", buffering=0) as f:
        try:
            while True:
                f.write(bytes(65536))
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0")
        except OSError:
            pass


def get_args(torrent: Path, out: Path, home: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "peerloom", "get", str(torrent), "-o", str(out), "--peer", f"127.0.0.1:{port}",
            "--listen", "127.0.0.1", "--home", str(home), "--no-dht", "--no-lsd", "--no-daemon", *extra]


@contextlib.asynccontextmanager
async def seeding(tmp: Path, size: int, version: str) -> AsyncIterator[tuple[Path, Path, int]]:
    """A node seeding `size` random bytes: the data file, a .torrent of it, and the node's port."""
    data = make_single(tmp / "src", size=size)
    meta = create(data, version=version, piece_length=65536)
    torrent = tmp / "t.torrent"
    torrent.write_bytes(meta.to_bytes())
    async with node(tmp, "seed") as seeder:
        await seeder.add(meta, tmp / "src", trusted_complete=True)
        yield data, torrent, seeder.port


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


async def test_a_full_download_disk_ends_the_download_with_one_line(tmp_path: Path, small_disk: Path) -> None:
    async with seeding(tmp_path, 4 * 1024 * 1024, "hybrid") as (data, torrent, port):
        args = get_args(torrent, small_disk / "out", tmp_path / "home", port)
        done = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    target = small_disk / "out" / data.name
    assert one_error_line(done.stderr) == f"error: cannot write {target}: No space left on device"


async def test_a_home_on_a_full_disk_gives_one_line_at_start(tmp_path: Path, small_disk: Path) -> None:
    fill(small_disk)
    args = get_args(tmp_path / "none.torrent", tmp_path / "out", small_disk / "home", 1)
    (tmp_path / "none.torrent").write_bytes(create(make_single(tmp_path / "src", size=1000)).to_bytes())
    done = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert one_error_line(done.stderr) == f"error: {small_disk / 'home' / 'state.sqlite'}: {DISK_FULL}"


async def test_a_home_filling_up_during_a_download_stops_it_with_one_line(tmp_path: Path, small_disk: Path) -> None:
    """Each verified piece is recorded in the home before it counts: once that fails, the download stops, said why."""
    async with seeding(tmp_path, 8 * 1024 * 1024, "v1") as (_, torrent, port):
        args = get_args(torrent, tmp_path / "out", small_disk / "home", port, "--status-lines",
                        "--limit-rate", "1M")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            while True:
                line = await asyncio.to_thread(proc.stdout.readline)
                assert line, "get ended before it made progress"
                msg = json.loads(line)
                if msg["event"] == "status" and msg["have_bytes"] > 0:
                    break
            fill(small_disk)
            _, stderr = await asyncio.to_thread(proc.communicate, timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1
    assert one_error_line(stderr) == f"error: {small_disk / 'home' / 'state.sqlite'}: {DISK_FULL}"


async def test_a_daemon_whose_home_fills_up_answers_with_the_reason_and_goes_on(small_disk: Path) -> None:
    async with Node(small_disk / "home", host="127.0.0.1", settings=fast_settings()) as n:
        daemon = Daemon(n, small_disk / "downloads")
        await daemon.start()
        client = TestClient(TestServer(make_app(daemon, TOKEN, set()), host="127.0.0.1"))
        await client.start_server()
        headers = {"X-Peerloom-Token": TOKEN}
        try:
            link = str(Magnet(info_hash_v1=bytes(range(20))))
            async with client.post("/api/v1/torrents", json={"magnet": link}, headers=headers) as reply:
                assert reply.status == 201
                tid = (await reply.json())["torrent"]["id"]
            fill(small_disk)
            async with client.post(f"/api/v1/torrents/{tid}/pause", headers=headers) as reply:
                assert reply.status == 500
                assert await reply.json() == {"error": f"{small_disk / 'home' / 'state.sqlite'}: {DISK_FULL}"}
            async with client.get(f"/api/v1/torrents/{tid}", headers=headers) as reply:
                assert reply.status == 200
        finally:
            await client.close()
            await daemon.stop()


def test_a_state_file_that_is_not_a_database_gives_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "state.sqlite").write_bytes(b"this is not a database, it was overwritten by something" * 100)
    torrent = tmp_path / "t.torrent"
    torrent.write_bytes(create(make_single(tmp_path / "src", size=1000)).to_bytes())
    done = subprocess.run(get_args(torrent, tmp_path / "out", home, 1), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert one_error_line(done.stderr) == (f"error: {home / 'state.sqlite'}: file is not a database (move it away to "
                                           "start afresh; its resume data and DHT nodes are lost)")
