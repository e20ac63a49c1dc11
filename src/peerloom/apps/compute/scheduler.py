"""The submitter's scheduler: which volunteer runs which replica of which work unit, and when a unit is validated
(sans-I/O: no clock, no I/O; `now` comes in, events go out).

BOINC's model without a project server:
- **Replication.** Each unit goes to `quorum` distinct volunteers (never two replicas on one key: a volunteer that
  voted on a unit, or runs it now, never gets it again; one whose replica was lost without a vote may retry it
  when no other volunteer can). Replies are compared by a digest (the service hashes the output, or the kind of a
  deterministic error); when `target` replies agree the unit is validated. While they disagree, one more replica goes
  out at a time, up to `quorum + max_extra` replies; past that the unit is an error ("no agreement").
- **Reputation.** A volunteer starts at `reputation_start`; each reply that agrees with the validated one adds `win`
  (capped at 1), each that loses a vote multiplies it by `loss`. Below `threshold` the volunteer is flagged and gets
  no more work from this submitter. A volunteer with `max_unjudged` replies still waiting for their vote gets no
  more work until some are judged: a fast liar cannot take many units before its first lost votes catch up with it.
- **Adaptive replication** (a job's `adaptive` flag, BOINC's `adaptive_replication`): a volunteer whose last
  `trust_after` replies all agreed is trusted; a unit whose first replica goes to a trusted volunteer needs that one
  reply only, except for a random `spot_check` fraction, replicated as usual to keep the trust honest.
- **Deadlines.** A replica not answered by its deadline, or whose volunteer disconnects or refuses, is taken back and
  the unit goes to someone else; after `max_failures` such losses the unit is an error.
- **Credit.** Each volunteer whose reply agreed gets the fuel the unit consumed (the least that an agreeing volunteer
  claimed: fuel is deterministic, so honest claims are equal, and a high claim gains nothing).

Driven like aioquic's connection: call `assign(now)` for work to send, `reply`/`failed`/`tick` as things happen,
`take_events()` for what followed, and wake at `next_wakeup()`.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field

from peerloom.identity import PeerId


@dataclass(frozen=True)
class SchedulerParams:
    max_extra: int = 3  # replicas beyond the quorum when replies disagree
    max_failures: int = 4  # replicas lost (deadline, disconnect, refusal, crash) before the unit is an error
    reputation_start: float = 1.0
    win: float = 0.05
    loss: float = 0.5
    threshold: float = 0.3  # below it a volunteer gets no more work from us
    trust_after: int = 10  # agreeing replies in a row before a volunteer is trusted (adaptive replication)
    spot_check: float = 0.1  # fraction of a trusted volunteer's units still replicated
    deadline: float = 120.0  # seconds a volunteer has to answer one replica
    max_unjudged: int = 4  # replies of one volunteer still waiting for their vote before it gets more work


# -- events ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Assign:
    job: bytes
    unit: int
    peer: PeerId
    deadline: float


@dataclass(frozen=True)
class Validated:
    job: bytes
    unit: int
    digest: bytes
    fuel: int  # the least fuel an agreeing volunteer claimed (the credit each of them gets)
    replies: int  # replies it took


@dataclass(frozen=True)
class Credited:
    job: bytes
    unit: int
    peer: PeerId
    fuel: int


@dataclass(frozen=True)
class Outvoted:
    job: bytes
    unit: int
    peer: PeerId
    reputation: float


@dataclass(frozen=True)
class Flagged:
    peer: PeerId
    reputation: float
    reason: str


@dataclass(frozen=True)
class UnitError:
    job: bytes
    unit: int
    reason: str


@dataclass(frozen=True)
class JobFinished:
    job: bytes


Event = Assign | Validated | Credited | Outvoted | Flagged | UnitError | JobFinished


# -- state ------------------------------------------------------------------------------------------------------
@dataclass
class VolunteerRecord:
    """What this submitter knows of one volunteer."""

    peer: PeerId
    slots: int = 0
    busy: int = 0
    connected: bool = False
    reputation: float = 1.0
    streak: int = 0  # agreeing replies in a row
    wins: int = 0
    losses: int = 0
    failures: int = 0
    credit: int = 0
    flagged: bool = False
    unjudged: int = 0  # its replies still waiting for their unit's vote

    @property
    def free(self) -> int:
        return self.slots - self.busy if self.connected and not self.flagged else 0


@dataclass
class _Unit:
    index: int
    target: int | None = None  # replies that must agree (decided at the first assignment)
    in_flight: dict[PeerId, float] = field(default_factory=dict)  # peer -> deadline
    votes: dict[PeerId, tuple[bytes, int]] = field(default_factory=dict)  # peer -> (digest, fuel)
    tried: set[PeerId] = field(default_factory=set)  # voted on it or running it: never again
    lost: set[PeerId] = field(default_factory=set)  # lost a replica of it without a vote: last choice
    failures: int = 0
    digest: bytes | None = None  # the validated reply
    fuel: int = 0
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.digest is not None or self.error is not None


@dataclass
class _Job:
    id: bytes
    quorum: int
    adaptive: bool
    units: list[_Unit]
    left: int


class Scheduler:
    """See the module docstring. `rng` draws the spot checks (seed it in tests)."""

    def __init__(self, params: SchedulerParams | None = None, rng: random.Random | None = None) -> None:
        self.params = params or SchedulerParams()
        self.rng = rng or random.Random()
        self.volunteers: dict[PeerId, VolunteerRecord] = {}
        self._jobs: dict[bytes, _Job] = {}
        self._needy: dict[tuple[bytes, int], None] = {}  # units wanting one more replica, oldest first
        self._deadlines: list[tuple[float, int, bytes, int, PeerId]] = []  # a heap; stale entries are skipped
        self._order = itertools.count()  # ties in the heap are broken by it, never by comparing PeerIds
        self._events: list[Event] = []

    # -- volunteers ---------------------------------------------------------------------------------------------
    def volunteer(self, peer: PeerId) -> VolunteerRecord:
        record = self.volunteers.get(peer)
        if record is None:
            record = self.volunteers[peer] = VolunteerRecord(peer, reputation=self.params.reputation_start)
        return record

    def add_volunteer(self, peer: PeerId, slots: int) -> None:
        """`peer` is connected and offers `slots` tasks at once (its capacity answer)."""
        record = self.volunteer(peer)
        record.slots = max(0, slots)
        record.connected = True

    def remove_volunteer(self, peer: PeerId, now: float, reason: str = "the volunteer disconnected") -> None:
        """`peer` went away: its replicas in flight are taken back and reassigned."""
        record = self.volunteers.get(peer)
        if record is None:
            return
        record.connected = False
        for job in self._jobs.values():
            for unit in job.units:
                if peer in unit.in_flight:
                    self.failed(peer, job.id, unit.index, reason, now)

    def flag(self, peer: PeerId, reason: str, now: float) -> None:
        """`peer` broke the protocol (garbage, an oversized reply): no more work, its replicas reassigned."""
        record = self.volunteer(peer)
        if not record.flagged:
            record.flagged = True
            self._events.append(Flagged(peer, record.reputation, reason))
        self.remove_volunteer(peer, now, reason)

    # -- jobs -----------------------------------------------------------------------------------------------------
    def add_job(self, job: bytes, units: int, quorum: int = 2, *, adaptive: bool = False,
                validated: dict[int, tuple[bytes, int]] | None = None,
                errors: dict[int, str] | None = None) -> None:
        """A job of `units` work units; `validated` (unit -> (digest, fuel)) and `errors` (unit -> reason) are the
        units already settled (a job resumed after a restart): they are never sent out again."""
        if job in self._jobs:
            raise ValueError("a job with that id is already scheduled")
        if quorum < 1 or units < 0:
            raise ValueError("a job needs a quorum of at least 1")
        record = _Job(job, quorum, adaptive, [_Unit(i) for i in range(units)], 0)
        for index, (digest, fuel) in (validated or {}).items():
            record.units[index].digest, record.units[index].fuel = digest, fuel
        for index, reason in (errors or {}).items():
            record.units[index].error = reason
        self._jobs[job] = record
        for unit in record.units:
            if not unit.done:
                record.left += 1
                self._needy[(job, unit.index)] = None
        if record.left == 0:
            self._events.append(JobFinished(job))

    def remove_job(self, job: bytes) -> None:
        """Forget `job` (finished or cancelled); replies still on their way are ignored."""
        record = self._jobs.pop(job, None)
        if record is None:
            return
        for unit in record.units:
            self._needy.pop((job, unit.index), None)
            if not unit.done:
                self._unjudge(unit)
            for peer in unit.in_flight:
                if peer in self.volunteers:
                    self.volunteers[peer].busy -= 1
            unit.in_flight.clear()

    def progress(self, job: bytes) -> dict[str, int]:
        record = self._jobs[job]
        units = record.units
        return {
            "units": len(units),
            "validated": sum(1 for u in units if u.digest is not None),
            "errors": sum(1 for u in units if u.error is not None),
            "in_flight": sum(len(u.in_flight) for u in units),
            "replies": sum(len(u.votes) for u in units),
            "volunteers": len({p for u in units for p in u.in_flight}),
        }

    def assignments(self, job: bytes) -> dict[int, list[PeerId]]:
        """Unit -> volunteers running a replica of it now."""
        return {u.index: list(u.in_flight) for u in self._jobs[job].units if u.in_flight}

    # -- the work -------------------------------------------------------------------------------------------------
    def assign(self, now: float) -> list[Assign]:
        """Replicas to send now: free slots of eligible volunteers filled with the units that want replicas."""
        out: list[Assign] = []
        free = [v for v in self.volunteers.values() if v.free > 0 and self.eligible(v)]
        for key in list(self._needy):
            if not free:
                break
            job = self._jobs[key[0]]
            unit = job.units[key[1]]
            while self._wanted(job, unit) > 0:
                choices = [v for v in free if v.peer not in unit.tried]
                if not choices:
                    break
                volunteer = max(choices, key=lambda v: (v.peer not in unit.lost, v.free, v.reputation))
                if unit.target is None:
                    unit.target = self._target(job, volunteer)
                deadline = now + self.params.deadline
                unit.in_flight[volunteer.peer] = deadline
                unit.tried.add(volunteer.peer)
                volunteer.busy += 1
                heapq.heappush(self._deadlines, (deadline, next(self._order), job.id, unit.index, volunteer.peer))
                out.append(Assign(job.id, unit.index, volunteer.peer, deadline))
                if volunteer.free <= 0:
                    free.remove(volunteer)
            if self._wanted(job, unit) <= 0:
                del self._needy[key]
        return out

    def eligible(self, volunteer: VolunteerRecord) -> bool:
        return (not volunteer.flagged and volunteer.reputation >= self.params.threshold
                and volunteer.unjudged < self.params.max_unjudged)

    def _target(self, job: _Job, volunteer: VolunteerRecord) -> int:
        trusted = job.adaptive and volunteer.streak >= self.params.trust_after
        if trusted and self.rng.random() >= self.params.spot_check:
            return 1
        return job.quorum

    def _wanted(self, job: _Job, unit: _Unit) -> int:
        """More replicas this unit needs sent out now (0 when done, when enough are out, or at the cap)."""
        if unit.done:
            return 0
        target = unit.target or job.quorum
        agreeing = max(Counter(d for d, _ in unit.votes.values()).values(), default=0)
        room = target + self.params.max_extra - len(unit.votes) - len(unit.in_flight)
        return max(0, min(target - agreeing - len(unit.in_flight), room))

    def reply(self, peer: PeerId, job_id: bytes, index: int, digest: bytes, fuel: int, now: float) -> bool:
        """`peer`'s reply for a replica it was given; False (and nothing changes) if it was not expected."""
        job = self._jobs.get(job_id)
        if job is None or not 0 <= index < len(job.units) or peer not in job.units[index].in_flight:
            return False
        unit = job.units[index]
        self._release(peer, unit)
        if unit.done:  # a late replica of a settled unit: judged against the validated reply
            if unit.digest is not None:
                self._judge(job, unit, peer, digest == unit.digest, unit.fuel, late=True)
            return True
        unit.votes[peer] = (digest, fuel)
        self.volunteer(peer).unjudged += 1
        best, count = Counter(d for d, _ in unit.votes.values()).most_common(1)[0]
        if count >= (unit.target or job.quorum):
            unit.digest = best
            unit.fuel = min(f for d, f in unit.votes.values() if d == best)
            self._events.append(Validated(job.id, index, best, unit.fuel, len(unit.votes)))
            for voter, (voted, _) in unit.votes.items():
                self._judge(job, unit, voter, voted == best, unit.fuel)
            self._settled(job, unit)
        else:
            self._reconsider(job, unit)
        return True

    def _judge(self, job: _Job, unit: _Unit, peer: PeerId, agreed: bool, fuel: int, *, late: bool = False) -> None:
        volunteer = self.volunteer(peer)
        if not late:
            volunteer.unjudged -= 1
        if agreed:
            volunteer.wins += 1
            volunteer.streak += 1
            volunteer.reputation = min(1.0, volunteer.reputation + self.params.win)
            volunteer.credit += fuel
            self._events.append(Credited(job.id, unit.index, peer, fuel))
            return
        volunteer.losses += 1
        volunteer.streak = 0
        volunteer.reputation *= self.params.loss
        self._events.append(Outvoted(job.id, unit.index, peer, volunteer.reputation))
        if volunteer.reputation < self.params.threshold and not volunteer.flagged:
            volunteer.flagged = True
            self._events.append(Flagged(peer, volunteer.reputation, "its results lost too many votes"))

    def failed(self, peer: PeerId, job_id: bytes, index: int, reason: str, now: float) -> bool:
        """`peer`'s replica produced no vote (deadline, disconnect, refusal, crash): the unit goes to someone
        else; False if that replica was not expected."""
        job = self._jobs.get(job_id)
        if job is None or not 0 <= index < len(job.units) or peer not in job.units[index].in_flight:
            return False
        unit = job.units[index]
        self._release(peer, unit)
        unit.tried.discard(peer)  # it gave no vote: it may try this unit again (a lone volunteer must be able to)
        unit.lost.add(peer)
        self.volunteer(peer).failures += 1
        if unit.done:
            return True
        unit.failures += 1
        if unit.failures > self.params.max_failures:
            self._error(job, unit, f"{unit.failures} replicas were lost (the last: {reason})")
        else:
            self._reconsider(job, unit)
        return True

    def _reconsider(self, job: _Job, unit: _Unit) -> None:
        if self._wanted(job, unit) > 0:
            self._needy[(job.id, unit.index)] = None
        elif not unit.in_flight:  # at the cap with nothing out: no agreement can come any more
            self._error(job, unit, f"no {unit.target or job.quorum} of {len(unit.votes)} replies agreed")

    def _error(self, job: _Job, unit: _Unit, reason: str) -> None:
        unit.error = reason
        self._unjudge(unit)
        self._events.append(UnitError(job.id, unit.index, reason))
        self._settled(job, unit)

    def _unjudge(self, unit: _Unit) -> None:
        """The votes of a unit that will never be judged no longer hold its voters back."""
        for voter in unit.votes:
            self.volunteer(voter).unjudged -= 1

    def _settled(self, job: _Job, unit: _Unit) -> None:
        self._needy.pop((job.id, unit.index), None)
        job.left -= 1
        if job.left == 0:
            self._events.append(JobFinished(job.id))

    def _release(self, peer: PeerId, unit: _Unit) -> None:
        del unit.in_flight[peer]
        record = self.volunteers.get(peer)
        if record is not None:
            record.busy -= 1

    # -- time -----------------------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Take back the replicas whose deadline has passed."""
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, _, job_id, index, peer = heapq.heappop(heap)
            job = self._jobs.get(job_id)
            if job is not None and job.units[index].in_flight.get(peer) == deadline:
                self.failed(peer, job_id, index, "its deadline passed", now)

    def next_wakeup(self) -> float | None:
        heap = self._deadlines
        while heap:
            deadline, _, job_id, index, peer = heap[0]
            job = self._jobs.get(job_id)
            if job is not None and job.units[index].in_flight.get(peer) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events
