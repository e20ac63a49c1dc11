"""Running the `peerloom` command in a child process from an async test."""

from __future__ import annotations

import asyncio
import sys


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
