"""Services: how the node is put together (DESIGN.md, "Services").

A service serves protocol ids on the secure layer and uses what the node shares through its `NodeContext`. The
node starts each service in order and stops them in reverse; the host routes a stream of one of its protocols to
`handle`, to the peers its `admits` accepts (admission per protocol: identify and ping are always served, and a
refused peer gets multistream-select's `na` while identify keeps listing the protocol). Modelled on iroh's
`Router::builder(endpoint).accept(ALPN, handler)` and `ProtocolHandler::accept/shutdown`.

    class Echo:
        name = "echo"
        protocols = ("/echo/1.0.0",)
        async def start(self, ctx: NodeContext) -> None: ...
        async def handle(self, stream: Stream, protocol: str) -> None: ...
        def admits(self, peer: PeerId, protocol: str) -> bool: return True
        async def stop(self) -> None: ...

    async with Node(home, services=[Echo()]) as node: ...
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from peerloom.identity import Identity, PeerId
from peerloom.net.host import Host
from peerloom.net.stream import Stream
from peerloom.settings import Settings
from peerloom.state import State
from peerloom.workers import WorkerPool

if TYPE_CHECKING:
    from peerloom.dht.driver import Dht
    from peerloom.discovery.lsd_driver import LsdGroups
    from peerloom.discovery.peerstore import PeerStore

T = TypeVar("T")
log = logging.getLogger(__name__)


@runtime_checkable
class Service(Protocol):
    """A part of the node that serves secure-layer protocols (see the module docstring)."""

    name: str
    protocols: tuple[str, ...]  # the secure-layer protocol ids it serves
    # A service may also set `limited_protocols`: those of its protocols it serves over limited (relayed, Circuit
    # Relay v2) connections too; the others are refused there (the node reads it with getattr: optional).

    async def start(self, ctx: NodeContext) -> None:
        """Get ready to serve. If it raises, the node calls `stop` and unwinds everything that started before."""

    async def handle(self, stream: Stream, protocol: str) -> None:
        """Serve one incoming stream of `protocol` from an admitted peer; the stream is reset if this raises."""

    def admits(self, peer: PeerId, protocol: str) -> bool:
        """Whether `peer` may open a stream of `protocol` (asked before the protocol is agreed)."""

    async def stop(self) -> None:
        """Let go of what `start` took; also called after a `start` that failed part way, so it must cope with that."""


class ServiceTasks:
    """The background tasks one service owns: spawned through it, cancelled (and awaited) when the service stops."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        if self._closed:
            coro.close()
            raise RuntimeError(f"the tasks of service {self.owner} are closed")
        task = asyncio.create_task(coro, name=name or f"{self.owner} task")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a task of service %s failed", self.owner, exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel every task and wait until each has finished; spawning afterwards is an error."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True)
class NodeContext:
    """Everything a service may use of the node. Each service gets its own (its own `tasks`)."""

    identity: Identity
    settings: Settings  # the node's settings (one section for now: the engine, DHT, LSD and ports share it)
    home: Path
    host: Host  # the secure layer: dial, open streams, peer events (`host.subscribe`)
    workers: WorkerPool  # threads for disk I/O and hashing
    dht: Dht | None  # the Mainline DHT (None when off)
    lsd: LsdGroups | None  # local service discovery (None when off or without multicast)
    state: State  # the node's state database: each service keeps its own schema in it
    tasks: ServiceTasks  # the service's own background tasks, cancelled when it stops
    peers: PeerStore  # the peer store: addresses, protocols, failures of secure-layer peers

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in one of the node's worker threads."""
        return await self.workers.submit(fn, *args)
