"""What volunteer computing keeps in the node's state database (schema "compute"), for both roles.

Submitter: its jobs (module, quorum, limits), each unit's input (a small one in the unit's row: one transaction for a
whole job, where a file per input cost an fsync each, most of a no-op job's time) and settled outcome (the validated
output, or the error), and what it thinks of each volunteer (reputation, votes won and lost, credit granted, flagged
or not). A unit is written the moment it is validated, in one statement, so a submitter killed at any point restarts
with every validated unit and sends none of them out again; replies still waiting for their vote are lost with the
process and the unit is simply replicated again.

Volunteer: each task it ran (for whom, which unit, the fuel and time it took, how it ended), the credit submitters
granted it, and its CPU seconds per day (the daily budget).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from peerloom.state import State

MIGRATIONS = [
    """
    CREATE TABLE compute_jobs (id BLOB PRIMARY KEY, module TEXT NOT NULL, quorum INTEGER NOT NULL,
        adaptive INTEGER NOT NULL, limits TEXT NOT NULL, created REAL NOT NULL, finished REAL);
    CREATE TABLE compute_units (job BLOB NOT NULL, idx INTEGER NOT NULL, input TEXT NOT NULL, name TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending', digest BLOB, output BLOB, fuel INTEGER, error TEXT,
        PRIMARY KEY (job, idx));
    CREATE TABLE compute_volunteers (peer TEXT PRIMARY KEY, reputation REAL NOT NULL, streak INTEGER NOT NULL,
        wins INTEGER NOT NULL, losses INTEGER NOT NULL, failures INTEGER NOT NULL, credit INTEGER NOT NULL,
        flagged INTEGER NOT NULL);
    CREATE TABLE compute_tasks (submitter TEXT NOT NULL, job BLOB NOT NULL, idx INTEGER NOT NULL,
        fuel INTEGER NOT NULL, wall REAL NOT NULL, outcome TEXT NOT NULL, at REAL NOT NULL);
    CREATE TABLE compute_credit (submitter TEXT NOT NULL, job BLOB NOT NULL, idx INTEGER NOT NULL,
        fuel INTEGER NOT NULL, PRIMARY KEY (submitter, job, idx));
    CREATE TABLE compute_usage (day TEXT PRIMARY KEY, cpu_seconds REAL NOT NULL);
    """,
    # a small input lives in its unit's row, written in the job's one transaction (NULL: in the blob store)
    "ALTER TABLE compute_units ADD COLUMN data BLOB;",
    # a job cancelled by its user: finished, its unsettled units never sent out again
    "ALTER TABLE compute_jobs ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;",
]


@dataclass(frozen=True)
class JobRow:
    id: bytes
    module: str
    quorum: int
    adaptive: bool
    limits: dict[str, Any]
    created: float
    finished: float | None
    cancelled: bool = False


@dataclass(frozen=True)
class UnitRow:
    index: int
    input: str
    name: str
    state: str  # pending, validated, error
    digest: bytes | None
    output: bytes | None
    fuel: int | None
    error: str | None


class ComputeStore:
    """The "compute" schema of `state` (see the module docstring). Every call is one short statement or
    transaction: call it from a worker thread when it writes many rows."""

    def __init__(self, state: State) -> None:
        self.db = state.schema("compute", MIGRATIONS)

    # -- the submitter ------------------------------------------------------------------------------------------
    def add_job(self, job: JobRow, units: list[tuple[str, str, bytes | None]]) -> bool:
        """Record a job and its units (input hash, name, and the input itself when it is kept here rather than in the
        blob store); False if it was already there (a resubmission)."""
        with self.db.transaction():
            if self.db.execute("SELECT 1 FROM compute_jobs WHERE id = ?", (job.id,)):
                return False
            self.db.execute("INSERT INTO compute_jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (job.id, job.module, job.quorum, int(job.adaptive), json.dumps(job.limits), job.created,
                             job.finished, int(job.cancelled)))
            self.db.executemany("INSERT INTO compute_units (job, idx, input, name, data) VALUES (?, ?, ?, ?, ?)",
                                [(job.id, i, h, name, data) for i, (h, name, data) in enumerate(units)])
        return True

    def jobs(self) -> list[JobRow]:
        rows = self.db.execute("SELECT id, module, quorum, adaptive, limits, created, finished, cancelled "
                               "FROM compute_jobs ORDER BY created")
        return [JobRow(r[0], r[1], r[2], bool(r[3]), json.loads(r[4]), r[5], r[6], bool(r[7])) for r in rows]

    def job(self, job: bytes) -> JobRow | None:
        return next((row for row in self.jobs() if row.id == job), None)

    def units(self, job: bytes) -> list[UnitRow]:
        rows = self.db.execute("SELECT idx, input, name, state, digest, output, fuel, error FROM compute_units "
                               "WHERE job = ? ORDER BY idx", (job,))
        return [UnitRow(*r) for r in rows]

    def input(self, job: bytes, index: int) -> bytes | None:
        """A unit's input when its row holds it (None: it is in the blob store)."""
        rows = self.db.execute("SELECT data FROM compute_units WHERE job = ? AND idx = ?", (job, index))
        return rows[0][0] if rows else None

    def counts(self, job: bytes) -> dict[str, int]:
        rows = self.db.execute("SELECT state, COUNT(*) FROM compute_units WHERE job = ? GROUP BY state", (job,))
        return {state: count for state, count in rows}

    def settle(self, validated: list[tuple[bytes, int, bytes, bytes, int]], errors: list[tuple[bytes, int, str]],
               volunteers: list[tuple[str, float, int, int, int, int, int, bool]]) -> None:
        """In one transaction: units validated ((job, unit, digest, output, fuel) each), units that ended in an error
        ((job, unit, reason) each), and the records of volunteers that changed (see `save_volunteers`)."""
        with self.db.transaction():
            if validated:
                self.db.executemany("UPDATE compute_units SET state = 'validated', digest = ?, output = ?, fuel = ? "
                                    "WHERE job = ? AND idx = ?",
                                    [(digest, out, fuel, job, index) for job, index, digest, out, fuel in validated])
            if errors:
                self.db.executemany("UPDATE compute_units SET state = 'error', error = ? WHERE job = ? AND idx = ?",
                                    [(error, job, index) for job, index, error in errors])
            if volunteers:
                self.save_volunteers(volunteers)

    def finished(self, job: bytes, when: float, *, cancelled: bool = False) -> None:
        self.db.execute("UPDATE compute_jobs SET finished = ?, cancelled = ? WHERE id = ?", (when, int(cancelled), job))

    def remove_job(self, job: bytes) -> None:
        with self.db.transaction():
            self.db.execute("DELETE FROM compute_units WHERE job = ?", (job,))
            self.db.execute("DELETE FROM compute_jobs WHERE id = ?", (job,))

    def save_volunteers(self, rows: list[tuple[str, float, int, int, int, int, int, bool]]) -> None:
        """(peer, reputation, streak, wins, losses, failures, credit, flagged) of each volunteer that changed."""
        self.db.executemany("INSERT OR REPLACE INTO compute_volunteers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [(*row[:7], int(row[7])) for row in rows])

    def volunteers(self) -> list[tuple[str, float, int, int, int, int, int, bool]]:
        rows = self.db.execute("SELECT peer, reputation, streak, wins, losses, failures, credit, flagged "
                               "FROM compute_volunteers")
        return [(*r[:7], bool(r[7])) for r in rows]

    # -- the volunteer ------------------------------------------------------------------------------------------
    def tasks_ran(self, tasks: list[tuple[str, bytes, int, int, float, str, float, str]]) -> None:
        """Tasks this volunteer ran ((submitter, job, unit, fuel, wall, outcome, at, day) each), and their time
        counted against each day's budget, in one transaction."""
        with self.db.transaction():
            self.db.executemany("INSERT INTO compute_tasks VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [task[:7] for task in tasks])
            self.db.executemany("INSERT INTO compute_usage VALUES (?, ?) ON CONFLICT(day) DO UPDATE SET "
                                "cpu_seconds = cpu_seconds + excluded.cpu_seconds",
                                [(task[7], task[4]) for task in tasks])

    def tasks(self) -> list[tuple[str, bytes, int, int, float, str, float]]:
        return [tuple(r) for r in self.db.execute(  # type: ignore[misc]
            "SELECT submitter, job, idx, fuel, wall, outcome, at FROM compute_tasks ORDER BY at")]

    def used_today(self, day: str) -> float:
        rows = self.db.execute("SELECT cpu_seconds FROM compute_usage WHERE day = ?", (day,))
        return rows[0][0] if rows else 0.0

    def credit(self, submitter: str, credits: list[tuple[bytes, int, int]]) -> None:
        """Credit granted by `submitter`: (job, unit, fuel) each; a credit already recorded is not counted twice."""
        self.db.executemany("INSERT OR IGNORE INTO compute_credit VALUES (?, ?, ?, ?)",
                            [(submitter, job, unit, fuel) for job, unit, fuel in credits])

    def credit_totals(self) -> dict[str, tuple[int, int]]:
        """Submitter -> (validated units, fuel credited)."""
        rows = self.db.execute("SELECT submitter, COUNT(*), SUM(fuel) FROM compute_credit GROUP BY submitter")
        return {r[0]: (r[1], r[2] or 0) for r in rows}
