"""The daemon's HTTP API (JSON under /api/v1), its WebSocket event stream, /metrics and the web UI.

Security model: the API listens on loopback by default and every /api/v1 call (and /metrics) needs the
token kept in HOME/api.token (mode 0600), in `X-Peerloom-Token` or `Authorization: Bearer`; the
WebSocket, which browsers cannot give headers, takes it as `?token=`. No CORS headers are ever sent and
preflights are refused, so another web site can neither read answers nor send the custom header; a
request from a foreign Origin without the token is refused outright, and Host headers other than this
server's own addresses are refused (DNS rebinding). The WebSocket refuses a foreign Origin even with the
token: browsers apply no same-origin rule to WebSockets, so a page elsewhere that learnt the token could
otherwise read the event stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from peerloom.api import connections, peers
from peerloom.api.http import json_body
from peerloom.api.service import ApiError, Daemon
from peerloom.apps.btc import api as btc_api
from peerloom.apps.compute import api as compute_api
from peerloom.apps.docs import api as docs_api
from peerloom.apps.exit import api as exit_api
from peerloom.apps.nat import api as nat_api
from peerloom.apps.pubsub import api as pubsub_api
from peerloom.files import write_atomically
from peerloom.state import StateError

log = logging.getLogger(__name__)

MAX_UPLOAD = 16 * 1024 * 1024  # a .torrent upload (libtorrent's own default limit is 10 MB)
TOKEN_FILE = "api.token"
WEB_DIR = Path(__file__).parent / "web"
OPENAPI_FILE = Path(__file__).parent / "openapi.json"
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                 ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json"}
PUBLIC_API = {"/api/v1/openapi.json"}
EVENTS_PATH = "/api/v1/events"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DAEMON: web.AppKey[Daemon] = web.AppKey("daemon", Daemon)
TOKEN: web.AppKey[str] = web.AppKey("token", str)
HOSTS: web.AppKey[set[str]] = web.AppKey("hosts", set)


def load_or_create_token(home: Path) -> str:
    """The API token of this home: made once (random, 256 bits), kept readable by the owner only."""
    path = home / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
        write_atomically(path, token.encode() + b"\n")
    return token


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host check, token check, and every failure as a JSON error."""
    app = request.app
    hosts = app[HOSTS]
    if hosts and request.host.lower() not in hosts:
        return error(403, f"unknown Host {request.host!r}: use the address the daemon printed")
    path = request.path
    protected = (path.startswith("/api/") and path not in PUBLIC_API) or path == "/metrics"
    if request.method == "OPTIONS":
        return error(403, "cross-origin requests are refused")
    websocket = _websocket(request)
    if websocket and _foreign_origin(request):
        return error(403, "cross-origin WebSocket refused")
    if protected:
        # only WebSockets take the token in the URL (browsers cannot give them headers); elsewhere it would
        # end up in logs and histories for nothing
        query = request.query.get("token", "") if websocket else ""
        given = request.headers.get("X-Peerloom-Token") or _bearer(request) or query
        if not hmac.compare_digest(given.encode(), app[TOKEN].encode()):
            if _foreign_origin(request):
                return error(403, "cross-origin request refused")
            return error(401, "missing or wrong API token (it is in the daemon's home, file api.token)")
    try:
        return await handler(request)
    except ApiError as exc:
        return error(exc.status, exc.message)
    except StateError as exc:  # the home's disk is full, read-only, ...: say so, the daemon goes on
        return error(500, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return error(413, f"request body too large (at most {MAX_UPLOAD // (1024 * 1024)} MiB)")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error(exc.status, exc.reason)
        raise
    except Exception:
        log.exception("API request %s %s failed", request.method, path)
        return error(500, "internal error (logged by the daemon)")


def _bearer(request: web.Request) -> str:
    value = request.headers.get("Authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else ""


def _websocket(request: web.Request) -> bool:
    """The event stream, or any WebSocket handshake (a document editor's bridge): browsers cannot give either a
    header, so the token comes in the URL, and a foreign Origin is refused even with it."""
    return request.path == EVENTS_PATH or request.headers.get("Upgrade", "").lower() == "websocket"


def _foreign_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is not None and origin != f"{request.scheme}://{request.host}"


def _text(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 65536:
        raise ApiError(400, f"{key!r} must be a non-empty string")
    return value


def _flag(value: Any, key: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no", ""):
        return value.lower() in ("1", "true", "yes")
    raise ApiError(400, f"{key!r} must be true or false")


# -- handlers ------------------------------------------------------------------------------------
async def node_info(request: web.Request) -> web.Response:
    return web.json_response(request.app[DAEMON].node_info())


async def set_node_limits(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    body = await json_body(request)
    daemon.set_limits(None, body.get("download"), body.get("upload"))
    return web.json_response({"limits": daemon.node_info()["limits"]})


async def list_torrents(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response({"torrents": [daemon.summary(t) for t in daemon.node.torrents.values()]})


async def add_torrent(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    if request.content_type == "multipart/form-data":
        data, fields = await _read_form(request)
        if data is None:
            raise ApiError(400, "the form has no 'torrent' file")
        torrent = await daemon.add_torrent(data, fields.get("save_path") or None,
                                           paused=_flag(fields.get("paused"), "paused"),
                                           overwrite=_flag(fields.get("overwrite"), "overwrite"))
    elif request.content_type == "application/json":
        body = await json_body(request)
        paused = _flag(body.get("paused"), "paused")
        if "magnet" in body:
            torrent = await daemon.add_magnet(_text(body, "magnet", required=True) or "", _text(body, "save_path"),
                                              paused=paused, overwrite=_flag(body.get("overwrite"), "overwrite"))
        elif "path" in body:
            torrent = await daemon.share(_text(body, "path", required=True) or "", _text(body, "version") or "hybrid")
        else:
            raise ApiError(400, "give a 'magnet' link or a local 'path' to share (or upload a .torrent file)")
    else:
        raise ApiError(415, "send JSON (magnet or path) or multipart/form-data (a .torrent file)")
    return web.json_response({"torrent": daemon.summary(torrent)}, status=201)


async def _read_form(request: web.Request) -> tuple[bytes | None, dict[str, str]]:
    """The .torrent file and the text fields of an upload form, refusing more than MAX_UPLOAD bytes in all."""
    if request.content_length is not None and request.content_length > MAX_UPLOAD:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD, actual_size=request.content_length)
    reader = await request.multipart()
    data: bytes | None = None
    fields: dict[str, str] = {}
    budget = MAX_UPLOAD
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "nested multipart forms are not taken")
        chunks = []
        while chunk := await part.read_chunk(65536):
            budget -= len(chunk)
            if budget < 0:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD, actual_size=MAX_UPLOAD - budget)
            chunks.append(chunk)
        value = b"".join(chunks)
        if part.name == "torrent":
            data = value
        elif part.name in ("save_path", "paused", "overwrite"):
            fields[part.name] = value.decode("utf-8", "replace")
    return data, fields


async def torrent_detail(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response(daemon.detail(daemon.torrent(request.match_info["id"])))


async def torrent_peers(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response({"peers": daemon.peers(daemon.torrent(request.match_info["id"]))})


async def pause(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    torrent = daemon.torrent(request.match_info["id"])
    await daemon.pause(torrent)
    return web.json_response({"torrent": daemon.summary(torrent)})


async def resume(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    torrent = daemon.torrent(request.match_info["id"])
    daemon.resume(torrent)
    return web.json_response({"torrent": daemon.summary(torrent)})


async def remove(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    torrent = daemon.torrent(request.match_info["id"])
    query = request.query
    await daemon.remove(torrent, delete_data=_flag(query.get("delete_data"), "delete_data"),
                        delete_source=_flag(query.get("delete_source"), "delete_source"))
    return web.json_response({"removed": torrent.id})


async def set_files(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    torrent = daemon.torrent(request.match_info["id"])
    priorities = (await json_body(request)).get("priorities")
    if not isinstance(priorities, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in priorities):
        raise ApiError(400, "'priorities' must be a list of numbers, one per file")
    daemon.set_priorities(torrent, priorities)
    return web.json_response(daemon.detail(torrent))


async def set_torrent_limits(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    torrent = daemon.torrent(request.match_info["id"])
    body = await json_body(request)
    daemon.set_limits(torrent, body.get("download"), body.get("upload"))
    return web.json_response({"torrent": daemon.summary(torrent)})


async def events(request: web.Request) -> web.WebSocketResponse:
    """Push events to the client until it goes away (it sends nothing we need)."""
    daemon = request.app[DAEMON]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
    await ws.prepare(request)
    queue = daemon.subscribe()

    async def drain() -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break

    reader = asyncio.create_task(drain())
    try:
        while not reader.done():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            event = getter.result()
            if event is None or ws.closed:
                break
            await ws.send_json(event)
    except (ConnectionResetError, RuntimeError):
        pass  # the client went away mid-send
    finally:
        daemon.unsubscribe(queue)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await ws.close()
    return ws


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[DAEMON].metrics(), content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"}, charset="utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_FILE.read_bytes(), content_type="application/json")


async def unknown_api(request: web.Request) -> web.Response:
    raise ApiError(404, f"no API endpoint {request.method} {request.path}")


async def web_file(request: web.Request) -> web.StreamResponse:
    """The web UI's files (index.html at /); nothing outside the web folder."""
    name = request.match_info.get("name") or "index.html"
    path = (WEB_DIR / name).resolve()
    if WEB_DIR.resolve() not in path.parents or not path.is_file():
        raise ApiError(404, f"no page {request.path}")
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
               "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                                          "style-src 'self' 'unsafe-inline'"}
    return web.Response(body=path.read_bytes(), content_type=CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                        headers=headers)


def make_app(daemon: Daemon, token: str, hosts: set[str]) -> web.Application:
    """The aiohttp application; `hosts` are the Host header values accepted (empty: any)."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_UPLOAD)
    app[DAEMON] = daemon
    app[TOKEN] = token
    app[HOSTS] = hosts
    v1 = "/api/v1"
    app.router.add_get(f"{v1}/node", node_info)
    app.router.add_put(f"{v1}/limits", set_node_limits)
    app.router.add_get(f"{v1}/torrents", list_torrents)
    app.router.add_post(f"{v1}/torrents", add_torrent)
    app.router.add_get(f"{v1}/torrents/{{id}}", torrent_detail)
    app.router.add_delete(f"{v1}/torrents/{{id}}", remove)
    app.router.add_get(f"{v1}/torrents/{{id}}/peers", torrent_peers)
    app.router.add_post(f"{v1}/torrents/{{id}}/pause", pause)
    app.router.add_post(f"{v1}/torrents/{{id}}/resume", resume)
    app.router.add_put(f"{v1}/torrents/{{id}}/files", set_files)
    app.router.add_put(f"{v1}/torrents/{{id}}/limits", set_torrent_limits)
    app.router.add_routes(peers.routes(daemon, v1))
    app.router.add_routes(connections.routes(daemon, v1))
    app.router.add_get(EVENTS_PATH, events)
    pubsub_api.mount(app, daemon)  # each app's own routes
    compute_api.mount(app, daemon)
    nat_api.mount(app, daemon)
    exit_api.mount(app, daemon)
    docs_api.mount(app, daemon)
    btc_api.mount(app, daemon)
    app.router.add_get(f"{v1}/openapi.json", openapi)
    app.router.add_route("*", "/api/{rest:.*}", unknown_api)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", web_file)
    app.router.add_get("/{name:[A-Za-z0-9_.-]+}", web_file)
    return app


def allowed_hosts(host: str, port: int) -> set[str]:
    """Host header values a loopback API answers to; a non-loopback bind (the user's choice) takes any."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        return set()
    return {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
