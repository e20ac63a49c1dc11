"""`peerloom daemon` as a process: torrents survive SIGKILL, rate limits set through the API hold, and the
CLI commands work against it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
from support.daemon import DaemonProcess
from support.swarm import make_single, node

from peerloom.torrent.magnet import Magnet
from peerloom.torrent.swarm import Torrent

MB = 1_000_000


def magnet_of(seeder_port: int, torrent: Torrent) -> str:
    assert torrent.meta is not None
    return f"{Magnet.from_metainfo(torrent.meta)}&x.pe=127.0.0.1:{seeder_port}"


async def add(daemon: DaemonProcess, magnet: str, **extra: object) -> str:
    answer = await daemon.ok("POST", "/api/v1/torrents", {"magnet": magnet, **extra})
    return answer["torrent"]["id"]


async def test_torrents_come_back_after_sigkill_and_the_half_done_one_completes(tmp_path: Path) -> None:
    small = make_single(tmp_path / "src", 3 * 1024 * 1024 + 5, "small.bin")
    big = make_single(tmp_path / "src", 24 * 1024 * 1024 + 7, "big.bin")
    save = tmp_path / "downloads"
    async with node(tmp_path, "seeder") as seeder:
        t_small, t_big = await seeder.share(small), await seeder.share(big)
        daemon = await DaemonProcess(tmp_path / "home", save).start()
        try:
            complete = await add(daemon, magnet_of(seeder.port, t_small))
            await daemon.wait_for(complete, lambda t: t["progress"] == 1.0 and t["state"] == "seeding")
            await daemon.ok("POST", f"/api/v1/torrents/{complete}/pause")
            half = await add(daemon, magnet_of(seeder.port, t_big), paused=True)
            await daemon.ok("PUT", f"/api/v1/torrents/{half}/limits", {"download": 4 * MB})
            await daemon.ok("POST", f"/api/v1/torrents/{half}/resume")
            before = await daemon.wait_for(half, lambda t: t["progress"] >= 0.3)
            assert before["progress"] < 0.9, "the limit should keep it half-done"
            daemon.kill()

            daemon = await DaemonProcess(tmp_path / "home", save).start()
            listed = {t["id"]: t for t in (await daemon.ok("GET", "/api/v1/torrents"))["torrents"]}
            assert set(listed) == {complete, half}
            back = await daemon.wait_for(complete, lambda t: t["state"] == "paused")
            assert back["progress"] == 1.0 and back["paused"]
            again = await daemon.wait_for(half, lambda t: t["state"] == "downloading")
            assert again["have_bytes"] >= before["have_bytes"], "a verified piece was lost"
            assert again["limits"]["download"] == 4 * MB
            assert again["downloaded"] >= before["have_bytes"]  # totals kept too
            restored_total = again["downloaded"]

            await daemon.ok("PUT", f"/api/v1/torrents/{half}/limits", {"download": 0})
            done = await daemon.wait_for(half, lambda t: t["progress"] == 1.0)
            fetched_again = done["downloaded"] - restored_total
            assert fetched_again <= (before["size"] - before["have_bytes"]) * 1.1 + 2 * 1024 * 1024
            await daemon.ok("POST", f"/api/v1/torrents/{complete}/resume")
            await daemon.wait_for(complete, lambda t: t["state"] == "seeding")
            assert daemon.stop() == 0
            assert not (tmp_path / "home" / "daemon.json").exists()
        finally:
            daemon.stop()
    assert (save / "small.bin").read_bytes() == small.read_bytes()
    assert (save / "big.bin").read_bytes() == big.read_bytes()


async def measure_rate(daemon: DaemonProcess, torrent_id: str, seconds: float) -> float:
    first = await daemon.torrent(torrent_id)
    start = time.monotonic()
    await asyncio.sleep(seconds)
    last = await daemon.torrent(torrent_id)
    assert last["progress"] < 1.0, "the download ended inside the window: use more data"
    return (last["downloaded"] - first["downloaded"]) / (time.monotonic() - start)


async def test_rate_limits_set_through_the_api_hold(tmp_path: Path) -> None:
    """5 MB/s for the whole node over 10 s, then 2.5 MB/s for the torrent alone: each within 10 %."""
    data = make_single(tmp_path / "src", 112 * 1024 * 1024, "large.bin")
    async with node(tmp_path, "seeder") as seeder:
        torrent = await seeder.share(data)
        daemon = await DaemonProcess(tmp_path / "home", tmp_path / "downloads").start()
        try:
            tid = await add(daemon, magnet_of(seeder.port, torrent), paused=True)
            assert (await daemon.ok("PUT", "/api/v1/limits", {"download": 5 * MB}))["limits"]["download"] == 5 * MB
            await daemon.ok("POST", f"/api/v1/torrents/{tid}/resume")
            await daemon.wait_for(tid, lambda t: t["downloaded"] > 2 * MB)
            node_rate = await measure_rate(daemon, tid, 10.0)

            await daemon.ok("PUT", "/api/v1/limits", {"download": 0})
            await daemon.ok("PUT", f"/api/v1/torrents/{tid}/limits", {"download": 2_500_000})
            await asyncio.sleep(1.5)  # what was requested under the old limit arrives
            torrent_rate = await measure_rate(daemon, tid, 6.0)
        finally:
            daemon.stop()
    print(f"node limit 5 MB/s: measured {node_rate / MB:.2f} MB/s; torrent limit 2.5 MB/s: {torrent_rate / MB:.2f}")
    assert abs(node_rate - 5 * MB) <= 0.1 * 5 * MB, node_rate
    assert abs(torrent_rate - 2.5 * MB) <= 0.1 * 2.5 * MB, torrent_rate


async def peerloom(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "peerloom", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_commands_work_against_a_running_daemon(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shared = make_single(tmp_path / "mine", 1024 * 1024 + 3, "mine.bin")
    remote = make_single(tmp_path / "src", 2 * 1024 * 1024 + 9, "remote.bin")
    async with node(tmp_path, "seeder") as seeder:
        t_remote = await seeder.share(remote)
        daemon = await DaemonProcess(home, tmp_path / "downloads", "--share-root", str(tmp_path / "mine")).start()
        h = ["--home", str(home)]
        try:
            code, out, err = await peerloom("share", str(shared), *h)
            assert code == 0, err
            assert out.strip().startswith("magnet:?") and "the daemon seeds mine.bin" in err
            shared_id = Magnet.parse(out.strip()).info_hash_v1.hex()  # type: ignore[union-attr]

            code, _, err = await peerloom("share", str(remote), *h)  # outside the daemon's roots
            (line,) = [line for line in err.splitlines() if "error" in line]  # one line, no traceback
            assert code == 1 and "Traceback" not in err and "--share-root" in line, err
            assert "outside the folders this daemon may share" in line, err
            code, _, err = await peerloom("get", magnet_of(seeder.port, t_remote), "-o", str(tmp_path / "elsewhere"),
                                          "--detach", *h)
            (line,) = [line for line in err.splitlines() if "error" in line]
            assert code == 1 and "Traceback" not in err and "outside the daemon's download folder" in line, err
            assert not (tmp_path / "elsewhere").exists()

            target = tmp_path / "downloads"  # without -o: the daemon's download folder
            code, _, err = await peerloom("get", magnet_of(seeder.port, t_remote).split("&x.pe=")[0],
                                          "--peer", f"127.0.0.1:{seeder.port}", *h)
            assert code == 0 and "added to the daemon" in err and "done: remote.bin" in err, err  # followed to the end
            remote_id = t_remote.id
            assert (target / "remote.bin").read_bytes() == remote.read_bytes()
            code, _, err = await peerloom("get", magnet_of(seeder.port, t_remote), "--detach", *h)
            assert code == 1 and "already added" in err and "Traceback" not in err

            code, out, err = await peerloom("ls", *h, "--json")
            assert code == 0, err
            assert {t["id"] for t in json.loads(out)} == {shared_id, remote_id}
            code, out, _ = await peerloom("ls", *h)
            assert "mine.bin" in out and "remote.bin" in out and "100.0%" in out

            code, _, err = await peerloom("pause", shared_id[:8], *h)
            assert code == 0 and "paused mine.bin" in err
            assert (await daemon.torrent(shared_id))["state"] == "paused"
            code, _, err = await peerloom("resume", shared_id[:8], *h)
            assert code == 0 and (await daemon.torrent(shared_id))["state"] == "seeding"

            code, out, err = await peerloom("stats", *h, "--json")
            assert code == 0 and json.loads(out)["torrents"] == 2
            code, _, err = await peerloom("limit", "--down", "3M", *h)
            assert code == 0 and (await daemon.ok("GET", "/api/v1/node"))["limits"]["download"] == 3 * 1024 * 1024

            code, _, err = await peerloom("share", str(shared), *h)  # already there: one clear line
            assert code == 1 and "already added" in err and "Traceback" not in err
            code, _, err = await peerloom("pause", "ffffffff", *h)
            assert code == 1 and "no torrent" in err

            code, _, err = await peerloom("rm", remote_id[:8], "--delete-data", *h)
            assert code == 0 and not (target / "remote.bin").exists()
            assert [t["id"] for t in (await daemon.ok("GET", "/api/v1/torrents"))["torrents"]] == [shared_id]
            code, _, err = await peerloom("rm", shared_id[:8], "--delete-data", *h)  # the user's own file
            assert code == 1 and "--delete-source" in err and shared.exists(), err
            code, _, err = await peerloom("rm", shared_id[:8], "--delete-source", *h)
            assert code == 0 and not shared.exists(), err
        finally:
            assert daemon.stop() == 0
        code, _, err = await peerloom("ls", *h)  # no daemon any more
        assert code == 1 and "no daemon runs" in err
        code, _, err = await peerloom("daemon", *h, "--share-root", str(tmp_path / "no-such-folder"))
        assert code == 2 and "not a folder" in err and "Traceback" not in err, err


async def test_sigterm_with_an_event_stream_open_stops_cleanly_and_closes_the_stream(tmp_path: Path) -> None:
    """An open web UI tab (its WebSocket) must not hold the shutdown up (aiohttp would wait a minute for it)."""
    daemon = await DaemonProcess(tmp_path / "home", tmp_path / "downloads").start()
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"{daemon.api}/api/v1/events?token={daemon.token}") as ws:
            first = await ws.receive_json(timeout=10)
            assert first["type"] == "snapshot" and first["torrents"] == []
            stopping = asyncio.create_task(asyncio.to_thread(daemon.stop, 15.0))
            while (await ws.receive(timeout=15)).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                                               aiohttp.WSMsgType.CLOSING):
                pass
            assert await stopping == 0
    finally:
        daemon.stop()
