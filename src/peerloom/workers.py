"""Worker threads for a node's blocking work (hashing pieces, disk reads and writes), with cheap hand-offs.

`loop.run_in_executor` costs, per job, a `concurrent.futures.Future`, a work item, a lock or two, a chained
asyncio future and one wake-up of the event loop through its self-pipe. At a piece per millisecond that
is a measurable share of a core. Here a job is an asyncio future plus a tuple on a `SimpleQueue`, and the
results that finish while the loop is busy come back together: one wake-up delivers them all.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerPool:
    """`threads` daemon threads running the jobs given with `submit`, in order of submission."""

    def __init__(self, threads: int, name: str = "peerloom-io") -> None:
        self._jobs: queue.SimpleQueue[tuple[asyncio.Future, Callable[..., Any], tuple] | None] = queue.SimpleQueue()
        self._done: collections.deque[tuple[asyncio.Future, bool, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._wake_scheduled = False
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(max(1, threads))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run `fn(*args)` in a worker; the returned future (of the running loop) gets its result."""
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        fut = asyncio.get_running_loop().create_future()
        self._jobs.put((fut, fn, args))
        return fut

    def _work(self) -> None:
        jobs, done = self._jobs, self._done
        while True:
            job = jobs.get()
            if job is None:
                return
            fut, fn, args = job
            try:
                done.append((fut, True, fn(*args)))
            except Exception as exc:  # handed to whoever awaits the future
                done.append((fut, False, exc))
            with self._lock:
                if self._wake_scheduled:
                    continue  # a delivery is already on its way and will take this result too
                self._wake_scheduled = True
            try:
                fut.get_loop().call_soon_threadsafe(self._deliver)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more

    def _deliver(self) -> None:
        with self._lock:
            self._wake_scheduled = False  # results appended from now on schedule their own delivery
        done = self._done
        while done:
            fut, ok, value = done.popleft()
            if fut.cancelled():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def close(self) -> None:
        """Finish the queued jobs, then stop the threads (blocks until they have)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
