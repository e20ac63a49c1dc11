"""A `peerloom daemon` subprocess on loopback for tests, and calls to its API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp


class DaemonProcess:
    """`peerloom daemon` with DHT and LSD off, API and ports on loopback, stopped by its PID."""

    def __init__(self, home: Path, save_dir: Path, *extra: str) -> None:
        self.home = home
        self.save_dir = save_dir
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = ""
        self.token = ""
        self.runtime: dict[str, Any] = {}
        self.log = home.parent / f"{home.name}-daemon.log"

    async def start(self, timeout: float = 30.0) -> DaemonProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "peerloom", "daemon", "--home", str(self.home), "--api", "127.0.0.1:0",
                 "--port", "0", "--listen", "127.0.0.1", "--no-dht", "--no-lsd", "--save-dir", str(self.save_dir),
                 *self.extra],
                stdout=log, stderr=log,
            )
        deadline = time.monotonic() + timeout
        runtime_file = self.home / "daemon.json"
        while True:  # a file left by a SIGKILLed daemon names another pid: wait for ours
            with contextlib.suppress(OSError, ValueError):
                runtime = json.loads(runtime_file.read_text())
                if runtime.get("pid") == self.proc.pid:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the daemon did not start: {self.log.read_text()[-2000:]}")
            await asyncio.sleep(0.1)
        self.runtime = runtime
        self.api = runtime["api"]
        self.token = (self.home / "api.token").read_text().strip()
        return self

    async def call(self, method: str, path: str, body: Any = None, *, data: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.request(
            method, self.api + path, json=body, data=data, headers={"X-Peerloom-Token": self.token},
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text and response.content_type == "application/json" else text

    async def ok(self, method: str, path: str, body: Any = None, *, data: Any = None) -> Any:
        status, answer = await self.call(method, path, body, data=data)
        assert status < 300, (status, answer)
        return answer

    async def torrent(self, torrent_id: str) -> dict[str, Any]:
        return (await self.ok("GET", f"/api/v1/torrents/{torrent_id}"))["torrent"]

    async def wait_for(self, torrent_id: str, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
        """Poll the torrent's summary until `predicate(summary)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            summary = await self.torrent(torrent_id)
            if predicate(summary):
                return summary
            assert summary["error"] is None, summary["error"]
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; last summary: {summary}")
            await asyncio.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no chance to save anything."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the clean exit (SIGKILL if it hangs); the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"the daemon did not stop on SIGTERM: {self.log.read_text()[-2000:]}") from None
