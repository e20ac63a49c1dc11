"""`peerloom demo`: a seeder and leechers as separate processes; the leechers, given the magnet link alone, find the
swarm through the nodes' own loopback DHT and every copy verifies. A leecher that fails or gets stuck ends the demo
with a line naming it and saying why."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

DEMO = [sys.executable, "-m", "peerloom", "demo"]
ENV = {**os.environ, "COLUMNS": "200"}
T = TypeVar("T")


def test_demo_leechers_find_the_swarm_through_the_dht(tmp_path: Path) -> None:
    result = subprocess.run(
        [*DEMO, "--size", "1M", "--leechers", "2", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=ENV,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loopback DHT" in result.stderr
    rows = re.findall(r"leecher (\d) .*? yes .*? ([\d.]+) s", result.stdout)
    assert sorted(n for n, _ in rows) == ["1", "2"], result.stdout
    assert all(float(seconds) < 30 for _, seconds in rows)
    assert re.search(r"swarm throughput: .* = [\d.]+ [KMG]iB/s$", result.stdout, re.M), result.stdout


def wait_for(demo: subprocess.Popen[str], find: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and demo.poll() is None:
        found = find()
        if found:
            return found
        time.sleep(0.005)
    raise AssertionError(f"no {what} while the demo ran")


def demo_dir(parent: Path) -> Path | None:
    """The demo's working folder once its seed file is being made (the leechers start only after the seeder)."""
    return next((d for d in parent.glob("peerloom-demo-*") if (d / "seed").exists()), None)


def finish(demo: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    try:
        _, stderr = demo.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        demo.kill()  # by its PID
        demo.communicate()
        raise AssertionError(f"the demo did not end within {timeout} s") from None
    return demo.returncode, stderr


def test_a_leecher_that_fails_ends_the_demo_with_its_reason(tmp_path: Path) -> None:
    demo = subprocess.Popen([*DEMO, "--size", "2M", "--leechers", "2", "--dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        root = wait_for(demo, lambda: demo_dir(tmp_path), "demo folder")
        with open(root / "leecher-1", "x") as in_the_way:  # a file where leecher 1 saves: it cannot write its copy
            in_the_way.write("not a folder")
    finally:
        code, stderr = finish(demo, 90)
    assert code == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: leecher 1 .*leecher-1.*(File exists|Not a directory).*", last), stderr[-2000:]
    assert "Traceback" not in stderr


def child_pids(parent: int) -> list[int]:
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            if re.search(rf"^PPid:\s+{parent}$", status.read_text(), re.M):
                pids.append(int(status.parent.name))
    return pids


def leecher_pid(demo: int, n: int) -> int | None:
    for pid in child_pids(demo):
        with contextlib.suppress(OSError):
            if f"leecher-{n}" in Path(f"/proc/{pid}/cmdline").read_text():
                return pid
    return None


def test_a_stuck_leecher_ends_the_demo_with_its_name(tmp_path: Path) -> None:
    demo = subprocess.Popen([*DEMO, "--size", "64M", "--leechers", "2", "--dir", str(tmp_path), "--stall-timeout", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    stuck = None
    try:
        stuck = wait_for(demo, lambda: leecher_pid(demo.pid, 2), "leecher 2")
        os.kill(stuck, signal.SIGSTOP)  # frozen as by a hung disk or a full pipe: it neither works nor exits
    finally:
        code, stderr = finish(demo, 90)
        if stuck is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stuck, signal.SIGCONT)
    assert code == 1, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: leecher 2 made no progress for 5 s .*", last), stderr[-2000:]
    assert not Path(f"/proc/{stuck}").exists()  # the demo stopped it (SIGTERM, and SIGCONT to let it act on it)
