"""`peerloom compute` from the command line: mistakes are one line and a non-zero exit; a job run with `submit`
shows up in `jobs`, `volunteers` and `status` of the same home (--json), and its results are files named after the
inputs; a unit that fails is written as NAME.err and makes the command exit 1; `daemon --volunteer` opts the daemon in
with the limits `compute volunteer` takes."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import peerloom
from support.compute_modules import NO_START, SIGNAL_SEARCH, noisy_tone, signal_peak, wasm
from support.compute_volunteer import VolunteerProcess
from support.daemon import DaemonProcess

pytestmark = pytest.mark.timeout(120)


async def test_usage_mistakes_are_one_line(tmp_path: Path) -> None:
    code, _, err = await peerloom("compute", "submit", str(tmp_path / "none.wasm"), "x", "-o", str(tmp_path / "o"),
                                  "--home", str(tmp_path / "h"))
    assert code == 2 and err.strip().count("\n") == 0 and "No such file" in err
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "same.bin").write_bytes(b"x")
    code, _, err = await peerloom("compute", "submit", str(SIGNAL_SEARCH), str(tmp_path / "a" / "same.bin"),
                                  str(tmp_path / "b" / "same.bin"), "-o", str(tmp_path / "o"), "--home",
                                  str(tmp_path / "h"))
    assert code == 2 and "two inputs give the result name" in err
    code, _, err = await peerloom("compute", "volunteer", "--allow", "not-a-peer-id", "--home", str(tmp_path / "h"))
    assert code == 2 and "not a PeerId" in err
    code, _, err = await peerloom("compute", "cancel", "nope", "--home", str(tmp_path / "h"))
    assert code == 2 and "not a job id" in err
    code, _, err = await peerloom("compute", "cancel", "00" * 16, "--home", str(tmp_path / "h"), "--no-daemon")
    assert code == 1 and err.strip().count("\n") == 0 and "no job" in err


async def test_submit_then_jobs_volunteers_and_status(tmp_path: Path) -> None:
    volunteer = VolunteerProcess(tmp_path / "v")
    volunteer.start()
    try:
        volunteer.wait_ready()
        chunks = []
        for i in range(3):
            path = tmp_path / f"chunk {i}.f32"  # a space: result names are made safe
            path.write_bytes(noisy_tone(256, 40 + i, seed=i))
            chunks.append(path)
        home, out = tmp_path / "s", tmp_path / "out"
        code, stdout, err = await peerloom("compute", "submit", str(SIGNAL_SEARCH), *map(str, chunks), "-o", str(out),
                                           "--quorum", "1", "--peer", volunteer.addr, "--home", str(home),
                                           "--listen", "127.0.0.1", "--no-daemon", "--json", timeout=60)
        assert code == 0, err
        summary = json.loads(stdout)
        assert summary["validated"] == 3 and [r["file"] for r in summary["results"]] == [
            "chunk_0.f32.out", "chunk_1.f32.out", "chunk_2.f32.out"]
        for i, chunk in enumerate(chunks):
            assert int((out / f"chunk_{i}.f32.out").read_text().split()[0]) == signal_peak(chunk.read_bytes())[0]
        code, stdout, _ = await peerloom("compute", "jobs", "--json", "--home", str(home), "--no-daemon")
        (job,) = json.loads(stdout)["jobs"]
        assert code == 0 and job["id"] == summary["id"] and job["finished"] and job["validated"] == 3
        code, stdout, _ = await peerloom("compute", "volunteers", "--json", "--home", str(home), "--no-daemon")
        (row,) = json.loads(stdout)["volunteers"]
        assert row["peer_id"] == volunteer.peer_id and row["wins"] == 3
        code, stdout, _ = await peerloom("compute", "status", "--home", str(home), "--no-daemon")
        assert code == 0 and "jobs: 1 (0 running)" in stdout

        bad = tmp_path / "bad.wasm"
        bad.write_bytes(wasm(NO_START))
        code, _, err = await peerloom("compute", "submit", str(bad), str(chunks[0]), "-o", str(tmp_path / "out2"),
                                      "--quorum", "1", "--peer", volunteer.addr, "--home", str(home),
                                      "--listen", "127.0.0.1", "--no-daemon", timeout=60)
        assert code == 1 and "1 of 1 units failed" in err
        assert "WrongExports" in (tmp_path / "out2" / "chunk_0.f32.err").read_text()
    finally:
        volunteer.stop()


def test_the_command_group_is_listed() -> None:
    run = subprocess.run([sys.executable, "-m", "peerloom", "compute", "--help"], capture_output=True, text=True,
                         check=True)
    for command in ("submit", "volunteer", "status", "jobs", "volunteers", "cancel"):
        assert command in run.stdout


async def test_the_daemon_volunteers_with_the_limits_it_is_given(tmp_path: Path) -> None:
    code, _, err = await peerloom("daemon", "--home", str(tmp_path / "h"), "--cores", "2")
    assert code == 2 and err.strip().count("\n") == 0 and "add --volunteer" in err
    code, _, err = await peerloom("daemon", "--home", str(tmp_path / "h"), "--volunteer", "--allow", "nope")
    assert code == 2 and "not a PeerId" in err
    daemon = await DaemonProcess(tmp_path / "d", tmp_path / "dl", "--volunteer", "--cores", "1", "--memory", "64M",
                                 "--cpu-hours", "2").start()
    try:
        status = await daemon.ok("GET", "/api/v1/compute/status")
        assert status["volunteering"] is True
        offer = status["volunteer"]
        assert (offer["slots"], offer["memory_bytes"], offer["cpu_hours"]) == (1, 64 * 1024 * 1024, 2.0)
        # no volunteer takes it (a node does not run its own units): it runs until cancelled through the daemon
        job = await daemon.ok("POST", "/api/v1/compute/jobs", {
            "module_b64": base64.b64encode(SIGNAL_SEARCH.read_bytes()).decode(), "quorum": 2,
            "inputs": [{"name": "c0", "data_b64": base64.b64encode(noisy_tone(256, 30, seed=0)).decode()}]})
        code, stdout, err = await peerloom("compute", "cancel", job["id"], "--json", "--home", str(tmp_path / "d"))
        assert code == 0, err
        assert json.loads(stdout)["cancelled"]
        assert (await daemon.ok("GET", f"/api/v1/compute/jobs/{job['id']}"))["cancelled"]
    finally:
        assert daemon.stop() == 0
    plain = await DaemonProcess(tmp_path / "p", tmp_path / "dl2").start()
    try:
        assert (await plain.ok("GET", "/api/v1/compute/status"))["volunteering"] is False
    finally:
        assert plain.stop() == 0
