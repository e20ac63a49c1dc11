"""Volunteer nodes in processes of their own for the compute tests: honest ones, and a liar whose sandbox answers
are replaced by a plausible wrong line (the adversary of the voting tests).

As a script: `python tests/support/compute_volunteer.py HOME [--lie] [--cores N]` runs a volunteer node on
127.0.0.1 (DHT, LSD and pub/sub off), prints its secure-layer multiaddr on one line, and runs until SIGTERM.
`VolunteerProcess` starts one and kills it (and its worker processes) by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

LIE = b"1 0.000000e+00 1.000\n"  # the shape of signal_search's answer, and wrong for every input of the tests


class LyingRunner:
    """Runs units for real (so the fuel claimed is plausible) and returns a wrong output."""

    def __init__(self, runner: object) -> None:
        self.runner = runner

    async def run(self, module_hash: str, stdin: bytes, limits: object) -> object:
        result = await self.runner.run(module_hash, stdin, limits)  # type: ignore[attr-defined]
        return dataclasses.replace(result, output=LIE)


async def serve(home: Path, lie: bool, cores: int) -> None:
    from peerloom.apps.compute.runner import ComputeRunner
    from peerloom.apps.compute.service import ComputeService, VolunteerConfig
    from peerloom.node import Node
    from peerloom.settings import Settings

    settings = Settings(dht=False, lsd=False, mdns=False, pubsub=False, trackers=False, compute=False)
    config = VolunteerConfig(cores=cores)
    runner = ComputeRunner(home / "compute" / "blobs", workers=cores) if lie else None
    service = ComputeService(volunteer=config, runner=LyingRunner(runner) if runner else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with Node(home, host="127.0.0.1", settings=settings, services=[service]) as node:
        if runner is not None:
            runner.start()
        print(node.secure_addrs[0], flush=True)
        await stop.wait()
        if runner is not None:
            await runner.close()


class VolunteerProcess:
    """One volunteer process (see the module docstring)."""

    def __init__(self, home: Path, *, lie: bool = False, cores: int = 1) -> None:
        self.home = home
        self.lie = lie
        self.cores = cores
        self.proc: subprocess.Popen[bytes] | None = None
        self.addr = ""

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, __file__, str(self.home), "--cores", str(self.cores), *(["--lie"] if self.lie else [])]
        log = open(self.home.parent / f"{self.home.name}.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        log.close()

    def wait_ready(self, timeout: float = 60.0) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"volunteer {self.home} did not start")
            line = self.proc.stdout.readline()
        self.addr = line.decode().strip()
        return self.addr

    @property
    def peer_id(self) -> str:
        return self.addr.rsplit("/", 1)[-1]

    def kill(self) -> None:
        """SIGKILL the volunteer and its worker processes (its own process group)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM), without waiting: `stop` waits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # a worker left behind
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def tasks(self) -> list[tuple]:
        """The tasks this volunteer recorded (submitter, job, unit, fuel, wall, outcome, at), read from its state."""
        return query(self.home, "SELECT submitter, job, idx, fuel, wall, outcome, at FROM compute_tasks")


def query(home: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows from a node's state database (read while the node may run: it is in WAL mode; only read here)."""
    path = home / "state.sqlite"
    if not path.exists():
        return []  # the node has not started yet
    db = sqlite3.connect(path, timeout=10)  # not read-only: the WAL of a killed node must be readable
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []  # its tables are not made yet
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("home", type=Path)
    parser.add_argument("--lie", action="store_true")
    parser.add_argument("--cores", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(serve(args.home, args.lie, args.cores))


if __name__ == "__main__":
    main()
