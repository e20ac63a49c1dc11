"""`peerloom demo`: a whole swarm on this machine — one seeder and N leechers, each its own process.

The nodes run a small DHT of their own on loopback: every node joins through the seeder's DHT node (never the public
routers), and the leechers get the magnet link alone, with no peer address, so they find the swarm through the DHT.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from peerloom.cli.common import UserError, err, fail, guarded, human_size, out, parse_size, printable, transfer_progress
from peerloom.cli.running import run

LOG_LINE = 4096  # bytes kept of a child's stderr line
STALL_TIMEOUT = 120.0  # seconds without progress before a leecher counts as failed (a piece takes well under 1 s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_file(path: Path, size: int) -> str:
    """A file of random bytes; returns its SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 << 20))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Child:
    """A peerloom node in a child process: its JSON status lines read from stdout, its stderr drained all along (a
    full pipe would block it for good) with the last lines kept to say why it failed."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.status: dict[str, Any] = {}
        self.listening: dict[str, Any] | None = None
        self.heard = asyncio.Event()  # its "listening" line came, or its output ended
        self.last_lines: deque[str] = deque(maxlen=3)
        self.moved_at = 0.0  # when its state or byte count last changed (time.monotonic())
        self.readers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "peerloom", *self.args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        self.moved_at = time.monotonic()
        self.readers = [asyncio.create_task(self._read_status()), asyncio.create_task(self._read_log())]

    async def _read_status(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if msg.get("event") == "listening":
                self.listening = msg
                self.heard.set()
            elif msg.get("event") == "status":
                before = self.status
                if (msg.get("state"), msg.get("have_bytes")) != (before.get("state"), before.get("have_bytes")):
                    self.moved_at = time.monotonic()
                self.status = msg
        self.heard.set()

    async def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        # in chunks, not lines: a line longer than the reader's 64 KiB limit would end the loop and stop the draining
        partial = b""
        while chunk := await self.proc.stderr.read(1 << 16):
            *lines, partial = (partial + chunk).split(b"\n")
            partial = partial[:LOG_LINE]  # a line is known by its start
            self._keep(lines)
        self._keep([partial])

    def _keep(self, lines: list[bytes]) -> None:
        for raw in lines:
            line = raw[:LOG_LINE].decode(errors="replace").strip()
            if line:
                self.last_lines.append(line.removeprefix("error: "))

    async def wait_listening(self, timeout: float) -> dict[str, Any]:
        """Its "listening" line; a UserError saying why when it exits or stays silent first."""
        try:
            await asyncio.wait_for(self.heard.wait(), timeout)
        except TimeoutError:
            raise UserError(f"{self.name} did not start listening in {timeout:.0f} s") from None
        if self.listening is None:
            assert self.proc is not None
            await self.proc.wait()
            raise UserError(await self.failure() or f"{self.name} stopped")
        return self.listening

    @property
    def complete(self) -> bool:
        """A leecher that has verified every byte (it seeds them from then on)."""
        return self.status.get("state") == "seeding" and self.status.get("progress", 0) >= 1.0

    def stalled(self, limit: float) -> str | None:
        """Why this leecher counts as stuck: its state and byte count have not changed for `limit` seconds."""
        if self.complete or time.monotonic() - self.moved_at <= limit:
            return None
        st = self.status
        return (f"{self.name} made no progress for {limit:.0f} s ({st.get('state', 'no status yet')}, "
                f"{human_size(st.get('have_bytes', 0))} of {human_size(st.get('wanted_bytes', 0))})")

    async def failure(self) -> str | None:
        """Why this node failed, or None while it runs well."""
        assert self.proc is not None
        if self.status.get("error"):
            return f"{self.name} failed: {self.status['error']}"
        code = self.proc.returncode
        if code is None:
            return None
        await asyncio.wait(self.readers, timeout=5)  # its last words
        if code < 0:
            why = f"killed by {signal.Signals(-code).name}"
        else:
            why = self.last_lines[-1] if self.last_lines else "no message"
            why = f"exited with code {code}: {why}"
        return f"{self.name} {why}"

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()  # by PID: SIGTERM, the node saves its state and exits
            self.proc.send_signal(signal.SIGCONT)  # a stopped node would keep the SIGTERM pending for ever
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


def demo(
    size: Annotated[str, typer.Option("--size", help="Size of the shared file (e.g. 64M, 1G).")] = "256M",
    leechers: Annotated[int, typer.Option("--leechers", help="How many downloading nodes.", min=1, max=16)] = 3,
    version: Annotated[str, typer.Option("--version", help="v1, v2 or hybrid.")] = "hybrid",
    directory: Annotated[Path | None, typer.Option("--dir", help="Work here instead of a temporary dir.")] = None,
    stall_timeout: Annotated[
        float, typer.Option("--stall-timeout", help="Give up when a leecher makes no progress for this many seconds.",
                            min=1)
    ] = STALL_TIMEOUT,
) -> None:
    """A swarm on loopback: one seeder and N leechers as separate nodes; verifies every copy. Ends with an error
    naming the node when one fails or stops making progress."""
    nbytes = guarded(lambda: parse_size(size))
    if nbytes <= 0:
        fail("--size must be positive")
    if version not in ("v1", "v2", "hybrid"):
        fail("--version is one of v1, v2, hybrid", 2)

    async def main(stop: asyncio.Event) -> int:
        with tempfile.TemporaryDirectory(prefix="peerloom-demo-", dir=directory) as tmp:
            return await run_demo(Path(tmp), nbytes, leechers, version, stop, stall_timeout)

    code = guarded(lambda: run(main))
    raise typer.Exit(code)


async def run_demo(root: Path, nbytes: int, n: int, version: str, stop: asyncio.Event, stall_timeout: float) -> int:
    data = root / "seed" / "peerloom-demo.bin"
    data.parent.mkdir(parents=True)
    err.print(f"generating {human_size(nbytes)} of random data in {printable(root)}")
    expected = await asyncio.to_thread(make_file, data, nbytes)
    ports = [free_port() for _ in range(n + 1)]
    flag = {"v1": "--v1", "v2": "--v2", "hybrid": "--hybrid"}[version]
    seeder = Child("seeder", ["share", str(data), flag, "--port", str(ports[0]), "--listen", "127.0.0.1",
                              "--home", str(root / "home-seeder"), "--status-lines", "--no-public-bootstrap",
                              "--no-lsd"])
    children = [seeder]
    try:
        await seeder.start()
        info = await seeder.wait_listening(600)
        magnet = info["magnet"]
        out.print(magnet)
        err.print(f"leechers get only the magnet link and find peers through a loopback DHT joined at the seeder's "
                  f"UDP port {info['dht_port']}")
        started = time.monotonic()
        for i in range(1, n + 1):
            child = Child(f"leecher {i}", ["get", magnet, "-o", str(root / f"leecher-{i}"),
                                           "--bootstrap", f"127.0.0.1:{info['dht_port']}", "--no-lsd",
                                           "--port", str(ports[i]), "--listen", "127.0.0.1", "--seed",
                                           "--home", str(root / f"home-{i}"), "--status-lines"])
            children.append(child)
            await child.start()
        if not await show_swarm(seeder, children[1:], stop, stall_timeout):
            fail("demo interrupted", 130)
        elapsed = time.monotonic() - started
        results = []
        for i, child in enumerate(children[1:], start=1):
            copy = root / f"leecher-{i}" / data.name
            ok = copy.exists() and await asyncio.to_thread(sha256_of, copy) == expected
            results.append((child.name, ok, child.status.get("downloaded", 0), child.status.get("first_peer_after")))
        report(results, nbytes, elapsed)
        return 0 if all(ok for _, ok, _, _ in results) else 1
    finally:
        await asyncio.gather(*(c.stop() for c in children))


async def show_swarm(seeder: Child, leechers: list[Child], stop: asyncio.Event, stall_timeout: float) -> bool:
    """Progress bars until every leecher is complete (True), or until interrupted (False); a UserError naming the
    node when one fails or a leecher makes no progress for `stall_timeout` seconds (stuck on a full disk, say)."""
    nodes = (seeder, *leechers)
    with transfer_progress() as progress:
        tasks = {c.name: progress.add_task(c.name, total=None, peers=0) for c in nodes}
        while not stop.is_set():
            for c in nodes:
                update(progress, tasks[c.name], c.name, c.status)
                problem = await c.failure()
                if problem is not None:
                    raise UserError(problem)
            if all(c.complete for c in leechers):
                return True
            stuck = next(filter(None, (c.stalled(stall_timeout) for c in leechers)), None)
            if stuck is not None:
                raise UserError(stuck)
            await asyncio.sleep(0.25)
    return False


def update(progress: Progress, task: Any, name: str, st: dict[str, Any]) -> None:
    if not st:
        return
    total = st.get("wanted_bytes") or None
    progress.update(task, description=f"{name} ({st['state']})", total=total,
                    completed=st.get("have_bytes", 0), peers=st.get("peers", 0))


def report(results: list[tuple[str, bool, int, float | None]], nbytes: int, elapsed: float) -> None:
    table = Table(title="swarm result")
    table.add_column("node")
    table.add_column("copy verified (SHA-256)")
    table.add_column("received")
    table.add_column("first peer found through the DHT after")
    for name, ok, received, discovery in results:
        found = f"{discovery:.2f} s" if discovery is not None else "-"
        table.add_row(name, "yes" if ok else Text("NO", style="red"), human_size(received), found)
    out.print(table)
    total = nbytes * len(results)
    out.print(f"swarm throughput: {human_size(total)} delivered in {elapsed:.1f} s = {human_size(total / elapsed)}/s")


def register(app: typer.Typer) -> None:
    app.command()(demo)
