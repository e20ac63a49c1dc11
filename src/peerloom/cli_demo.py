"""`peerloom demo`: a whole swarm on this machine — one seeder and N leechers, each its own process.

The nodes run a small DHT of their own on loopback: every node joins through the seeder's DHT node (never the public
routers), and the leechers get the magnet link alone, with no peer address, so they find the swarm through the DHT.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from peerloom.cli import app, err, fail, guarded, human_size, out, parse_size
from peerloom.cli_transfer import run, transfer_progress


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
    """A peerloom node in a child process, talking JSON status lines on stdout."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.status: dict[str, Any] = {}
        self.first: asyncio.Future[dict[str, Any]] | None = None
        self.reader: asyncio.Task | None = None

    async def start(self) -> None:
        self.first = asyncio.get_running_loop().create_future()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "peerloom", *self.args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if msg.get("event") == "listening" and self.first and not self.first.done():
                self.first.set_result(msg)
            elif msg.get("event") == "status":
                self.status = msg
        if self.first and not self.first.done():
            stderr = await self.proc.stderr.read() if self.proc.stderr else b""
            lines = stderr.decode(errors="replace").strip().splitlines()
            self.first.set_exception(RuntimeError(f"{self.name} exited: {lines[-1] if lines else 'no output'}"))

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()  # by PID: SIGTERM, the node saves its state and exits
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@app.command()
def demo(
    size: Annotated[str, typer.Option("--size", help="Size of the shared file (e.g. 64M, 1G).")] = "256M",
    leechers: Annotated[int, typer.Option("--leechers", help="How many downloading nodes.", min=1, max=16)] = 3,
    version: Annotated[str, typer.Option("--version", help="v1, v2 or hybrid.")] = "hybrid",
    directory: Annotated[Path | None, typer.Option("--dir", help="Work here instead of a temporary dir.")] = None,
) -> None:
    """A swarm on loopback: one seeder and N leechers as separate nodes; verifies every copy."""
    nbytes = guarded(lambda: parse_size(size))
    if nbytes <= 0:
        fail("--size must be positive")
    if version not in ("v1", "v2", "hybrid"):
        fail("--version is one of v1, v2, hybrid", 2)

    async def main(stop: asyncio.Event) -> int:
        with tempfile.TemporaryDirectory(prefix="peerloom-demo-", dir=directory) as tmp:
            return await run_demo(Path(tmp), nbytes, leechers, version, stop)

    code = guarded(lambda: run(main))
    raise typer.Exit(code)


async def run_demo(root: Path, nbytes: int, n: int, version: str, stop: asyncio.Event) -> int:
    data = root / "seed" / "peerloom-demo.bin"
    data.parent.mkdir(parents=True)
    err.print(f"generating {human_size(nbytes)} of random data in {root}", highlight=False)
    expected = await asyncio.to_thread(make_file, data, nbytes)
    ports = [free_port() for _ in range(n + 1)]
    flag = {"v1": "--v1", "v2": "--v2", "hybrid": "--hybrid"}[version]
    seeder = Child("seeder", ["share", str(data), flag, "--port", str(ports[0]), "--listen", "127.0.0.1",
                              "--home", str(root / "home-seeder"), "--status-lines", "--no-public-bootstrap",
                              "--no-lsd"])
    children = [seeder]
    try:
        await seeder.start()
        assert seeder.first is not None
        info = await asyncio.wait_for(seeder.first, 600)
        magnet = info["magnet"]
        out.print(magnet, highlight=False, soft_wrap=True)
        err.print(f"leechers get only the magnet link and find peers through a loopback DHT joined at the seeder's "
                  f"UDP port {info['dht_port']}", highlight=False)
        started = time.monotonic()
        for i in range(1, n + 1):
            child = Child(f"leecher {i}", ["get", magnet, "-o", str(root / f"leecher-{i}"),
                                           "--bootstrap", f"127.0.0.1:{info['dht_port']}", "--no-lsd",
                                           "--port", str(ports[i]), "--listen", "127.0.0.1", "--seed",
                                           "--home", str(root / f"home-{i}"), "--status-lines"])
            children.append(child)
            await child.start()
        finished = await show_swarm(children, stop)
        elapsed = time.monotonic() - started
        if not finished:
            fail("demo interrupted", 130)
        results = []
        for i, child in enumerate(children[1:], start=1):
            copy = root / f"leecher-{i}" / data.name
            ok = copy.exists() and await asyncio.to_thread(sha256_of, copy) == expected
            results.append((child.name, ok, child.status.get("downloaded", 0), child.status.get("first_peer_after")))
        report(results, nbytes, elapsed)
        return 0 if all(ok for _, ok, _, _ in results) else 1
    finally:
        await asyncio.gather(*(c.stop() for c in children))


async def show_swarm(children: list[Child], stop: asyncio.Event) -> bool:
    """Progress bars until every leecher is complete; False when interrupted or a node failed."""
    with transfer_progress() as progress:
        tasks = {c.name: progress.add_task(c.name, total=None, peers=0) for c in children}
        while not stop.is_set():
            done = True
            for c in children:
                st = c.status
                update(progress, tasks[c.name], c.name, st)
                if c.proc is not None and c.proc.returncode is not None:
                    reason = c.status.get("error") or "see its log"
                    err.print(f"{c.name} exited with code {c.proc.returncode}: {reason}", highlight=False)
                    return False
                if c is not children[0] and st.get("progress", 0) < 1.0:
                    done = False
            if done:
                return True
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
        table.add_row(name, "yes" if ok else "[red]NO[/]", human_size(received), found)
    out.print(table)
    total = nbytes * len(results)
    out.print(f"swarm throughput: {human_size(total)} delivered in {elapsed:.1f} s = "
              f"{total / elapsed / 1e6:.0f} MB/s", highlight=False)
