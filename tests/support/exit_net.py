"""Helpers for exit tests: two nodes on loopback (an exit and its client), an HTTP server with a known body, and a
minimal SOCKS5 client speaking RFC 1928 byte by byte (so a test sees the exact reply code)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import signal
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from support.swarm import fast_settings

from peerloom.apps.exit.policy import ExitPolicy
from peerloom.apps.exit.socks_server import SocksServer
from peerloom.apps.exit.store import ExitStore
from peerloom.node import Node
from peerloom.state import State

BODY_SIZE = 3 * 1024 * 1024 + 4321


def body() -> bytes:
    return random.Random(18).randbytes(BODY_SIZE)


@contextlib.asynccontextmanager
async def http_server(host: str = "127.0.0.1", data: bytes | None = None) -> AsyncIterator[int]:
    """An HTTP server on `host` whose GET /data answers `data` (default: `body()`); yields its port."""
    payload = body() if data is None else data

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=payload, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/data", get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def exit_pair(root: Path, *, allow: bool = True, allow_private: bool = True, ports: tuple[int, ...] = (),
                    rate: int = 0) -> AsyncIterator[tuple[Node, Node, SocksServer]]:
    """An exit node and a client node on loopback, connected; the client runs a SOCKS server through the exit.
    The exit allows the client's key when `allow`."""
    settings = dict(pubsub=False, mdns=False, utp=False)
    async with (Node(root / "exit", host="127.0.0.1", settings=fast_settings(**settings)) as exit_node,
                Node(root / "client", host="127.0.0.1", settings=fast_settings(**settings)) as client):
        peers = [client.secure_host.peer_id] if allow else []
        exit_node.exit.set_policy(ExitPolicy.build(peers, ports, allow_private=allow_private, rate=rate))
        await client.secure_host.connect(exit_node.secure_addrs[0])
        socks = SocksServer(client.exit, exit_node.secure_host.peer_id)
        await socks.start("127.0.0.1", 0)
        try:
            yield exit_node, client, socks
        finally:
            await socks.close()


async def socks_connect(port: int, host: str, dest_port: int) -> tuple[int, asyncio.StreamReader,
                                                                        asyncio.StreamWriter]:
    """Greet the SOCKS server on 127.0.0.1:`port` and ask for CONNECT to host:dest_port (a name goes as ATYP 3);
    the reply code and the open connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    try:
        ip = ipaddress.ip_address(host)
        address = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
    except ValueError:
        address = b"\x03" + bytes((len(host),)) + host.encode()
    writer.write(b"\x05\x01\x00" + address + struct.pack(">H", dest_port))
    head = await reader.readexactly(4)
    assert head[0] == 5 and head[2] == 0
    await reader.readexactly({1: 4, 4: 16}[head[3]] + 2)
    return head[1], reader, writer


async def socks_get(port: int, host: str, dest_port: int) -> tuple[int, bytes]:
    """HTTP/1.0 GET /data through the SOCKS server: the reply code and the response body (b"" when refused)."""
    code, reader, writer = await socks_connect(port, host, dest_port)
    try:
        if code != 0:
            return code, b""
        writer.write(f"GET /data HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        response = await reader.read(-1)
        head, _, payload = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head[:200]
        return code, payload
    finally:
        writer.close()


async def settled(*nodes: Node, timeout: float = 10.0) -> None:
    """Until no exit connection is under way on `nodes` (each side counts a connection once its splice ended,
    which may be a moment after the client saw the end of the data)."""
    async with asyncio.timeout(timeout):
        while any(n.exit.status()["active_count"] for n in nodes):
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def long_command(*argv: str) -> AsyncIterator[dict[str, Any]]:
    """A long-running command (`peerloom connect share|socks --json`): its first JSON line on stdout; SIGINT by its
    PID at the end, which must make it exit 0 (killed if it lingers)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line:
            raise AssertionError((await proc.stderr.read()).decode()[-2000:])
        yield json.loads(line)
        os.kill(proc.pid, signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 20)
        assert proc.returncode == 0, (await proc.stderr.read()).decode()[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def recorded_traffic(home: Path) -> dict[str, dict[str, dict[str, int]]]:
    """role -> peer -> counts, as the state database of a node's home (not running) has them."""
    state = State(home / "state.sqlite")
    try:
        return {role: {peer: t.as_json() for peer, t in peers.items()}
                for role, peers in ExitStore(state).totals().items()}
    finally:
        state.close()
