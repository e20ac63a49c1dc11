"""Helpers for document tests: quick nodes on loopback, linking them, waiting for a condition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from support.swarm import fast_settings

from peerloom.node import Node


def make_node(tmp: Path, name: str) -> Node:
    return Node(tmp / name, host="127.0.0.1", settings=fast_settings(pubsub=False))


async def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def link(a: Node, b: Node) -> None:
    """Connect a to b (as `--peer` does); their document streams open once identify has run."""
    await a.secure_host.connect(b.secure_addrs[0])
