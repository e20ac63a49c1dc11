"""Run the daemon: a Node, its managed torrents and the HTTP API, until told to stop (see `runtime` for how
the CLI finds it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from peerloom.api.runtime import RUNTIME_FILE
from peerloom.api.server import allowed_hosts, load_or_create_token, make_app
from peerloom.api.service import Daemon
from peerloom.errors import PeerloomError
from peerloom.files import write_atomically
from peerloom.node import Node, Settings


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PeerloomError(f"cannot serve the API on {host}:{port}: {exc.strerror}") from exc
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def run_daemon(
    home: Path,
    *,
    api_host: str,
    api_port: int,
    port: int,
    listen: str,
    settings: Settings,
    save_dir: Path,
    share_roots: Sequence[Path] = (),
    stop: asyncio.Event,
    ready: Callable[[dict[str, Any], str], None],
) -> None:
    """Serve until `stop` is set; `ready(runtime, token)` is called once everything listens. The API may save
    downloads under `save_dir` only, and share paths under it or under `share_roots`."""
    save_dir.mkdir(parents=True, exist_ok=True)
    async with Node(home, port=port, host=listen, settings=settings) as node:
        daemon = Daemon(node, save_dir, share_roots)
        runner: web.AppRunner | None = None
        try:
            await daemon.start()
            token = load_or_create_token(home)
            sock = _bind(api_host, api_port)
            bound = sock.getsockname()[1]
            app = make_app(daemon, token, allowed_hosts(api_host, bound))
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            runtime = {
                "pid": os.getpid(),
                "api": f"http://{_url_host(api_host)}:{bound}",
                "port": node.port,
                "secure_port": node.secure_port,
                "secure_addrs": [str(a) for a in node.secure_addrs],
                "dht_port": node.dht.port if node.dht is not None else None,
            }
            write_atomically(home / RUNTIME_FILE, json.dumps(runtime).encode())
            ready(runtime, token)
            await stop.wait()
        finally:
            with contextlib.suppress(FileNotFoundError):
                (home / RUNTIME_FILE).unlink()
            if runner is not None:
                daemon.end_streams()  # open WebSockets end now instead of holding the shutdown for a minute
                await runner.cleanup()
            await daemon.stop()
