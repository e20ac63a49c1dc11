"""A small real HTTP tracker for tests, on 127.0.0.1 or ::1 (aiohttp.web), keeping swarms in memory. Its peers go out
compact, IPv4 ones in `peers` (BEP 23) and IPv6 ones in `peers6` (BEP 7)."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from peerloom.codec.bencode import encode


class HttpTracker:
    def __init__(self, interval: int = 1, host: str = "127.0.0.1") -> None:
        self.interval = interval
        self.host = host
        self.peers6_sent = 0  # IPv6 peers handed out in `peers6`
        self.swarms: dict[bytes, dict[tuple[str, int], bool]] = {}
        self.events: list[str] = []
        self.completed: dict[bytes, int] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def announce_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/announce"

    async def _announce(self, request: web.Request) -> web.Response:
        raw = dict(parse_qsl(request.rel_url.raw_query_string, encoding="latin-1"))
        info_hash = raw["info_hash"].encode("latin-1")
        port = int(raw["port"])
        event = raw.get("event", "")
        self.events.append(event)
        peer = (request.remote or "127.0.0.1", port)
        swarm = self.swarms.setdefault(info_hash, {})
        if event == "stopped":
            swarm.pop(peer, None)
        else:
            swarm[peer] = int(raw.get("left", "1")) == 0
        if event == "completed":
            self.completed[info_hash] = self.completed.get(info_hash, 0) + 1
        others = [p for p in swarm if p != peer]
        ips = [(ipaddress.ip_address(h), p) for h, p in others]
        compact = b"".join(ip.packed + struct.pack(">H", p) for ip, p in ips if ip.version == 4)
        compact6 = b"".join(ip.packed + struct.pack(">H", p) for ip, p in ips if ip.version == 6)
        self.peers6_sent += len(compact6) // 18
        body: dict[bytes, Any] = {b"interval": self.interval, b"peers": compact, b"peers6": compact6,
                                  b"complete": sum(swarm.values()), b"incomplete": len(swarm) - sum(swarm.values())}
        return web.Response(body=encode(body))

    async def _scrape(self, request: web.Request) -> web.Response:
        """BEP 48: counts for each `info_hash` asked (repeated parameter); unknown torrents are left out."""
        asked = [v.encode("latin-1") for k, v in parse_qsl(request.rel_url.raw_query_string, encoding="latin-1")
                 if k == "info_hash"]
        files = {}
        for info_hash in asked:
            if info_hash in self.swarms:
                swarm = self.swarms[info_hash]
                files[info_hash] = {b"complete": sum(swarm.values()), b"downloaded": self.completed.get(info_hash, 0),
                                    b"incomplete": len(swarm) - sum(swarm.values())}
        return web.Response(body=encode({b"files": files}))

    async def __aenter__(self) -> HttpTracker:
        app = web.Application()
        app.router.add_get("/announce", self._announce)
        app.router.add_get("/scrape", self._scrape)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
