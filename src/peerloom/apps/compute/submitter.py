"""The submitter's side: jobs, the asyncio driver of the scheduler, and the exchanges with volunteers.

`submit` stores the module (and large inputs) in the blob store and the job with its small inputs in the state
database (one transaction), then the scheduler (scheduler.py) decides where each replica goes. Each `Assign` becomes
one exchange: a `RunUnit` on a new stream (the input inline when small, the volunteer fetches the module and larger
inputs from us by hash), and its answer:
- `UnitDone`: the output is hashed and the digest is the volunteer's vote (the output is kept until the vote ends);
- `UnitFailed` of a deterministic kind (the module's own fault: not wasm, wrong exports, out of fuel, over the memory
  limit, a trap, too much output, a non-zero exit) is a vote too, on the kind: when volunteers agree, the unit's
  result is that error; other failures (a timeout, a crashed worker) only take the replica back;
- `Refused`: the replica is taken back and the volunteer is left alone for a while;
- garbage, a reply over the unit's output cap, or an answer of the wrong type: the volunteer is flagged (no more
  work) and its connection is closed — a bad peer never costs more than its own replicas, which go to others.
A validated unit is written to the state database at once (store.py), so a restarted submitter never sends it out
again; credit goes to the agreeing volunteers with their next `RunUnit`, and with a `Credits` message at the job's end.
The scheduler's deadlines are driven by one timer re-armed from `next_wakeup()`, as aioquic drives its connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.host import Host

from .blobs import BlobStore, blob_hash
from .link import StreamPool, request
from .sandbox import Limits
from .scheduler import (
    Assign,
    Credited,
    Flagged,
    JobFinished,
    Outvoted,
    Scheduler,
    SchedulerParams,
    UnitError,
    Validated,
)
from .store import ComputeStore, JobRow, UnitRow
from .wire import (
    MAX_CONTROL_FRAME,
    MAX_CREDITS,
    Capacity,
    ComputeWireError,
    Credit,
    Credits,
    QueryCapacity,
    Refused,
    RunUnit,
    UnitDone,
    UnitFailed,
)

log = logging.getLogger(__name__)

# the module's own fault: the same on every honest volunteer, so a vote on the kind settles the unit as an error
DETERMINISTIC = frozenset({"NotWasm", "InvalidModule", "WrongExports", "OutOfFuel", "MemoryLimit", "Trap",
                           "OutputTooLarge", "NonZeroExit"})
INLINE_INPUT = 64 * 1024  # inputs up to this size travel in the RunUnit itself
REPLY_MARGIN = 30.0  # seconds on top of a unit's wall-clock limit for fetching its blobs and the exchange
INLINE_CACHE = 64 * 1024 * 1024  # bytes of small inputs kept in memory while their jobs run (else read per replica)
CAPACITY_TIMEOUT = 10.0
REFUSAL_PAUSE = 5.0  # seconds a volunteer that refused a replica gets no more, before it is asked again


class ComputeError(PeerloomError):
    """A job could not be submitted or found."""


@dataclass(frozen=True)
class UnitOutcome:
    """One unit's result: its output once validated, or why it failed."""

    index: int
    name: str
    output: bytes | None
    error: str | None
    fuel: int | None


class Job:
    """A submitted job: `progress()`, `changed` (set at each change; clear it to wait for the next), `await
    wait()` for the outcomes in input order, `cancel()`."""

    def __init__(self, row: JobRow, names: list[str], role: SubmitterRole) -> None:
        self.row = row
        self.id = row.id.hex()
        self.names = names
        self.role = role
        self.changed = asyncio.Event()
        self.finished = asyncio.Event()
        self.cancelled = row.cancelled
        if row.finished is not None:
            self.finished.set()

    def cancel(self) -> bool:
        """Stop the job: units not validated yet are sent out no more, replies still on their way are ignored, and
        the job stays cancelled across restarts (`wait()` then gives those units with no output and no error).
        False if the job had already finished."""
        return self.role.cancel(self.row.id)

    @property
    def quorum(self) -> int:
        return self.row.quorum

    def progress(self) -> dict[str, Any]:
        return self.role.progress(self.row.id)

    async def wait(self) -> list[UnitOutcome]:
        await self.finished.wait()
        return await self.outcomes()

    async def outcomes(self) -> list[UnitOutcome]:
        """The units' outcomes as they stand (None output and error: not settled yet)."""
        return await self.role.outcomes(self.row.id)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "module": self.row.module, "quorum": self.row.quorum, "adaptive": self.row.adaptive,
                "limits": self.row.limits, "created": self.row.created,
                "finished": self.row.finished is not None or self.finished.is_set(), "cancelled": self.cancelled,
                **self.progress()}


def job_id(module: str, inputs: Sequence[str], quorum: int, limits: Limits, adaptive: bool) -> bytes:
    """A job's id: the same module, inputs, quorum and limits are the same job (a resubmission resumes it)."""
    h = hashlib.sha256(f"{module} {quorum} {int(adaptive)} {limits.fuel} {limits.memory_bytes} "
                       f"{limits.wall_seconds} {limits.max_output}".encode())
    for name in inputs:
        h.update(bytes.fromhex(name))
    return h.digest()[:16]


class SubmitterRole:
    """See the module docstring."""

    def __init__(self, host: Host, blobs: BlobStore, store: ComputeStore, spawn: Callable[[Awaitable[None]], Any],
                 run_blocking: Callable[..., Awaitable[Any]], params: SchedulerParams | None = None) -> None:
        self.host = host
        self.blobs = blobs
        self.store = store
        self.spawn = spawn
        self.run_blocking = run_blocking
        self.scheduler = Scheduler(params)
        self.streams = StreamPool(host)
        self.jobs: dict[bytes, Job] = {}
        self._limits: dict[bytes, Limits] = {}
        self._inputs: dict[bytes, list[str]] = {}
        self._modules: dict[bytes, str] = {}
        self._replies: dict[tuple[bytes, int], dict[bytes, bytes | tuple[str, str]]] = {}
        self._credits: dict[PeerId, list[Credit]] = {}
        self._inline: dict[str, bytes] = {}  # input name -> bytes, for small inputs of running jobs
        self._inline_size = 0
        self._dirty: set[PeerId] = set()
        self._kicked = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # -- jobs -----------------------------------------------------------------------------------------------------
    def load(self) -> tuple[list, list[tuple[JobRow, list[UnitRow]]]]:
        """What the state database holds (read in a worker thread): the volunteers' records, every job's units."""
        return self.store.volunteers(), [(row, self.store.units(row.id)) for row in self.store.jobs()]

    def restore(self, saved: tuple[list, list[tuple[JobRow, list[UnitRow]]]]) -> None:
        """Take back what `load` read: the volunteers' records, every job, the unfinished ones scheduled again."""
        volunteers, jobs = saved
        for peer, reputation, streak, wins, losses, failures, credit, flagged in volunteers:
            record = self.scheduler.volunteer(PeerId.from_string(peer))
            record.reputation, record.streak, record.wins, record.losses = reputation, streak, wins, losses
            record.failures, record.credit, record.flagged = failures, credit, flagged
        for row, units in jobs:
            self._open(row, units)

    def _open(self, row: JobRow, units: list[UnitRow]) -> Job:
        job = self.jobs[row.id] = Job(row, [u.name for u in units], self)
        if row.finished is None:
            self._limits[row.id] = Limits(**row.limits)
            self._inputs[row.id] = [u.input for u in units]
            self._modules[row.id] = row.module
            validated = {u.index: (u.digest, u.fuel or 0) for u in units if u.state == "validated"}
            errors = {u.index: u.error or "" for u in units if u.state == "error"}
            self.scheduler.add_job(row.id, len(units), row.quorum, adaptive=row.adaptive, validated=validated,
                                   errors=errors)
            self._kick()
        return job

    async def submit(self, module: bytes, inputs: Sequence[tuple[str, bytes]], quorum: int = 2,
                     limits: Limits | None = None, adaptive: bool = False) -> Job:
        """A job of `module` (a WASI command) over `inputs` ((name, bytes) each, one unit each), each unit validated
        by `quorum` agreeing volunteers. Submitting the same job again gives the job as it stands (resumed)."""
        if not 1 <= quorum <= 16:
            raise ComputeError("the quorum is 1 to 16")
        if not inputs:
            raise ComputeError("a job needs at least one input")
        limits = limits or Limits()
        module_name = await self.run_blocking(self.blobs.put, module)
        names = await self.run_blocking(self._put_large, [data for _, data in inputs])
        ident = job_id(module_name, names, quorum, limits, adaptive)
        if ident in self.jobs:
            return self.jobs[ident]
        for name, (_, data) in zip(names, inputs, strict=True):
            if len(data) <= INLINE_INPUT and self._inline_size + len(data) <= INLINE_CACHE \
                    and name not in self._inline:
                self._inline[name] = data
                self._inline_size += len(data)
        row = JobRow(ident, module_name, quorum, adaptive, asdict(limits), time.time(), None)
        units = [(h, name, data if len(data) <= INLINE_INPUT else None)
                 for h, (name, data) in zip(names, inputs, strict=True)]
        await self.run_blocking(self.store.add_job, row, units)
        return self._open(row, self.store.units(ident))

    def _put_large(self, inputs: list[bytes]) -> list[str]:
        """The inputs' names; those over `INLINE_INPUT` are stored in the blob store (a small one goes in its unit's
        row of the state database, with the job, in one transaction)."""
        return [self.blobs.put(data) if len(data) > INLINE_INPUT else blob_hash(data) for data in inputs]

    def job(self, ident: str) -> Job:
        try:
            return self.jobs[bytes.fromhex(ident)]
        except (ValueError, KeyError):
            raise ComputeError(f"no job {ident!r:.40}") from None

    def progress(self, ident: bytes) -> dict[str, Any]:
        available = sum(1 for v in self.scheduler.volunteers.values() if v.free > 0 or v.busy)
        if ident in self._limits:
            return {**self.scheduler.progress(ident), "available": available}
        counts = self.store.counts(ident)
        units = sum(counts.values())
        return {"units": units, "validated": counts.get("validated", 0), "errors": counts.get("error", 0),
                "in_flight": 0, "replies": 0, "volunteers": 0, "available": available}

    async def outcomes(self, ident: bytes) -> list[UnitOutcome]:
        units = await self.run_blocking(self.store.units, ident)
        return [UnitOutcome(u.index, u.name, u.output if u.state == "validated" else None, u.error, u.fuel)
                for u in units]

    # -- volunteers -----------------------------------------------------------------------------------------------
    async def probe(self, peer: PeerId) -> Capacity | None:
        """Ask `peer` what it offers; a volunteer taking our work joins the scheduler."""
        try:
            answer = await request(self.host, peer, QueryCapacity(), MAX_CONTROL_FRAME, CAPACITY_TIMEOUT)
        except ComputeWireError as exc:
            self.drop(peer, f"sent a bad capacity answer: {exc}")
            return None
        except (PeerloomError, TimeoutError) as exc:
            log.info("compute: no capacity answer from %s: %s", peer, exc)
            return None
        if not isinstance(answer, Capacity):
            self.drop(peer, f"answered a capacity query with {type(answer).__name__}")
            return None
        if answer.accepts and answer.slots > 0 and answer.cpu_seconds_left > 0:
            self.scheduler.add_volunteer(peer, min(answer.slots, 64))
            self._kick()
        return answer

    def peer_gone(self, peer: PeerId) -> None:
        self.streams.forget(peer)
        if peer in self.scheduler.volunteers:
            self.scheduler.remove_volunteer(peer, time.monotonic())
            self._dirty.add(peer)  # its lost replicas count in its record
            self._kick()

    def drop(self, peer: PeerId, reason: str) -> None:
        """`peer` broke the protocol: flagged (no more work), its replicas reassigned, its connection closed."""
        log.warning("compute: dropping volunteer %s: it %s", peer, reason)
        self.scheduler.flag(peer, f"it {reason}", time.monotonic())
        self.streams.forget(peer)
        self._dirty.add(peer)
        conn = self.host.connections.get(peer)
        if conn is not None:
            conn.close(f"compute: {reason}")
        self._kick()

    def volunteers(self) -> list[dict[str, Any]]:
        return [{"peer_id": str(v.peer), "slots": v.slots, "busy": v.busy, "connected": v.connected,
                 "reputation": round(v.reputation, 4), "wins": v.wins, "losses": v.losses, "failures": v.failures,
                 "credit": v.credit, "flagged": v.flagged or not self.scheduler.eligible(v)}
                for v in self.scheduler.volunteers.values()]

    # -- the driver -----------------------------------------------------------------------------------------------
    def _kick(self) -> None:
        """Run the scheduler soon (once for any number of changes in one turn of the loop)."""
        if not self._kicked and not self._closed:
            self._kicked = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._kicked = False
        if self._closed:
            return
        now = time.monotonic()
        self.scheduler.tick(now)
        for assign in self.scheduler.assign(now):
            self.spawn(self._replica(assign))
        self._handle_events()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        wake = self.scheduler.next_wakeup()
        if wake is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, wake - now), self._kick)

    def _handle_events(self) -> None:
        """What the scheduler decided, acted on: the units settled and the volunteers' records that changed are
        written in one transaction (before anything is told of them, and before a job is marked finished)."""
        validated: list[tuple[bytes, int, bytes, bytes, int]] = []
        errors: list[tuple[bytes, int, str]] = []
        finished: list[bytes] = []
        for event in self.scheduler.take_events():
            if isinstance(event, Validated):
                replies = self._replies.pop((event.job, event.unit), {})
                value = replies.get(event.digest)
                if isinstance(value, tuple):
                    errors.append((event.job, event.unit, f"{value[0]}: {value[1]}"))
                else:
                    validated.append((event.job, event.unit, event.digest, value or b"", event.fuel))
            elif isinstance(event, UnitError):
                self._replies.pop((event.job, event.unit), None)
                errors.append((event.job, event.unit, event.reason))
            elif isinstance(event, Credited):
                self._credits.setdefault(event.peer, []).append(Credit(event.job, event.unit, event.fuel))
                self._dirty.add(event.peer)
            elif isinstance(event, Outvoted):
                self._dirty.add(event.peer)
                log.info("compute: %s was outvoted on unit %d (reputation %.3f)", event.peer, event.unit,
                         event.reputation)
            elif isinstance(event, Flagged):
                self._dirty.add(event.peer)
                log.warning("compute: volunteer %s flagged: %s", event.peer, event.reason)
            elif isinstance(event, JobFinished):
                finished.append(event.job)
        records = [self.scheduler.volunteers[p] for p in self._dirty]
        self._dirty.clear()
        if validated or errors or records:
            self.store.settle(validated, errors, [(str(v.peer), v.reputation, v.streak, v.wins, v.losses, v.failures,
                                                   v.credit, v.flagged) for v in records])
        for ident in {row[0] for row in validated} | {row[0] for row in errors}:
            self._changed(ident)
        for ident in finished:
            self._finish(ident)

    def _changed(self, ident: bytes) -> None:
        job = self.jobs.get(ident)
        if job is not None:
            job.changed.set()

    def cancel(self, ident: bytes) -> bool:
        """See `Job.cancel`."""
        job = self.jobs.get(ident)
        if job is None or job.finished.is_set():
            return False
        for key in [key for key in self._replies if key[0] == ident]:
            del self._replies[key]
        job.cancelled = True
        self._finish(ident, cancelled=True)
        self._kick()  # the cancelled job's replicas gave their slots back: other jobs may take them
        return True

    def _finish(self, ident: bytes, *, cancelled: bool = False) -> None:
        self.store.finished(ident, time.time(), cancelled=cancelled)
        self.scheduler.remove_job(ident)
        running = {name for job, names in self._inputs.items() if job != ident for name in names}
        for name in self._inputs.get(ident, []):
            if name not in running and name in self._inline:
                self._inline_size -= len(self._inline.pop(name))
        for table in (self._limits, self._inputs, self._modules):
            table.pop(ident, None)
        job = self.jobs.get(ident)
        if job is not None:
            job.finished.set()
            job.changed.set()
        for peer in [p for p, credits in self._credits.items() if credits]:
            self.spawn(self._send_credits(peer))

    async def _send_credits(self, peer: PeerId) -> None:
        credits = self._credits.pop(peer, [])
        while credits:
            batch, credits = credits[:MAX_CREDITS], credits[MAX_CREDITS:]
            try:
                await request(self.host, peer, Credits(tuple(batch)), MAX_CONTROL_FRAME, CAPACITY_TIMEOUT)
            except (PeerloomError, TimeoutError) as exc:
                log.info("compute: credit for %s not delivered: %s", peer, exc)
                return

    async def _replica(self, assign: Assign) -> None:
        """One replica's exchange with its volunteer, and what its answer means for the scheduler."""
        job, index, peer = assign.job, assign.unit, assign.peer
        limits, input_name = self._limits.get(job), self._inputs.get(job, [None])[index]
        if limits is None or input_name is None:
            return
        data = self._inline.get(input_name)
        if data is None:
            data = await self.run_blocking(self._small_input, job, index, input_name)
        pending = self._credits.pop(peer, [])
        credits, rest = pending[:MAX_CREDITS], pending[MAX_CREDITS:]
        if rest:
            self._credits[peer] = rest
        message = RunUnit(job, index, bytes.fromhex(self._modules[job]), bytes.fromhex(input_name), limits.fuel,
                          limits.memory_bytes, int(limits.wall_seconds * 1000), limits.max_output, data,
                          tuple(credits))
        try:
            answer = await self.streams.request(peer, message, limits.max_output + 1024,
                                                limits.wall_seconds + REPLY_MARGIN)
        except ComputeWireError as exc:
            self.drop(peer, f"sent a bad reply: {exc}")
            return
        except (PeerloomError, TimeoutError) as exc:
            self._credits.setdefault(peer, [])[:0] = credits  # not delivered: they go with the next message
            self._lost(assign, f"{type(exc).__name__}: {exc}")
            return
        now = time.monotonic()
        if job not in self._limits:  # cancelled while the replica ran: its answer counts for nothing
            return
        if isinstance(answer, UnitDone):
            if len(answer.output) > limits.max_output:
                self.drop(peer, f"sent {len(answer.output)} bytes of output (the cap is {limits.max_output})")
                return
            digest = hashlib.sha256(b"\0" + answer.output).digest()
            self._replies.setdefault((job, index), {}).setdefault(digest, answer.output)
            self.scheduler.reply(peer, job, index, digest, answer.fuel, now)
        elif isinstance(answer, UnitFailed) and answer.kind in DETERMINISTIC:
            digest = hashlib.sha256(b"\1" + answer.kind.encode()).digest()
            self._replies.setdefault((job, index), {}).setdefault(digest, (answer.kind, answer.message))
            self.scheduler.reply(peer, job, index, digest, answer.fuel, now)
        elif isinstance(answer, UnitFailed):
            self._lost(assign, f"{answer.kind}: {answer.message}")
            return
        elif isinstance(answer, Refused):
            self._lost(assign, f"refused: {answer.reason}")
            self._pause(peer)
            return
        else:
            self.drop(peer, f"answered a unit with {type(answer).__name__}")
            return
        self._kick()

    def _small_input(self, job: bytes, index: int, name: str) -> bytes | None:
        """A unit's input if it is small enough to go inline (from its row, or from the blob store for a job stored
        before inputs moved into the rows); None: the volunteer fetches it."""
        data = self.store.input(job, index)
        if data is None and self.blobs.path(name).stat().st_size <= INLINE_INPUT:
            data = self.blobs.get(name)
        return data

    def _lost(self, assign: Assign, reason: str) -> None:
        log.info("compute: unit %d of job %s from %s lost: %s", assign.unit, assign.job.hex()[:12], assign.peer, reason)
        if self.scheduler.failed(assign.peer, assign.job, assign.unit, reason, time.monotonic()):
            self._dirty.add(assign.peer)
            self._kick()

    def _pause(self, peer: PeerId) -> None:
        record = self.scheduler.volunteers.get(peer)
        if record is None or not record.connected:
            return
        slots, record.slots = record.slots, 0

        def resume() -> None:
            if record.connected and record.slots == 0:
                record.slots = slots
                self._kick()

        asyncio.get_running_loop().call_later(REFUSAL_PAUSE, resume)

    def close(self) -> None:
        self._closed = True
        self.streams.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
