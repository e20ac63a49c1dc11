"""The js-libp2p reference peer (tests/interop/js/peer.mjs), driven from Python tests and benchmarks.

    res = ensure_installed()            # npm ci once; falsy (with .reason) if node/npm are missing
    if not res:
        pytest.skip(res.reason)
    async with JsPeer.listen() as js:    # node peer.mjs listen, stopped by PID on exit
        out = await run_dial(js.addrs[0], ping=3, echo=1 << 20)
        assert out["echo"]["match"]

The JSON lines peer.mjs prints are documented in tests/interop/js/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent.parent / "interop" / "js"
PEER_SCRIPT = JS_DIR / "peer.mjs"
ECHO_PROTOCOL = "/peerloom/echo/1.0.0"
SINK_PROTOCOL = "/peerloom/sink/1.0.0"
INSTALL_TIMEOUT = 300.0
MIN_NODE = (20, 19)  # @noble/* (under @libp2p/crypto) require >= 20.19

_STAMP = ".peerloom-install-stamp"  # inside node_modules: sha256 of the lock it was installed from
_LINE_LIMIT = 1 << 20


@dataclass(frozen=True)
class InstallResult:
    """Truthy when the js peer can run; otherwise `reason` says why (for pytest.skip)."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


class JsPeerError(RuntimeError):
    """peer.mjs failed; `result` holds what it printed (see run_dial)."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result or {}


_installed: InstallResult | None = None


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _node_version(node: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.strip())
    return tuple(int(x) for x in m.groups()) if m else None


def _lock_digest() -> str:
    lock = JS_DIR / "package-lock.json"
    data = lock.read_bytes() if lock.exists() else (JS_DIR / "package.json").read_bytes()
    return hashlib.sha256(data).hexdigest()


def _is_current() -> bool:
    stamp = JS_DIR / "node_modules" / _STAMP
    try:
        return stamp.read_text().strip() == _lock_digest()
    except OSError:
        return False


def ensure_installed(timeout: float = INSTALL_TIMEOUT) -> InstallResult:
    """Install tests/interop/js's packages (`npm ci`, or `npm install` without a lock) unless
    node_modules already matches package-lock.json.

    Returns a falsy InstallResult with the reason when node or npm is missing or too old, or
    when npm fails outside CI; under CI (CI=true) a failing npm raises instead, since the
    interop tests must run there. Safe to call from several processes at once (file lock)."""
    global _installed
    if _installed is not None and (not _installed.ok or _is_current()):
        return _installed
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if path is None)
        _installed = InstallResult(False, f"js-libp2p interop needs Node.js and npm: {missing} not found on PATH")
        return _installed
    version = _node_version(node)
    if version is None or version[:2] < MIN_NODE:
        shown = ".".join(map(str, version)) if version else "unknown"
        _installed = InstallResult(False, f"js-libp2p interop needs Node.js >= 20.19, found {shown}")
        return _installed

    tag = hashlib.sha256(str(JS_DIR).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"peerloom-jslibp2p-{tag}.lock"
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # another process may be installing right now
        try:
            if _is_current():
                _installed = InstallResult(True)
                return _installed
            _installed = _npm_install(npm, timeout)
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    if not _installed.ok and _in_ci():
        raise RuntimeError(_installed.reason)
    return _installed


def _npm_install(npm: str, timeout: float) -> InstallResult:
    has_lock = (JS_DIR / "package-lock.json").exists()
    cmd = [npm, "ci" if has_lock else "install", "--ignore-scripts", "--no-audit", "--no-fund"]
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_loglevel": "warn"}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return InstallResult(False, f"`{' '.join(cmd[:2])}` in {JS_DIR} took longer than {timeout:.0f} s")
    except OSError as exc:
        return InstallResult(False, f"could not run npm: {exc}")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        return InstallResult(False, f"`{' '.join(cmd[:2])}` failed ({proc.returncode}):\n" + "\n".join(tail))
    (JS_DIR / "node_modules" / _STAMP).write_text(_lock_digest() + "\n")
    return InstallResult(True, f"installed in {time.monotonic() - started:.1f} s")


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise JsPeerError("node not found on PATH")
    return node


def _parse_line(line: bytes | str) -> dict[str, Any] | None:
    text = line.decode(errors="replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return {"event": "unparsed", "line": text}
    return obj if isinstance(obj, dict) else {"event": "unparsed", "line": text}


def _stop_pid(proc: asyncio.subprocess.Process) -> None:
    """Signal exactly this process (by PID), never a group or a name."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)


async def reap(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """SIGTERM to this PID, SIGKILL after `grace` seconds; never a group or a name."""
    _stop_pid(proc)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()


@dataclass
class JsPeer:
    """A running `node peer.mjs listen`. Its stdout is read in the background into `events`."""

    peer_id: str
    addrs: list[str]
    agent: str | None
    protocols: list[str]
    process: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _eof: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def addr(self) -> str:
        """The first listen multiaddr, ending in /p2p/<peer_id>."""
        return self.addrs[0]

    @property
    def host_port(self) -> tuple[str, int]:
        m = re.match(r"/ip[46]/([^/]+)/tcp/(\d+)", self.addr)
        if m is None:
            raise ValueError(f"not a TCP multiaddr: {self.addr}")
        return m.group(1), int(m.group(2))

    async def wait_for(
        self, event: str, timeout: float = 10.0, where: Callable[[dict[str, Any]], bool] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """The first logged event named `event` whose fields equal `fields` (and satisfying
        `where`), waiting up to `timeout` seconds for it to appear."""

        def matches(e: dict[str, Any]) -> bool:
            return (
                e.get("event") == event
                and all(e.get(k) == v for k, v in fields.items())
                and (where is None or where(e))
            )

        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            for e in self.events:
                if matches(e):
                    return e
            left = deadline - time.monotonic()
            if left <= 0 or self._eof:
                why = "it exited" if self._eof else f"within {timeout} s"
                raise TimeoutError(f"js peer logged no {event!r} event matching {fields} ({why})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def _pump(self, stdout: asyncio.StreamReader) -> None:
        try:
            while line := await stdout.readline():
                obj = _parse_line(line)
                if obj is not None:
                    self.events.append(obj)
                    self._changed.set()
        finally:
            self._eof = True
            self._changed.set()

    @classmethod
    @contextlib.asynccontextmanager
    async def listen(
        cls,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        key: str | None = None,
        agent: str | None = None,
        startup_timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> AsyncIterator[JsPeer]:
        """Start `node peer.mjs listen`, yield it once it printed its peer id and addresses,
        and stop it (SIGTERM to its PID, then SIGKILL) on exit. `key`: hex protobuf private key."""
        args = ["listen", "--port", str(port), "--host", host]
        if key is not None:
            args += ["--key", key]
        if agent is not None:
            args += ["--agent", agent]
        async with cls.run(PEER_SCRIPT, args, startup_timeout=startup_timeout, env=env) as peer:
            yield peer

    @classmethod
    @contextlib.asynccontextmanager
    async def run(
        cls,
        script: Path,
        script_args: list[str],
        *,
        startup_timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> AsyncIterator[JsPeer]:
        """Start `node SCRIPT ARGS...` (a script of tests/interop/js whose first JSON line has `peer_id` and
        `addrs`), yield it with its later lines pumped into `events`, and stop it by its PID on exit."""
        args = [_node(), str(script), *script_args]
        fd, stderr_name = tempfile.mkstemp(prefix="jslibp2p-listen-", suffix=".log")
        stderr_path = Path(stderr_name)
        proc: asyncio.subprocess.Process | None = None
        pump: asyncio.Task[None] | None = None
        try:
            with os.fdopen(fd, "wb") as stderr_file:
                proc = await asyncio.create_subprocess_exec(
                    *args,
                    cwd=JS_DIR,
                    stdin=asyncio.subprocess.PIPE,  # closing it is a second stop signal
                    stdout=asyncio.subprocess.PIPE,
                    stderr=stderr_file,
                    env={**os.environ, **(env or {})},
                    limit=_LINE_LIMIT,
                )
            assert proc.stdout is not None
            try:
                first = await asyncio.wait_for(proc.stdout.readline(), startup_timeout)
            except TimeoutError:
                raise JsPeerError(f"js peer printed nothing within {startup_timeout} s") from None
            hello = _parse_line(first) if first else None
            if hello is None or "peer_id" not in hello:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 5.0)
                err = stderr_path.read_text(errors="replace")[-2000:]
                raise JsPeerError(f"js peer failed to start: {hello or 'no output'} {err}".strip(), hello)
            peer = cls(
                peer_id=hello["peer_id"],
                addrs=list(hello["addrs"]),
                agent=hello.get("agent"),
                protocols=list(hello.get("protocols", [])),
                process=proc,
            )
            pump = asyncio.create_task(peer._pump(proc.stdout))
            yield peer
        finally:
            if proc is not None:
                if proc.stdin is not None:
                    with contextlib.suppress(Exception):
                        proc.stdin.close()
                await reap(proc)
            if pump is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pump, 5.0)
            with contextlib.suppress(OSError):
                stderr_path.unlink()


async def run_dial(
    multiaddr: str,
    *,
    echo: int | None = None,
    sink: int | None = None,
    ping: int = 0,
    key: str | None = None,
    chunk: int | None = None,
    timeout: float = 300.0,
    check: bool = True,
    extra_args: list[str] | None = None,
) -> dict[str, Any]:
    """Run `node peer.mjs dial MULTIADDR ...` and return its JSON lines keyed by their "event"
    ("identify", "ping", "echo", "sink", "done", or "error"), plus "returncode" and "stderr".

    With check=True (the default) a non-zero exit raises JsPeerError carrying that dict."""
    args = [_node(), str(PEER_SCRIPT), "dial", multiaddr, "--ping", str(ping), "--timeout", str(timeout)]
    if echo is not None:
        args += ["--echo", str(echo)]
    if sink is not None:
        args += ["--sink", str(sink)]
    if key is not None:
        args += ["--key", key]
    if chunk is not None:
        args += ["--chunk", str(chunk)]
    args += extra_args or []
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=JS_DIR,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=_LINE_LIMIT,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout + 15.0)
    except TimeoutError:
        await reap(proc, grace=1.0)
        raise JsPeerError(f"js dial to {multiaddr} did not finish within {timeout + 15.0:.0f} s") from None
    finally:
        if proc.returncode is None:
            await reap(proc, grace=1.0)
    result: dict[str, Any] = {}
    for line in stdout.splitlines():
        obj = _parse_line(line)
        if obj is not None:
            result[str(obj.get("event", "unparsed"))] = obj
    result["returncode"] = proc.returncode
    result["stderr"] = stderr.decode(errors="replace")[-4000:]
    if check and proc.returncode != 0:
        err = result.get("error", {})
        raise JsPeerError(
            f"js dial to {multiaddr} failed ({proc.returncode}): {err.get('code')} at {err.get('stage')}: "
            f"{err.get('error')}\n{result['stderr'][-1000:]}".rstrip(),
            result,
        )
    return result


async def keygen() -> tuple[str, str]:
    """A fresh Ed25519 key as (hex of its libp2p protobuf encoding, its peer id)."""
    proc = await asyncio.create_subprocess_exec(
        _node(),
        str(PEER_SCRIPT),
        "keygen",
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60.0)
    obj = _parse_line(stdout.splitlines()[0]) if stdout.strip() else None
    if proc.returncode != 0 or obj is None or "key" not in obj:
        out = (stdout + stderr).decode(errors="replace")
        raise JsPeerError(f"peer.mjs keygen failed: {out}")
    return obj["key"], obj["peer_id"]
