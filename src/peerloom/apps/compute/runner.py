"""Work units run in worker processes: both cores work, and whatever happens to the engine stays in its process.

A `ComputeRunner` keeps `workers` processes (one per core by default), started with `spawn` so they share nothing
with the node but a pipe. Each worker loads the module it is given from the blob store (verifying its hash),
checks and compiles it once (a small cache by hash), runs the unit in its `Sandbox` and sends back the
`UnitResult` or the `SandboxError`. The node only ever sees those: a worker that dies (a segfault in the engine,
`os._exit`, the OOM killer) closes its pipe, which the event loop sees at once; that unit fails with
`WorkerCrashed` and a fresh worker takes the dead one's place. A worker that does not answer within the unit's
wall-clock limit plus a grace period is killed the same way, and so is one whose caller stopped waiting.

One unit at a time per worker; callers beyond the number of workers wait for one to be free.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections import OrderedDict
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import wasmtime

from .blobs import DEFAULT_MAX_BLOB, BadBlob, BlobError, BlobStore, check_hash
from .sandbox import Limits, Sandbox, SandboxError, UnitResult

MODULE_CACHE = 8  # compiled modules a worker keeps (a job runs one module over many units)
INLINE_SEND = 256 * 1024  # inputs up to this size are written to the worker's pipe from the event loop itself
GRACE_SECONDS = 10.0  # on top of a unit's wall-clock limit: loading and compiling its module, the replies


class WorkerCrashed(SandboxError):
    """The worker process running the unit died or stopped answering; it has been replaced."""


class RunnerClosed(SandboxError):
    """The runner was closed before the unit could run."""


def worker_main(conn: Connection, blob_dir: str, max_blob: int) -> None:
    """A worker process: run the units that arrive on `conn` until it is closed or sends None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the node, which stops its workers itself
    sandbox = Sandbox()
    blobs = BlobStore(blob_dir, max_blob)
    modules: OrderedDict[str, wasmtime.Module] = OrderedDict()
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return  # the node is gone
        if job is None:
            return
        module_hash, stdin, limits = job
        try:
            module = modules.get(module_hash)
            if module is None:
                module = sandbox.check(blobs.get(module_hash))
                modules[module_hash] = module
                if len(modules) > MODULE_CACHE:
                    modules.popitem(last=False)
            modules.move_to_end(module_hash)
            reply: tuple[bool, object] = (True, sandbox.run(module, stdin, limits))
        except (SandboxError, BlobError) as exc:
            reply = (False, exc)
        conn.send(reply)


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, ctx: multiprocessing.context.SpawnContext, blob_dir: str, max_blob: int) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process: BaseProcess = ctx.Process(
            target=worker_main, args=(child, blob_dir, max_blob), name="peerloom-compute", daemon=True
        )
        self.process.start()
        child.close()  # only the worker holds its end now, so its death reads as end-of-file here

    def kill(self) -> None:
        """Stop the process at once and release the pipe (for a worker that crashed, hung, or was abandoned)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


class ComputeRunner:
    """Runs work units in `workers` sandboxed processes; modules come from the blob store at `blob_dir`."""

    def __init__(self, blob_dir: Path | str, workers: int | None = None, max_blob: int = DEFAULT_MAX_BLOB,
                 grace_seconds: float = GRACE_SECONDS) -> None:
        self._blob_dir = str(blob_dir)
        self._size = max(1, workers or os.cpu_count() or 1)
        self._max_blob = max_blob
        self._grace = grace_seconds
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: set[_Worker] = set()
        self._idle: asyncio.Queue[_Worker | None] = asyncio.Queue()  # None: the runner closed, stop waiting
        self._waiting = 0
        self._closed = False

    async def __aenter__(self) -> ComputeRunner:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start the worker processes (they load wasmtime in the background; the first units wait for that)."""
        for _ in range(self._size):
            self._add_worker()

    def worker_pids(self) -> list[int]:
        """The process ids of the live workers (for monitoring, and for tests that kill one)."""
        return sorted(w.process.pid for w in self._workers if w.process.pid is not None)

    async def run(self, module_hash: str, stdin: bytes, limits: Limits) -> UnitResult:
        """Run the module `module_hash` (already in the blob store) on `stdin` under `limits`; raise the unit's
        `SandboxError` (or `WorkerCrashed`, or a `BlobError` about the module or an oversized input) when it does
        not succeed."""
        check_hash(module_hash)
        if len(stdin) > self._max_blob:
            raise BadBlob(f"an input of {len(stdin)} bytes is over the {self._max_blob}-byte bound")
        if self._closed:
            raise RunnerClosed("the compute runner is closed")
        worker = await self._idle_worker()
        try:
            ok, value = await asyncio.wait_for(
                self._exchange(worker, (module_hash, stdin, limits)), limits.wall_seconds + self._grace
            )
        except TimeoutError:
            self._replace(worker)
            raise WorkerCrashed(f"the worker did not answer within {limits.wall_seconds + self._grace:g} s; "
                                "it was killed and replaced") from None
        except WorkerCrashed:
            self._replace(worker)
            if self._closed:
                raise RunnerClosed("the compute runner was closed while the unit ran") from None
            raise
        except BaseException:  # the caller was cancelled: the worker is busy with a unit nobody wants
            self._replace(worker)
            raise
        self._idle.put_nowait(worker)
        if ok:
            return value  # type: ignore[return-value]
        raise value  # type: ignore[misc]

    async def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones are killed (their units fail with
        `RunnerClosed`), all are reaped; units still waiting for a worker fail with `RunnerClosed` too."""
        if self._closed:
            return
        self._closed = True
        idle = []
        while not self._idle.empty():
            worker = self._idle.get_nowait()
            if worker is not None:
                idle.append(worker)
        for _ in range(self._waiting):
            self._idle.put_nowait(None)
        for worker in self._workers:
            if worker in idle:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass  # already dead: reaped below
            else:
                # Busy: killed now. Its pipe stays open until the unit's own task reads the end-of-file and
                # releases it (closing it here would hide the end-of-file from that task's reader).
                worker.process.kill()
        for worker in list(self._workers):
            await asyncio.to_thread(worker.process.join, 2.0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        for worker in idle:
            worker.conn.close()
            self._workers.discard(worker)

    async def _idle_worker(self) -> _Worker:
        """The next idle worker that is still alive (one that died while idle is replaced, and costs no unit)."""
        while True:
            self._waiting += 1
            try:
                worker = await self._idle.get()
            finally:
                self._waiting -= 1
            if worker is None:
                raise RunnerClosed("the compute runner was closed while the unit waited for a worker")
            if worker.process.is_alive():
                return worker
            self._replace(worker)

    def _add_worker(self) -> None:
        worker = _Worker(self._ctx, self._blob_dir, self._max_blob)
        self._workers.add(worker)
        self._idle.put_nowait(worker)

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers.discard(worker)
        if not self._closed:
            self._add_worker()

    async def _exchange(self, worker: _Worker, job: tuple[str, bytes, Limits]) -> tuple[bool, object]:
        """Send `job` to an idle worker and wait for its reply without blocking the loop."""
        loop = asyncio.get_running_loop()
        conn = worker.conn
        # uvloop's add_reader (below, for the previous unit) leaves the descriptor non-blocking, where asyncio's does
        # not: a send larger than the pipe's buffer would then fail with EAGAIN instead of waiting for the worker
        os.set_blocking(conn.fileno(), True)
        try:
            if len(job[1]) > INLINE_SEND:
                await asyncio.to_thread(conn.send, job)  # megabytes through a pipe: not on the event loop
            else:
                conn.send(job)  # the worker is idle and reading: this returns as fast as the pipe takes the bytes
        except OSError:
            raise WorkerCrashed("the worker process died before taking the unit; it was replaced") from None
        readable = loop.create_future()
        fd = conn.fileno()
        loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        try:
            return conn.recv()
        except (EOFError, OSError):
            code = worker.process.exitcode
            if code is None:
                await asyncio.to_thread(worker.process.join, 1.0)
                code = worker.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            raise WorkerCrashed(f"the worker process died running the unit ({how}); it was replaced") from None
