"""Drive js-libp2p GossipSub peers (tests/interop/js/gossip.mjs) from Python tests.

    res = ensure_installed()                  # from support.jslibp2p: npm ci on first use
    if not res:
        pytest.skip(res.reason)
    async with JsGossipPeer.start(trace=True) as js:        # stopped by PID on exit
        await js.connect(other_multiaddr)
        await js.subscribe("t")
        await js.publish("t", b"hello")
        msg = (await js.wait_messages(1, topic="t"))[0]

Each peer is one `node gossip.mjs` process: commands go to its stdin as JSON lines, its stdout
JSON lines (documented in tests/interop/js/README.md) are read in the background into `events`.
With trace=True the peer also reports every RPC its router receives and sends (`rpc_in`,
`rpc_out`), with js's own message ids: that is the evidence the interop tests check
IHAVE/IWANT/IDONTWANT traffic against.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.jslibp2p import JS_DIR, JsPeerError, reap

GOSSIP_SCRIPT = JS_DIR / "gossip.mjs"
_LINE_LIMIT = 1 << 22  # a trace line lists message ids; a message line carries the data in hex


class JsGossipError(JsPeerError):
    """gossip.mjs failed to start or answered a command with ok=false."""


@dataclass(frozen=True)
class JsMessage:
    """A message js delivered to its application (`gossipsub:message`)."""

    topic: str
    from_peer: str
    seqno: int
    data: bytes
    msg_id: bytes  # js's message id for it
    received_from: str  # the peer js got it from (propagation source)

    @classmethod
    def from_event(cls, e: dict[str, Any]) -> JsMessage:
        return cls(
            topic=e["topic"],
            from_peer=e["from"],
            seqno=int(e["seqno"], 16),
            data=bytes.fromhex(e["data"]),
            msg_id=bytes.fromhex(e["msg_id"]),
            received_from=e["received_from"],
        )


def _parse_line(line: bytes) -> dict[str, Any] | None:
    text = line.decode(errors="replace").strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return {"event": "unparsed", "line": text}
    return obj if isinstance(obj, dict) else {"event": "unparsed", "line": text}


@dataclass
class JsGossipPeer:
    """A running gossip.mjs; see the module docstring."""

    peer_id: str
    addrs: list[str]
    protocols: list[str]
    process: asyncio.subprocess.Process
    stderr_path: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _replies: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _eof: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def addr(self) -> str:
        """The first listen multiaddr, ending in /p2p/<peer_id>."""
        return self.addrs[0]

    # ----------------------------------------------------------------------- lifecycle

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        *,
        key: str | None = None,
        trace: bool = False,
        ignore_prefix: bytes | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 30.0,
    ) -> AsyncIterator[JsGossipPeer]:
        """Start gossip.mjs on 127.0.0.1 (a free port), yield it once it is listening, stop it
        by PID on exit. `ignore_prefix`: js IGNOREs (does not deliver or forward) data
        starting with it. `env`: e.g. {"DEBUG": "libp2p:gossipsub*"} (stderr, see stderr())."""
        args = [str(GOSSIP_SCRIPT), "--host", "127.0.0.1", "--port", "0"]
        if key is not None:
            args += ["--key", key]
        if trace:
            args.append("--trace")
        if ignore_prefix is not None:
            args += ["--ignore-prefix", ignore_prefix.hex()]
        fd, name = tempfile.mkstemp(prefix="jsgossip-", suffix=".log")
        stderr_path = Path(name)
        proc: asyncio.subprocess.Process | None = None
        pump: asyncio.Task[None] | None = None
        try:
            with os.fdopen(fd, "wb") as stderr_file:
                proc = await asyncio.create_subprocess_exec(
                    "node",
                    *args,
                    cwd=JS_DIR,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=stderr_file,
                    env={**os.environ, **(env or {})},
                    limit=_LINE_LIMIT,
                )
            assert proc.stdout is not None
            try:
                first = await asyncio.wait_for(proc.stdout.readline(), startup_timeout)
            except TimeoutError:
                raise JsGossipError(f"gossip.mjs printed nothing within {startup_timeout} s") from None
            hello = _parse_line(first) if first else None
            if hello is None or hello.get("event") != "ready":
                err = stderr_path.read_text(errors="replace")[-2000:]
                raise JsGossipError(f"gossip.mjs failed to start: {hello or 'no output'} {err}".strip(), hello)
            peer = cls(
                peer_id=hello["peer_id"],
                addrs=list(hello["addrs"]),
                protocols=list(hello["protocols"]),
                process=proc,
                stderr_path=stderr_path,
            )
            pump = asyncio.create_task(peer._pump(proc.stdout))
            yield peer
        finally:
            if proc is not None:
                if proc.stdin is not None:
                    with contextlib.suppress(Exception):
                        proc.stdin.close()  # its own stop signal; SIGTERM follows
                await reap(proc)
            if pump is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pump, 5.0)
            with contextlib.suppress(OSError):
                stderr_path.unlink()

    def stderr(self) -> str:
        """What the process wrote to stderr so far (libp2p debug logs when DEBUG is set)."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    async def _pump(self, stdout: asyncio.StreamReader) -> None:
        try:
            while line := await stdout.readline():
                obj = _parse_line(line)
                if obj is None:
                    continue
                if obj.get("event") == "reply" and isinstance(obj.get("id"), int):
                    fut = self._replies.pop(obj["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(obj)
                        continue
                self.events.append(obj)
                self._changed.set()
        finally:
            self._eof = True
            self._changed.set()
            for fut in self._replies.values():
                if not fut.done():
                    fut.set_exception(JsGossipError(f"js gossip peer {self.peer_id} exited"))

    # ------------------------------------------------------------------------ commands

    async def command(self, cmd: str, *, timeout: float = 15.0, **args: Any) -> dict[str, Any]:
        """Send one command, return its reply; raise JsGossipError when js reports a failure."""
        if self._eof or self.process.stdin is None:
            raise JsGossipError(f"js gossip peer {self.peer_id} is not running")
        cid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[cid] = fut
        self.process.stdin.write(json.dumps({"cmd": cmd, "id": cid, **args}).encode() + b"\n")
        await self.process.stdin.drain()
        try:
            reply = await asyncio.wait_for(fut, timeout)
        finally:
            self._replies.pop(cid, None)
        if not reply.get("ok"):
            raise JsGossipError(f"js {cmd} {args} failed: {reply.get('error')}", reply)
        return reply

    async def connect(self, addr: str) -> str:
        """Dial a multiaddr (with /p2p/ or not); returns the remote PeerId."""
        return str((await self.command("connect", addr=addr))["peer"])

    async def subscribe(self, topic: str) -> None:
        await self.command("subscribe", topic=topic)

    async def unsubscribe(self, topic: str) -> None:
        await self.command("unsubscribe", topic=topic)

    async def publish(self, topic: str, data: bytes) -> list[str]:
        """Publish; returns the peers js sent it to."""
        return list((await self.command("publish", topic=topic, data=data.hex()))["recipients"])

    async def view(self, topic: str | None = None) -> dict[str, list[str]]:
        """js's view: `peers` (gossipsub peers), `connections`, `subscribers` and `mesh` of topic."""
        reply = await self.command("peers", topic=topic)
        return {k: list(reply[k]) for k in ("peers", "connections", "subscribers", "mesh")}

    async def mesh(self, topic: str) -> list[str]:
        return (await self.view(topic))["mesh"]

    async def score(self, peer: str) -> float:
        """js's score of `peer` (gossipsub.getScore)."""
        return float((await self.command("score", peer=peer))["score"])

    async def inject(self, peer: str, message: dict[str, Any]) -> None:
        """Send one raw message to `peer` as it is given: a dict of hex fields `from`, `data`,
        `seqno`, `signature`, `key` and `topic` (a harness's forged or replayed message)."""
        await self.command("inject", peer=peer, message=message)

    # ------------------------------------------------------------------------- reports

    def messages(self, topic: str | None = None) -> list[JsMessage]:
        """Messages delivered to js's application so far, in order."""
        return [
            JsMessage.from_event(e)
            for e in self.events
            if e.get("event") == "message" and (topic is None or e.get("topic") == topic)
        ]

    def rpcs(self, direction: str, peer: str | None = None) -> list[dict[str, Any]]:
        """Traced RPCs (needs trace=True): direction "in" or "out", optionally with one peer."""
        name = f"rpc_{direction}"
        return [e for e in self.events if e.get("event") == name and (peer is None or e.get("peer") == peer)]

    async def wait_for(
        self, event: str, timeout: float = 10.0, where: Callable[[dict[str, Any]], bool] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """The first reported event named `event` whose fields equal `fields` (and satisfying
        `where`), waiting up to `timeout` seconds."""

        def matches(e: dict[str, Any]) -> bool:
            return (
                e.get("event") == event
                and all(e.get(k) == v for k, v in fields.items())
                and (where is None or where(e))
            )

        return (await self._wait(lambda: [e for e in self.events if matches(e)][:1], timeout, f"{event} {fields}"))[0]

    async def wait_messages(self, count: int, *, topic: str | None = None, timeout: float = 10.0) -> list[JsMessage]:
        """Wait until at least `count` messages (of `topic`) were delivered; return them all."""
        return await self._wait(
            lambda: m if len(m := self.messages(topic)) >= count else [], timeout, f"{count} messages on {topic}"
        )

    async def _wait(self, found: Callable[[], list[Any]], timeout: float, what: str) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            if result := found():
                return result
            left = deadline - time.monotonic()
            if left <= 0 or self._eof:
                why = "it exited" if self._eof else f"within {timeout} s"
                raise TimeoutError(f"js gossip peer {self.peer_id}: no {what} ({why})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)


async def wait_until(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll an async or sync `check` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not reached within {timeout} s: {what or check}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def js_gossip_peers(
    count: int | None = None, *, each: list[dict[str, Any]] | None = None, **common: Any
) -> AsyncIterator[list[JsGossipPeer]]:
    """Start js gossip peers at once (a node takes a second or two to start): `count` alike with the `common`
    options of JsGossipPeer.start, or one per dict of `each` (merged over `common`). All stopped by PID on exit."""
    options = [{**common, **o} for o in each] if each is not None else [common] * (count or 0)
    async with contextlib.AsyncExitStack() as stack:
        # a TaskGroup cancels the other starts if one fails; each start stops its own process
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(stack.enter_async_context(JsGossipPeer.start(**o))) for o in options]
        yield [t.result() for t in tasks]
