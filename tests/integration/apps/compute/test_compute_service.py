"""The compute service between nodes in one process on loopback: hostile modules fail unit by unit with their own
error and leave the volunteers working; a volunteer answering garbage, an oversized result or the wrong message is
dropped and its units go to others; blobs a volunteer fetches are verified; credit reaches the volunteer; a cancelled
job sends no more units, ignores late replies and stays cancelled across a restart."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from support.compute_modules import (
    CREATED_NAME,
    GROW_TO_4GIB,
    INFINITE_LOOP,
    NO_START,
    OPEN_PATHS,
    SIGNAL_SEARCH,
    noisy_tone,
    signal_peak,
    wasm,
)
from support.swarm import fast_settings

from peerloom.apps.compute.blobs import blob_hash
from peerloom.apps.compute.link import read_message
from peerloom.apps.compute.sandbox import Limits, UnitResult
from peerloom.apps.compute.service import ComputeService, VolunteerConfig
from peerloom.apps.compute.wire import (
    PROTOCOL,
    Blob,
    Capacity,
    QueryCapacity,
    RunUnit,
    UnitDone,
    encode,
)
from peerloom.identity import PeerId
from peerloom.net.stream import Stream
from peerloom.node import Node
from peerloom.service import NodeContext

pytestmark = pytest.mark.timeout(90)
LIMITS = Limits(fuel=50_000_000, memory_bytes=64 * 1024 * 1024, wall_seconds=20.0, max_output=4096)


def compute(node: Node) -> ComputeService:
    assert node.compute is not None
    return node.compute


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[Node, list[Node]]]:
    """A submitter and two volunteers (one worker process each)."""
    volunteers = [Node(tmp_path / f"v{i}", host="127.0.0.1", settings=fast_settings(
        pubsub=False, compute_volunteer=True, compute_cores=1)) for i in range(2)]
    submitter = Node(tmp_path / "s", host="127.0.0.1", settings=fast_settings(pubsub=False))
    started = []
    try:
        for node in (*volunteers, submitter):
            await node.start()
            started.append(node)
        yield submitter, volunteers
    finally:
        for node in reversed(started):
            await node.stop()


async def test_hostile_modules_each_fail_with_their_own_error_and_the_volunteers_go_on(nodes, tmp_path):
    submitter, volunteers = nodes
    hostile = {
        "loop": (wasm(INFINITE_LOOP), "OutOfFuel: the unit used all of its"),
        "alloc": (wasm(GROW_TO_4GIB), "MemoryLimit: "),
        "passwd": (wasm(OPEN_PATHS), "NonZeroExit: the module exited with status 108"),  # 100 + EBADF
        "not-wasm": (b"#!/bin/sh\nrm -rf /\n", "NotWasm: the module is not a WebAssembly binary"),
        "exports": (wasm(NO_START), "WrongExports: the module exports no _start() function"),
    }
    jobs = {name: await compute(submitter).submit(module, [b"input"], quorum=2, limits=LIMITS)
            for name, (module, _) in hostile.items()}
    for volunteer in volunteers:
        await compute(submitter).add_volunteer(volunteer.secure_addrs[0])
    for name, job in jobs.items():
        (outcome,) = await asyncio.wait_for(job.wait(), 60)
        assert outcome.output is None and outcome.error is not None
        assert outcome.error.startswith(hostile[name][1]), (name, outcome.error)
    # the error is what both volunteers agreed on: nobody lost a vote or was flagged over a hostile module
    assert all(v["losses"] == 0 and not v["flagged"] for v in compute(submitter).volunteers())
    for volunteer in volunteers:
        assert not any(CREATED_NAME in files for _, _, files in os.walk(volunteer.home))
    # the volunteers still run honest work
    chunks = [noisy_tone(256, 30 + i, seed=i) for i in range(4)]
    job = await compute(submitter).submit(SIGNAL_SEARCH.read_bytes(), chunks, quorum=2, limits=LIMITS)
    outcomes = await asyncio.wait_for(job.wait(), 60)
    for chunk, outcome in zip(chunks, outcomes, strict=True):
        assert outcome.output is not None and int(outcome.output.split()[0]) == signal_peak(chunk)[0]


class FakeVolunteer:
    """A node's compute service that offers a slot, then answers every unit with `answer(unit)` (raw bytes)."""

    name = "compute"
    protocols = (PROTOCOL,)

    def __init__(self, answer: Callable[[RunUnit], bytes]) -> None:
        self.answer = answer
        self.units = 0

    async def start(self, ctx: NodeContext) -> None: ...

    async def stop(self) -> None: ...

    def admits(self, peer: PeerId, protocol: str) -> bool:
        return True

    async def handle(self, stream: Stream, protocol: str) -> None:
        request = await read_message(stream, 1 << 20)
        if isinstance(request, QueryCapacity):
            await stream.write(encode(Capacity(1, 1 << 30, 3600, True)))
        elif isinstance(request, RunUnit):
            self.units += 1
            await stream.write(self.answer(request))
        await stream.close()


BAD_ANSWERS = {
    "garbage": lambda unit: bytes([200, 1]) + os.urandom(200),
    "oversized": lambda unit: encode(UnitDone(b"x" * (LIMITS.max_output * 4), 1, 1)),
    "just-over-the-cap": lambda unit: encode(UnitDone(b"x" * (LIMITS.max_output + 1), 1, 1)),
    "wrong-message": lambda unit: encode(Blob(b"not an answer")),
}


@pytest.mark.parametrize("kind", sorted(BAD_ANSWERS))
async def test_a_volunteer_sending_garbage_or_oversized_results_is_dropped(nodes, tmp_path, kind):
    submitter, volunteers = nodes
    fake = FakeVolunteer(BAD_ANSWERS[kind])
    bad = Node(tmp_path / "bad", host="127.0.0.1", settings=fast_settings(pubsub=False, compute=False),
               services=[fake])
    async with bad:
        chunks = [noisy_tone(256, 40 + i, seed=i) for i in range(6)]
        job = await compute(submitter).submit(SIGNAL_SEARCH.read_bytes(), chunks, quorum=1, limits=LIMITS)
        await compute(submitter).add_volunteer(bad.secure_addrs[0])
        await until(lambda: fake.units > 0)
        await compute(submitter).add_volunteer(volunteers[0].secure_addrs[0])
        outcomes = await asyncio.wait_for(job.wait(), 60)
        assert all(o.output is not None for o in outcomes)
        assert [int(o.output.split()[0]) for o in outcomes] == [signal_peak(c)[0] for c in chunks]  # type: ignore[union-attr]
        rows = {v["peer_id"]: v for v in compute(submitter).volunteers()}
        assert rows[str(bad.identity.peer_id)]["flagged"]
        assert fake.units == 1  # dropped at its first bad answer: no more work
        await until(lambda: bad.identity.peer_id not in submitter.secure_host.connections)


async def test_a_volunteer_refuses_a_submitter_it_does_not_allow(tmp_path):
    allowed = PeerId.from_string("12D3KooWQpeYr8PWiR1K9CTLEruT2JPMNXyN8rHMJUJamh9A67Db")
    service = ComputeService(volunteer=VolunteerConfig(cores=1, submitters=frozenset({allowed})))
    volunteer = Node(tmp_path / "v", host="127.0.0.1", settings=fast_settings(pubsub=False, compute=False),
                     services=[service])
    submitter = Node(tmp_path / "s", host="127.0.0.1", settings=fast_settings(pubsub=False))
    async with volunteer, submitter:
        await compute(submitter).submit(b"\0asm\x01\0\0\0", [b"x"], quorum=1)
        with pytest.raises(Exception, match="does not take work"):
            await compute(submitter).add_volunteer(volunteer.secure_addrs[0])


async def test_credit_reaches_the_volunteers_and_blobs_are_fetched_once_and_verified(nodes):
    submitter, volunteers = nodes
    module = SIGNAL_SEARCH.read_bytes()
    chunks = [noisy_tone(256, 50 + i, seed=i) for i in range(5)]
    chunks.append(noisy_tone(32768, 77, seed=99))  # over the inline bound: fetched by hash
    job = await compute(submitter).submit(module, chunks, quorum=2, limits=LIMITS)
    for volunteer in volunteers:
        await compute(submitter).add_volunteer(volunteer.secure_addrs[0])
    outcomes = await asyncio.wait_for(job.wait(), 60)
    assert int(outcomes[-1].output.split()[0]) == 77  # type: ignore[union-attr]
    me = str(submitter.identity.peer_id)
    for volunteer in volunteers:
        blobs = compute(volunteer).submitter.blobs
        assert blobs.has(blob_hash(module)) and blobs.has(blob_hash(chunks[-1]))

        def credited(v: Node = volunteer) -> dict:
            return compute(v).status()["volunteer"]["credit"].get(me, {"units": 0})

        # credit rides on later units, and the rest comes in one message at the job's end
        await until(lambda: credited()["units"] == len(chunks))
        assert credited()["fuel"] == sum(o.fuel or 0 for o in outcomes)


class GatedRunner:
    """A volunteer's runner whose units wait at a gate: a test holds them in flight, then lets them finish."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = 0
        self.finished = 0

    async def run(self, module_hash: str, stdin: bytes, limits: Limits) -> UnitResult:
        self.started += 1
        await self.gate.wait()
        self.finished += 1
        return UnitResult(b"ran " + stdin, 1, 0.0)


async def test_a_cancelled_job_sends_no_more_units_ignores_late_replies_and_stays_cancelled(tmp_path):
    runner = GatedRunner()
    volunteer = Node(tmp_path / "v", host="127.0.0.1", settings=fast_settings(pubsub=False, compute=False),
                     services=[ComputeService(volunteer=VolunteerConfig(cores=2), runner=runner)])
    home = tmp_path / "s"
    async with volunteer:
        async with Node(home, host="127.0.0.1", settings=fast_settings(pubsub=False)) as submitter:
            job = await compute(submitter).submit(SIGNAL_SEARCH.read_bytes(), [b"%d" % i for i in range(6)], 1,
                                                  limits=LIMITS)
            await compute(submitter).add_volunteer(volunteer.secure_addrs[0])
            await until(lambda: runner.started == 2)  # both slots taken
            assert job.cancel() and job.finished.is_set() and job.cancelled
            assert not job.cancel()  # once is enough
            runner.gate.set()
            await until(lambda: runner.finished == 2)
            await asyncio.sleep(0.3)  # the late replies arrive and are ignored
            assert job.to_json()["cancelled"] and job.progress()["validated"] == 0
            assert all(o.output is None and o.error is None for o in await job.wait())
            assert runner.started == 2
        async with Node(home, host="127.0.0.1", settings=fast_settings(pubsub=False)) as submitter:
            again = compute(submitter).job(job.id)
            assert again.cancelled and again.finished.is_set() and not again.cancel()
            await compute(submitter).add_volunteer(volunteer.secure_addrs[0])
            await asyncio.sleep(0.3)
            assert runner.started == 2  # nothing of it was sent out again
