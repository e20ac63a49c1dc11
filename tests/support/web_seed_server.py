"""A web seed (BEP 19) on loopback for tests: an aiohttp server giving out the files under a folder, well or badly.

The first part of a request's path picks how it answers, the rest is the file's path under the folder:
- `files`: aiohttp's own file responses (Range honoured, 206 with Content-Range, as a real server);
- `corrupt`: ranges honoured, but a byte flipped in every 16 KiB of every answer;
- `norange`: Range ignored, always 200 with the whole file;
- `badrange`: a 206 whose Content-Range is one byte off the range asked for;
- `redirect`: a 302 to the same file under `files`;
- `stall`: the head of a good answer, then silence until the server stops.
Every request is recorded (`Asked`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

MODES = ("files", "corrupt", "norange", "badrange", "redirect", "stall")


@dataclass(frozen=True)
class Asked:
    mode: str
    path: str  # the file's path under the folder, percent-decoded
    raw_path: str  # the request's path as sent (percent-encoded)
    range: str | None  # the Range header
    user_agent: str | None


class WebSeedServer:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.requests: list[Asked] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()  # ends the stalled answers, so the server can stop

    def url(self, mode: str) -> str:
        """The URL to put in a torrent's url-list for this mode (a folder: the torrent's name is appended)."""
        assert mode in MODES
        return f"http://127.0.0.1:{self.port}/{mode}/"

    def paths(self, mode: str) -> list[str]:
        return [asked.path for asked in self.requests if asked.mode == mode]

    async def __aenter__(self) -> WebSeedServer:
        app = web.Application()
        app.router.add_get("/{mode}/{tail:.+}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        self._stopping.set()
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        mode, tail = request.match_info["mode"], request.match_info["tail"]  # both percent-decoded
        self.requests.append(Asked(mode, tail, request.raw_path, request.headers.get("Range"),
                                   request.headers.get("User-Agent")))
        path = (self.root / tail).resolve()
        if mode not in MODES or not path.is_relative_to(self.root) or not path.is_file():
            raise web.HTTPNotFound()
        if mode == "files":
            return web.FileResponse(path)
        if mode == "redirect":
            raise web.HTTPFound(f"/files/{request.raw_path.split('/', 2)[2]}")
        data = path.read_bytes()
        if mode == "norange":
            return web.Response(body=data)
        rng = request.http_range
        start = rng.start or 0
        stop = len(data) if rng.stop is None else min(rng.stop, len(data))
        if mode == "stall":
            head = {"Content-Range": f"bytes {start}-{stop - 1}/{len(data)}"}
            response = web.StreamResponse(status=206, headers=head)
            response.content_length = stop - start
            await response.prepare(request)
            await self._stopping.wait()
            return response
        body = bytearray(data[start:stop])
        if mode == "corrupt":
            for i in range(100, len(body), 16384):  # a byte in every block: every piece fails
                body[i] ^= 0xFF
        first = start + 1 if mode == "badrange" else start
        headers = {"Content-Range": f"bytes {first}-{first + len(body) - 1}/{len(data)}"}
        return web.Response(status=206, body=bytes(body), headers=headers)
