"""A bcoin 1.0.2 regtest full node (tests/interop/js_bcoin/regtest_node.mjs), driven from Python tests.

    res = ensure_installed()                 # npm ci once; falsy (with .reason) if node/npm are missing
    if not res:
        pytest.skip(res.reason)
    async with BcoinNode.start(blocks=10) as node:   # in memory, on 127.0.0.1:node.port, stopped by PID
        ... node.height, node.tip_hash, await node.wait_for("peer")

Under CI (CI=true) a failing install raises instead of skipping, as for the js-libp2p peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.jslibp2p import InstallResult, reap

JS_DIR = Path(__file__).resolve().parent.parent / "interop" / "js_bcoin"
SCRIPT = JS_DIR / "regtest_node.mjs"
INSTALL_TIMEOUT = 300.0
_STAMP = ".peerloom-install-stamp"

EVENT_LINE_LIMIT = 64 << 20  # a `utxos` event holds the whole UTXO set on one line

_installed: InstallResult | None = None


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _lock_digest() -> str:
    return hashlib.sha256((JS_DIR / "package-lock.json").read_bytes()).hexdigest()


def _is_current() -> bool:
    try:
        return (JS_DIR / "node_modules" / _STAMP).read_text().strip() == _lock_digest()
    except OSError:
        return False


def ensure_installed() -> InstallResult:
    """`npm ci` tests/interop/js_bcoin unless node_modules matches its lock; falsy with the reason when node or
    npm is missing or the install fails (raising instead under CI)."""
    global _installed
    if _installed is not None:
        return _installed
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        _installed = InstallResult(False, f"bcoin interop needs Node.js and npm: {missing} not found on PATH")
    else:
        tag = hashlib.sha256(str(JS_DIR).encode()).hexdigest()[:12]
        lock_path = Path(tempfile.gettempdir()) / f"peerloom-bcoin-{tag}.lock"
        with open(lock_path, "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # another test process may be installing right now
            try:
                _installed = InstallResult(True) if _is_current() else _npm_ci(npm)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
    if not _installed.ok and _in_ci():
        raise RuntimeError(_installed.reason)
    return _installed


def _npm_ci(npm: str) -> InstallResult:
    # Install scripts must run: bcoin loads native addons (mrmr, its `loady`-loaded helpers) built by node-gyp.
    cmd = [npm, "ci", "--no-audit", "--no-fund"]
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_loglevel": "warn"}
    try:
        proc = subprocess.run(cmd, cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return InstallResult(False, f"`npm ci` in {JS_DIR} failed: {exc}")
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return InstallResult(False, f"`npm ci` in {JS_DIR} failed ({proc.returncode}):\n{tail}")
    (JS_DIR / "node_modules" / _STAMP).write_text(_lock_digest() + "\n")
    return InstallResult(True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BcoinNode:
    """A running regtest node; `events` collects the JSON lines it prints after `ready`."""

    port: int
    height: int
    tip_hash: str
    process: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, blocks: int = 0, startup_timeout: float = 60.0) -> AsyncIterator[BcoinNode]:
        """Start the node on a free loopback port, mine `blocks` blocks, and stop it (by PID) on exit."""
        port = free_port()
        fd, err_name = tempfile.mkstemp(prefix="bcoin-", suffix=".log")
        proc: asyncio.subprocess.Process | None = None
        try:
            with os.fdopen(fd, "wb") as err_file:
                proc = await asyncio.create_subprocess_exec(
                    shutil.which("node") or "node", str(SCRIPT), str(port), str(blocks), cwd=JS_DIR,
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err_file,
                    limit=EVENT_LINE_LIMIT,
                )
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), startup_timeout)
            ready = json.loads(line) if line.strip() else {}
            if ready.get("event") != "ready":
                raise RuntimeError(f"bcoin did not start: {ready or 'no output'} {Path(err_name).read_text()[-2000:]}")
            node = cls(port, int(ready["height"]), str(ready["hash"]), proc)
            pump = asyncio.create_task(node._pump(proc.stdout))
            try:
                yield node
            finally:
                pump.cancel()
        finally:
            if proc is not None:
                if proc.stdin is not None:
                    with contextlib.suppress(Exception):
                        proc.stdin.close()
                await reap(proc)
            with contextlib.suppress(OSError):
                Path(err_name).unlink()

    async def _pump(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            with contextlib.suppress(json.JSONDecodeError):
                self.events.append(json.loads(line))

    async def mine(self, count: int, timeout: float = 30.0) -> dict[str, Any]:
        """Have the node mine `count` more blocks; its `mined` event. `height` and `tip_hash` follow."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"mine {count}\n".encode())
        await self.process.stdin.drain()
        event = await self.wait_for("mined", timeout, height=self.height + count)
        self.height, self.tip_hash = int(event["height"]), str(event["hash"])
        return event

    async def mine_to(self, count: int, script: bytes, timeout: float = 60.0) -> dict[str, Any]:
        """Mine `count` blocks whose coinbases pay `script` (an output script bcoin has an address type for)."""
        return await self._command(f"mineto {count} {script.hex()}", "mined", timeout, height=self.height + count)

    async def mempool_txids(self, timeout: float = 10.0) -> set[str]:
        """The txids (display order) in bcoin's mempool."""
        return set((await self._command("mempool", "mempool", timeout))["txids"])

    async def mine_with_transactions(self, blocks: int, per_block: int, timeout: float = 600.0) -> dict[str, Any]:
        """Mine `blocks` blocks, each after up to `per_block` new transactions of every script type bcoin makes."""
        return await self._command(f"txblocks {blocks} {per_block}", "mined", timeout, height=self.height + blocks)

    async def utxos(self, timeout: float = 30.0) -> set[tuple[str, int, int, str, int, bool]]:
        """bcoin's UTXO set, read from its chain database: (txid, index, value, script hex, height, coinbase)."""
        event = await self._command("utxos", "utxos", timeout)
        return {(c[0], c[1], c[2], c[3], c[4], c[5]) for c in event["coins"]}

    async def send_transaction(self, timeout: float = 30.0) -> str:
        """Make a transaction, add it to bcoin's mempool (it announces it to its peers); its txid."""
        event = await self._command("send", "sent", timeout)
        return str(event["txid"])

    async def current_height(self, timeout: float = 30.0) -> int:
        """The node's chain height now (also updates `height` and `tip_hash`)."""
        return int((await self._command("mine 0", "mined", timeout))["height"])

    async def add_peer(self, port: int) -> None:
        await self._command(f"addpeer {port}", "addpeer", 10.0, port=port)

    async def drop_peers(self) -> None:
        await self._command("droppeers", "droppeers", 10.0)

    async def _command(self, line: str, event: str, timeout: float, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        seen = len(self.events)
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events[seen:]:
                if e.get("event") == "error":
                    raise RuntimeError(f"bcoin failed {line!r}: {e.get('message')}")
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items()):
                    if event == "mined":
                        self.height, self.tip_hash = int(e["height"]), str(e["hash"])
                    return e
            await asyncio.sleep(0.05)
        raise TimeoutError(f"bcoin printed no {event!r} event after {line!r} in {timeout} s")

    async def wait_for(self, event: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """The first printed event named `event` whose fields equal `fields`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items()):
                    return e
            await asyncio.sleep(0.05)
        raise TimeoutError(f"bcoin printed no {event!r} event matching {fields} in {timeout} s")
