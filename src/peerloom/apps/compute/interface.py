"""What the compute CLI and the daemon's compute routes share: the JSON shapes of jobs and outcomes, the limits a
user may set, and the names of result files."""

from __future__ import annotations

import base64
import re
from typing import Any

from .sandbox import Limits
from .submitter import Job, UnitOutcome

MAX_UNITS = 100_000  # units in one job
MAX_QUORUM = 16
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def limits_from(fuel: int | None = None, memory: int | None = None, wall_seconds: float | None = None,
                max_output: int | None = None) -> Limits:
    """A unit's limits with the user's changes to the defaults; ValueError says which one is wrong."""
    default = Limits()
    return Limits(fuel=fuel or default.fuel, memory_bytes=memory or default.memory_bytes,
                  wall_seconds=wall_seconds or default.wall_seconds,
                  max_output=default.max_output if max_output is None else max_output)


def job_json(job: Job) -> dict[str, Any]:
    return job.to_json()


def outcome_json(outcome: UnitOutcome) -> dict[str, Any]:
    return {"index": outcome.index, "name": outcome.name, "fuel": outcome.fuel, "error": outcome.error,
            "output_b64": None if outcome.output is None else base64.b64encode(outcome.output).decode("ascii")}


def result_name(name: str) -> str:
    """The file a unit's result is written to, named after its input: `NAME.out` (or `NAME.err` for an error),
    with anything but letters, digits, `.`, `_` and `-` replaced, so that a name can never be another path."""
    safe = _UNSAFE.sub("_", name)[:200].lstrip(".") or "unit"
    return safe
