"""The script-check seam of block connection: a `ScriptChecker` verifies a block's `ScriptJob`s or raises
`ConsensusError`; the chain state writes nothing until it returns.

`ProcessScriptChecker` splits a block's jobs into one batch per worker process so both cores verify
signatures (libsecp256k1 through `coincurve` holds the GIL in a thread). A batch crosses the process boundary
as raw bytes — transactions serialized, spent outputs as (value, script), flag names — and the worker parses
them back, so nothing but bytes is pickled. Small blocks are verified in the calling process: a round trip to a
worker costs more than a few signatures.

`verify_jobs` is the function a worker runs: it maps flag names onto the interpreter's `ScriptFlags` and calls
`verify_input` for every input, with one `PrecomputedTx` per transaction (BIP 143/341 sighash midstates).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable, Sequence
from typing import Protocol

from .block import ConsensusError
from .script import PrecomputedTx, ScriptError, ScriptFlags, verify_input
from .serialize import hash_hex
from .tx import TxOut, parse_transaction
from .validation import ScriptJob

MIN_JOBS_PER_WORKER = 8  # below this many transactions per worker, verifying in-process is cheaper

WireJob = tuple[bytes, tuple[tuple[int, bytes], ...], tuple[str, ...]]


class ScriptChecker(Protocol):
    """Verifies the scripts of a block's transactions."""

    def check(self, jobs: Sequence[ScriptJob]) -> None:
        """Return when every input of every job verifies; else raise `ConsensusError`."""
        ...


def to_wire(job: ScriptJob) -> WireJob:
    return (job.tx.serialize(), tuple((o.value, o.script_pubkey) for o in job.spent), tuple(sorted(job.flags)))


def verify_jobs(batch: Sequence[WireJob]) -> str | None:
    """Verify a batch; None when all pass, else the first failure's reason (Core's
    `mandatory-script-verify-flag-failed (...)`). Runs in a worker process."""
    for raw, spent_raw, flag_names in batch:
        tx = parse_transaction(raw)
        spent = [TxOut(value, script) for value, script in spent_raw]
        flags = ScriptFlags(0)
        for name in flag_names:
            flags |= ScriptFlags[name]
        precomputed = PrecomputedTx(tx, spent)
        for index in range(len(tx.inputs)):
            try:
                verify_input(tx, index, spent, flags, precomputed)
            except ScriptError as exc:
                return f"mandatory-script-verify-flag-failed ({exc.code}) tx {hash_hex(tx.txid)} input {index}"
    return None


class InlineScriptChecker:
    """Verifies in the calling thread with `verify` (default: the interpreter's `verify_jobs`)."""

    def __init__(self, verify: Callable[[Sequence[WireJob]], str | None] = verify_jobs) -> None:
        self._verify = verify

    def check(self, jobs: Sequence[ScriptJob]) -> None:
        failure = self._verify([to_wire(job) for job in jobs])
        if failure is not None:
            raise ConsensusError(failure)


class ProcessScriptChecker:
    """Verifies in `workers` processes (spawned, so no event loop or database handle is inherited); `close()`
    stops them."""

    def __init__(self, workers: int = 2, verify: Callable[[Sequence[WireJob]], str | None] = verify_jobs) -> None:
        self._workers = max(1, workers)
        self._verify = verify
        self._pool = concurrent.futures.ProcessPoolExecutor(
            self._workers, mp_context=multiprocessing.get_context("spawn"))

    def check(self, jobs: Sequence[ScriptJob]) -> None:
        wire = [to_wire(job) for job in jobs]
        if len(wire) < MIN_JOBS_PER_WORKER * self._workers:
            failure = self._verify(wire)
        else:
            # interleave by input count so the batches carry similar work
            ordered = sorted(wire, key=lambda w: len(w[1]), reverse=True)
            batches = [ordered[i :: self._workers] for i in range(self._workers)]
            results = list(self._pool.map(self._verify, batches))
            failure = next((r for r in results if r is not None), None)
        if failure is not None:
            raise ConsensusError(failure)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
