"""The runner: units run in worker processes, in parallel, with the sandbox's answers and errors; a worker that
dies or hangs costs one unit (WorkerCrashed) and is replaced; closing leaves no process behind.

Slower than a unit test should be (0.3-2 s each): every test starts real worker processes, and each imports
wasmtime (~0.4 s) before its first unit; the timing test runs CPU-bound units on purpose."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time

import pytest
from support import compute_modules as mods

from peerloom.apps.compute.blobs import BadBlob, BlobMissing, BlobStore
from peerloom.apps.compute.runner import ComputeRunner, RunnerClosed, WorkerCrashed
from peerloom.apps.compute.sandbox import Limits, NotWasm, OutOfFuel, Sandbox, Trap

LONG = Limits(fuel=10**15, wall_seconds=30)


@pytest.fixture
def blobs(tmp_path):
    return BlobStore(tmp_path / "blobs", max_size=4 * 1024 * 1024)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_units_run_in_workers_with_the_in_process_answers(blobs):
    signal_hash = blobs.put(mods.SIGNAL_SEARCH.read_bytes())
    hash_hash = blobs.put(mods.HASH_SEARCH.read_bytes())
    chunks = [mods.noisy_tone(n, tone, seed=tone) for n, tone in ((2048, 10), (2048, 200), (131072, 900))]
    local = Sandbox()
    expected = [local.run(local.check(mods.SIGNAL_SEARCH.read_bytes()), c, Limits()) for c in chunks]
    async with ComputeRunner(blobs.directory, workers=2) as runner:
        results = await asyncio.gather(*(runner.run(signal_hash, c, Limits()) for c in chunks))
        hashes = await runner.run(hash_hash, b"8 0 5000\nunit", Limits())
    assert [(r.output, r.fuel) for r in results] == [(e.output, e.fuel) for e in expected]
    assert [int(line.split()[0]) for line in (r.output for r in results)] == [10, 200, 900]
    assert [int(n) for n in hashes.output.split()] == mods.hash_hits(b"unit", 8, 0, 5000)


async def test_errors_cross_the_process_boundary_typed(blobs):
    loop_hash = blobs.put(mods.wasm(mods.INFINITE_LOOP))
    trap_hash = blobs.put(mods.wasm(mods.TRAPS))
    text_hash = blobs.put(b"not wasm at all")
    async with ComputeRunner(blobs.directory, workers=1, max_blob=blobs.max_size) as runner:
        with pytest.raises(OutOfFuel, match="1000000 fuel"):
            await runner.run(loop_hash, b"", Limits(fuel=10**6))
        with pytest.raises(Trap, match="unreachable"):
            await runner.run(trap_hash, b"", Limits())
        with pytest.raises(NotWasm):
            await runner.run(text_hash, b"", Limits())
        with pytest.raises(BlobMissing):
            await runner.run("0" * 64, b"", Limits())
        with pytest.raises(BadBlob, match="input of"):
            await runner.run(trap_hash, bytes(blobs.max_size + 1), Limits())


async def test_two_workers_use_two_cores(blobs):
    """Two CPU-bound units on two workers against one unit: the ratio is printed (run with -s), not asserted,
    since the machine's cores are shared with other work."""
    module = blobs.put(mods.HASH_SEARCH.read_bytes())
    unit = b"12 0 400000\nparallel"
    async with ComputeRunner(blobs.directory, workers=2) as runner:
        await asyncio.gather(runner.run(module, unit, Limits()), runner.run(module, unit, Limits()))  # warm both
        single = double = float("inf")
        for _ in range(3):  # the best of three: the machine's cores are shared
            began = time.perf_counter()
            one = await runner.run(module, unit, Limits())
            single = min(single, time.perf_counter() - began)
            began = time.perf_counter()
            two = await asyncio.gather(runner.run(module, unit, Limits()), runner.run(module, unit, Limits()))
            double = min(double, time.perf_counter() - began)
    assert {(r.output, r.fuel) for r in (one, *two)} == {(one.output, one.fuel)}
    print(f"\none unit {single * 1000:.0f} ms, two units on two workers {double * 1000:.0f} ms: "
          f"{double / single:.2f}x the time of one (1.0 = perfect parallelism, 2.0 = none)")


@pytest.mark.parametrize("signum", [signal.SIGABRT, signal.SIGKILL])  # abort: what a panicking engine does
async def test_a_worker_that_dies_mid_unit_costs_that_unit_and_is_replaced(blobs, signum):
    loop_hash = blobs.put(mods.wasm(mods.INFINITE_LOOP))
    good = blobs.put(mods.HASH_SEARCH.read_bytes())
    async with ComputeRunner(blobs.directory, workers=1) as runner:
        [pid] = runner.worker_pids()
        unit = asyncio.create_task(runner.run(loop_hash, b"", LONG))
        await asyncio.sleep(0.3)  # dead before or after taking the unit: either way that unit is the one lost
        os.kill(pid, signum)
        with pytest.raises(WorkerCrashed, match=f"killed by signal {signum}"):
            await unit
        [new_pid] = runner.worker_pids()
        assert new_pid != pid and not _alive(pid)
        assert (await runner.run(good, b"4 0 50\nstill here", Limits())).output


async def test_a_worker_that_died_while_idle_costs_nothing(blobs):
    good = blobs.put(mods.HASH_SEARCH.read_bytes())
    async with ComputeRunner(blobs.directory, workers=1) as runner:
        [pid] = runner.worker_pids()
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(os.waitid, os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        assert (await runner.run(good, b"4 0 50\nok", Limits())).output
        assert runner.worker_pids() != [pid]


async def test_a_worker_that_stops_answering_is_killed_after_the_grace_period(blobs):
    loop_hash = blobs.put(mods.wasm(mods.INFINITE_LOOP))
    async with ComputeRunner(blobs.directory, workers=1, grace_seconds=1.0) as runner:
        [pid] = runner.worker_pids()
        unit = asyncio.create_task(runner.run(loop_hash, b"", Limits(fuel=10**15, wall_seconds=0.5)))
        await asyncio.sleep(0.2)
        os.kill(pid, signal.SIGSTOP)  # frozen: not even the epoch deadline can stop it now
        with pytest.raises(WorkerCrashed, match=r"did not answer within 1\.5 s"):
            await unit
        assert not _alive(pid) and runner.worker_pids() != [pid]


async def test_a_cancelled_unit_frees_its_core(blobs):
    loop_hash = blobs.put(mods.wasm(mods.INFINITE_LOOP))
    good = blobs.put(mods.HASH_SEARCH.read_bytes())
    async with ComputeRunner(blobs.directory, workers=1) as runner:
        [pid] = runner.worker_pids()
        unit = asyncio.create_task(runner.run(loop_hash, b"", LONG))
        await asyncio.sleep(0.3)
        unit.cancel()
        with pytest.raises(asyncio.CancelledError):
            await unit
        assert not _alive(pid)
        assert (await runner.run(good, b"4 0 50\nok", Limits())).output


async def test_close_leaves_no_process_and_fails_waiting_units(blobs):
    loop_hash = blobs.put(mods.wasm(mods.INFINITE_LOOP))
    runner = ComputeRunner(blobs.directory, workers=2)
    runner.start()
    pids = runner.worker_pids()
    busy = [asyncio.create_task(runner.run(loop_hash, b"", LONG)) for _ in range(2)]
    waiting = asyncio.create_task(runner.run(loop_hash, b"", LONG))
    await asyncio.sleep(0.5)
    await runner.close()
    for task in busy:
        with pytest.raises(RunnerClosed, match="while the unit ran"):
            await task
    with pytest.raises(RunnerClosed):
        await waiting
    with pytest.raises(RunnerClosed):
        await runner.run(loop_hash, b"", LONG)
    assert len(pids) == 2 and not any(_alive(pid) for pid in pids)
    assert multiprocessing.active_children() == []


def test_large_inputs_one_after_another_on_uvloop(blobs):
    """uvloop's add_reader leaves the pipe non-blocking; a later input larger than the pipe's buffer must still be
    sent whole (it failed with EAGAIN, as a crashed worker, on every other unit)."""
    import uvloop

    module = blobs.put(mods.SIGNAL_SEARCH.read_bytes())
    chunk = bytes(4 * 131072)  # 512 KiB of zeros: over the pipe's buffer and over INLINE_SEND

    async def main() -> list[bytes]:
        async with ComputeRunner(blobs.directory, workers=1) as runner:
            return [(await runner.run(module, chunk, Limits())).output for _ in range(3)]

    outputs = uvloop.run(main())
    assert len(set(outputs)) == 1 and outputs[0].startswith(b"1 ")
