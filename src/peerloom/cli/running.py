"""Running a node, or any asyncio work, from a command: the event loop and its signals, the node's home and
settings. The node's modules load only here, when a command runs one, not for `--help` or `create`."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from peerloom.cli.common import UserError, parse_bootstrap

if TYPE_CHECKING:
    from peerloom.node import Settings


def run(main: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Run `main(stop)` on uvloop when available; SIGINT/SIGTERM set `stop` for a clean shutdown."""
    gc.freeze()  # what the imports made lives as long as the process: keep it out of every full collection

    async def wrapper() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    try:
        import uvloop
    except ImportError:
        return asyncio.run(wrapper())
    return uvloop.run(wrapper())


async def sleep_or_stop(stop: asyncio.Event, seconds: float, *also: asyncio.Event) -> None:
    """Sleep `seconds`, or less if `stop` (or one of the events `also`) is set meanwhile."""
    waits = [asyncio.ensure_future(e.wait()) for e in (stop, *also)]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def home_or_default(home: Path | None) -> Path:
    """The home a command was given, or the default one (PEERLOOM_HOME, else the user's data folder)."""
    from peerloom.node import default_home

    return home if home is not None else default_home()


def node_settings(
    *, no_dht: bool = False, no_lsd: bool = False, bootstrap: list[str] | None = None, public_bootstrap: bool = True,
    dht_port: int = 0, no_mdns: bool = False, encryption: str = "prefer", transport: str = "tcp",
) -> Settings:
    """The node's settings from the discovery options shared by `share`, `get` and `daemon`."""
    from peerloom.node import Settings

    if transport not in ("tcp", "utp"):
        raise UserError(f"--transport is tcp or utp, not {transport!r}")
    return Settings(dht=not no_dht, lsd=not no_lsd, bootstrap=parse_bootstrap(bootstrap),
                    public_bootstrap=public_bootstrap, dht_port=dht_port, mdns=not no_mdns, encryption=encryption,
                    utp_first=transport == "utp")
