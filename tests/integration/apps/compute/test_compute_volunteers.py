"""Volunteer computing between separate processes on loopback: volunteer nodes (tests/support/compute_volunteer.py)
and a submitter run by the CLI (`peerloom compute submit`). A 200-unit signal search gives what a local run of the
same module gives; a lying volunteer is outvoted on every unit it took, flagged, and gets no more work; two volunteers
killed mid-job do not stop the job; a submitter SIGKILLed half-way resumes without recomputing validated units."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.compute_modules import SIGNAL_SEARCH, noisy_tone
from support.compute_volunteer import VolunteerProcess, query

from peerloom.apps.compute.sandbox import Limits, Sandbox
from peerloom.apps.compute.scheduler import SchedulerParams

pytestmark = pytest.mark.timeout(120)
UNITS = 200
SAMPLES = 1024


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("inputs")
    paths = []
    for i in range(UNITS):
        path = folder / f"chunk-{i:03d}.f32"
        path.write_bytes(noisy_tone(SAMPLES, 20 + i % 400, seed=i))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def expected(inputs: list[Path]) -> dict[str, bytes]:
    """A local run of the module over every input: what the volunteers' validated results must equal."""
    sandbox = Sandbox()
    module = sandbox.check(SIGNAL_SEARCH.read_bytes())
    return {path.name: sandbox.run(module, path.read_bytes(), Limits()).output for path in inputs}


@pytest.fixture(scope="module")
def volunteers(tmp_path_factory: pytest.TempPathFactory):
    """Six honest volunteers and a liar, one task slot each, started together (they start in parallel)."""
    root = tmp_path_factory.mktemp("volunteers")
    procs = [VolunteerProcess(root / f"v{i}") for i in range(6)] + [VolunteerProcess(root / "liar", lie=True)]
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.wait_ready()
        yield procs
    finally:
        for proc in procs:
            proc.terminate()  # all at once: they stop in parallel
        for proc in procs:
            proc.stop()


def submit(home: Path, out: Path, inputs: list[Path], peers: list[VolunteerProcess], *extra: str
           ) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "peerloom", "compute", "submit", str(SIGNAL_SEARCH), *map(str, inputs), "-o",
            str(out), "--home", str(home), "--listen", "127.0.0.1", "--no-daemon", "--json", *extra]
    for peer in peers:
        args += ["--peer", peer.addr]
    log = open(home.parent / f"{home.name}-submit.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    log.close()
    return proc


def finish(proc: subprocess.Popen[bytes], timeout: float = 90.0) -> bytes:
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stdout
    return stdout


def results(out: Path) -> dict[str, bytes]:
    return {path.name.removesuffix(".out"): path.read_bytes() for path in out.glob("*.out")}


def validated(home: Path) -> int:
    return query(home, "SELECT COUNT(*) FROM compute_units WHERE state = 'validated'")[0][0] if \
        query(home, "SELECT 1 FROM compute_units LIMIT 1") else 0


def wait_until_validated(home: Path, at_least: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while (done := validated(home)) < at_least:
        assert proc.poll() is None, "the submitter ended early"
        assert time.monotonic() < deadline, f"only {done} units validated"
        time.sleep(0.02)
    return done


def test_a_200_unit_signal_search_on_six_volunteers_equals_a_local_run(tmp_path, inputs, expected, volunteers):
    honest = volunteers[:6]
    out = tmp_path / "out"
    finish(submit(tmp_path / "submitter", out, inputs, honest))
    assert results(out) == expected
    assert not list(out.glob("*.err"))
    ran = [len(v.tasks()) for v in honest]
    assert sum(ran) >= 2 * UNITS  # every unit by two volunteers (at least)
    assert sum(1 for n in ran if n) >= 4  # the work was spread
    credit = query(tmp_path / "submitter", "SELECT SUM(credit) FROM compute_volunteers")[0][0]
    assert credit > 0


def test_a_lying_volunteer_is_outvoted_on_every_unit_it_took_and_gets_no_more_work(tmp_path, inputs, expected,
                                                                                   volunteers):
    liar = volunteers[6]
    home, out = tmp_path / "submitter", tmp_path / "out"
    finish(submit(home, out, inputs, [liar, *volunteers[:3]]))
    assert results(out) == expected  # no lie made it into a result
    rows = query(home, "SELECT peer, wins, losses, flagged, reputation FROM compute_volunteers")
    by_peer = {row[0]: row[1:] for row in rows}
    wins, losses, flagged, reputation = by_peer[liar.peer_id]
    took = {row[2] for row in liar.tasks() if row[5] == "done"}
    assert took and losses == len(took) and wins == 0  # outvoted on every unit it took
    assert flagged == 1 and reputation < 0.3
    # flagged after its second lost vote; before the first votes, at most `max_unjudged` replies and one replica
    assert len(took) <= SchedulerParams().max_unjudged + 1
    assert all(by_peer[v.peer_id][2] == 0 for v in volunteers[:3])  # none of the honest ones is flagged
    # a second job from the same submitter: the flagged volunteer gets none of it
    before = len(liar.tasks())
    finish(submit(home, tmp_path / "out2", inputs[:20], [liar, *volunteers[:3]], "--quorum", "1"))
    assert len(liar.tasks()) == before


def test_two_volunteers_killed_mid_job_and_the_job_completes(tmp_path, inputs, expected, volunteers):
    victims = [VolunteerProcess(tmp_path / f"victim{i}") for i in range(2)]
    try:
        for victim in victims:
            victim.start()
        for victim in victims:
            victim.wait_ready()
        home, out = tmp_path / "submitter", tmp_path / "out"
        proc = submit(home, out, inputs, [*victims, *volunteers[:2]])
        wait_until_validated(home, UNITS // 5, proc)
        deadline = time.monotonic() + 30
        while not all(victim.tasks() for victim in victims):  # both took part (their workers start first)
            assert proc.poll() is None and time.monotonic() < deadline, "a victim never ran a unit"
            time.sleep(0.02)
        for victim in victims:
            victim.kill()
        at_kill = validated(home)
        assert at_kill < UNITS, "the job ended before the volunteers were killed"
        finish(proc)
        assert results(out) == expected
        rows = dict(query(home, "SELECT peer, failures FROM compute_volunteers"))
        assert sum(rows[victim.peer_id] for victim in victims) >= 1  # replicas in flight were lost and reassigned
    finally:
        for victim in victims:
            victim.stop()


def test_a_submitter_killed_half_way_resumes_without_recomputing_validated_units(tmp_path, inputs, expected,
                                                                                 volunteers):
    honest = volunteers[:6]
    home, out = tmp_path / "submitter", tmp_path / "out"
    proc = submit(home, out, inputs, honest)
    wait_until_validated(home, UNITS // 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    kept = {row[0] for row in query(home, "SELECT idx FROM compute_units WHERE state = 'validated'")}
    assert UNITS // 2 <= len(kept) < UNITS
    job = query(home, "SELECT id FROM compute_jobs")[0][0]
    restarted_at = time.time()
    finish(submit(home, out, inputs, honest))
    assert results(out) == expected
    # no volunteer ran a unit validated before the kill again, after the restart
    rerun = {row[2] for v in honest for row in v.tasks() if row[1] == job and row[6] > restarted_at}
    assert rerun and not (rerun & kept)
    assert query(home, "SELECT COUNT(*) FROM compute_jobs")[0][0] == 1  # the same job, resumed
