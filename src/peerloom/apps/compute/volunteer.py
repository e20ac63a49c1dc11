"""The volunteer's side: run other nodes' work units within the limits the user opted in with.

A volunteer answers capacity queries (its task slots, memory per task, CPU seconds left today, and whether it takes
the asking submitter's work), and runs a `RunUnit` only if it has a free slot, budget left today, enough memory on
offer and the submitter is allowed. The module and the input are fetched from the submitter when they are not in the
blob store (or, for a small input, taken inline) and verified by SHA-256 before use; the unit runs in the runner's
worker processes (runner.py), never in the node's own. Each task is recorded with its fuel and time, and the credit
submitters grant later is recorded too (store.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.host import Host

from .blobs import BlobError, BlobStore, blob_hash
from .link import request
from .sandbox import Limits, SandboxError, UnitResult
from .store import ComputeStore
from .wire import MAX_FRAME, Blob, Capacity, Credit, GetBlob, Message, Refused, RunUnit, UnitDone, UnitFailed

log = logging.getLogger(__name__)
T = TypeVar("T")
FETCH_TIMEOUT = 60.0  # seconds to fetch one blob from a submitter
MAX_OUTPUT = 16 * 1024 * 1024  # the largest output cap a unit may ask for (the answer is one frame in memory)


class UnitRunner(Protocol):
    """What runs a unit: runner.ComputeRunner (worker processes)."""

    async def run(self, module_hash: str, stdin: bytes, limits: Limits) -> UnitResult: ...


@dataclass(frozen=True)
class VolunteerConfig:
    """What the user opted in to give: `cores` task slots (0: one per core), `memory_bytes` per task, `cpu_hours`
    a day, and the submitters whose work is taken (None: anyone)."""

    cores: int = 0
    memory_bytes: int = 256 * 1024 * 1024
    cpu_hours: float = 24.0
    submitters: frozenset[PeerId] | None = None

    @property
    def slots(self) -> int:
        return self.cores or os.cpu_count() or 1


class VolunteerRole:
    """See the module docstring. `run_blocking` runs store and blob-file work off the event loop."""

    def __init__(self, config: VolunteerConfig, host: Host, blobs: BlobStore, store: ComputeStore,
                 runner: UnitRunner, run_blocking: Callable[..., Awaitable[Any]]) -> None:
        self.config = config
        self.host = host
        self.blobs = blobs
        self.store = store
        self.runner = runner
        self.run_blocking = run_blocking
        self.active = 0
        self.ran = 0
        self._fetching: dict[str, asyncio.Future[bytes]] = {}
        self._day = ""
        self._used = 0.0  # CPU seconds used on `_day` (read from the store once a day, then kept here)
        self._tasks: list[tuple[str, bytes, int, int, float, str, float, str]] = []  # not yet written

    def accepts(self, peer: PeerId) -> bool:
        return self.config.submitters is None or peer in self.config.submitters

    def seconds_left(self) -> float:
        today = _today()
        if today != self._day:
            self._day, self._used = today, self.store.used_today(today)
        return max(0.0, self.config.cpu_hours * 3600 - self._used)

    def capacity(self, peer: PeerId) -> Capacity:
        return Capacity(self.config.slots, self.config.memory_bytes, int(self.seconds_left()), self.accepts(peer))

    def credit(self, peer: PeerId, credits: tuple[Credit, ...]) -> None:
        if credits:
            self.store.credit(str(peer), [(c.job, c.unit, c.fuel) for c in credits])

    async def run_unit(self, peer: PeerId, msg: RunUnit) -> Message:
        """Run one replica for `peer`; the answer to send back."""
        self.credit(peer, msg.credits)
        if not self.accepts(peer):
            return Refused("this volunteer does not take work from you")
        if self.active >= self.config.slots:
            return Refused("busy: every task slot is taken")
        if msg.memory_bytes > self.config.memory_bytes:
            return Refused(f"the unit asks for {msg.memory_bytes} bytes of memory; {self.config.memory_bytes} "
                           "are offered")
        if msg.max_output > MAX_OUTPUT:
            return Refused(f"the unit asks for an output cap over {MAX_OUTPUT} bytes")
        if self.seconds_left() <= 0:
            return Refused("today's CPU budget is used up")
        try:
            limits = Limits(fuel=msg.fuel, memory_bytes=msg.memory_bytes, wall_seconds=msg.wall_ms / 1000,
                            max_output=msg.max_output)
        except ValueError as exc:
            return Refused(f"bad limits: {exc}")
        self.active += 1
        try:
            return await self._run(peer, msg, limits)
        finally:
            self.active -= 1

    async def _run(self, peer: PeerId, msg: RunUnit, limits: Limits) -> Message:
        module, input_name = msg.module_hash.hex(), msg.input_hash.hex()
        try:
            if not self.blobs.has(module):
                await self._fetch(peer, module)
            if msg.input is not None:
                if blob_hash(msg.input) != input_name:
                    return Refused("the inline input does not match its hash")
                stdin = msg.input
            else:
                stdin = await self._fetch(peer, input_name)
        except (BlobError, OSError, TimeoutError) as exc:
            return Refused(f"cannot fetch the unit's blobs: {exc or type(exc).__name__}")
        began = time.monotonic()
        try:
            result = await self.runner.run(module, stdin, limits)
            answer: Message = UnitDone(result.output, result.fuel, int(result.wall_seconds * 1000))
            outcome, fuel = "done", result.fuel
        except (SandboxError, BlobError) as exc:
            answer = UnitFailed(type(exc).__name__, str(exc))
            outcome, fuel = type(exc).__name__, 0
        wall = time.monotonic() - began
        self.ran += 1
        self.seconds_left()  # rolls the day over if it changed
        self._used += wall
        self._record((str(peer), msg.job, msg.unit, fuel, wall, outcome, time.time(), self._day))
        return answer

    def _record(self, task: tuple[str, bytes, int, int, float, str, float, str]) -> None:
        """Record a task, with the others that end in this turn of the event loop, in one transaction (small
        statements in WAL mode, no fsync: on the loop, cheaper than a hop to a thread; the budget in memory counts
        the task already)."""
        if not self._tasks:
            asyncio.get_running_loop().call_soon(self._write_tasks)
        self._tasks.append(task)

    def _write_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        self.store.tasks_ran(tasks)

    async def _fetch(self, peer: PeerId, name: str) -> bytes:
        """The blob `name` from the store, else from `peer` (verified against its name, then stored); concurrent
        asks for one blob share one fetch."""
        pending = self._fetching.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._fetching[name] = future
        try:
            data = await self._fetch_once(peer, name)
            future.set_result(data)
            return data
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else BlobError("fetch cancelled"))
            future.exception()  # retrieved: a fetch nobody else awaited is not an unhandled error
            raise
        finally:
            del self._fetching[name]

    async def _fetch_once(self, peer: PeerId, name: str) -> bytes:
        if self.blobs.has(name):
            return await self.run_blocking(self.blobs.get, name)
        bound = min(MAX_FRAME, self.blobs.max_size + 64)
        try:
            answer = await request(self.host, peer, GetBlob(bytes.fromhex(name)), bound, FETCH_TIMEOUT)
        except (PeerloomError, TimeoutError) as exc:  # link, stream or wire: the unit is refused, nothing crashes
            raise BlobError(f"fetching {name[:12]}… from {peer}: {exc}") from None
        if not isinstance(answer, Blob):
            raise BlobError(f"{peer} does not have blob {name[:12]}…")
        await self.run_blocking(self.blobs.put, answer.data, name)  # BadBlob unless it hashes to its name
        return answer.data


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())
