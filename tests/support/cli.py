"""Running the `peerloom` command in a child process from an async test."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any


async def peerloom(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    """`python -m peerloom ARGS`: its exit code, stdout and stderr; killed (and the test failed) after `timeout`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peerloom", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


def listening_event(proc: subprocess.Popen[str]) -> dict[str, Any] | None:
    """The `listening` event a `--status-lines` node prints on stdout (None if it exits first)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{") and json.loads(line).get("event") == "listening":
            return json.loads(line)
    return None
