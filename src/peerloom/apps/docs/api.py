"""The daemon's document routes the web UI's documents view needs, under /api/v1/docs (documented in openapi.json):

- GET  /docs               the documents this node holds (no secrets)
- POST /docs               create one (`{"title": text}`, optional): this node may write it
- POST /docs/open          hold the document a link names (`{"link": "peerloom://doc/..."}`), or more keys for it
- GET  /docs/{id}          one document, with its share links (`link` with every key this node holds, `read_link`)
- POST /docs/peers         dial a peer (`{"addr": multiaddr}`); its streams for the shared documents open then
- GET  /docs/{id}/ws       the editor's WebSocket (`browser`: y-protocols with the page's Yjs document)

These routes sit with the API at the top of the layering and
reach the node only through `daemon.node.docs` (the Python API of `apps.docs.service`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from peerloom.api.service import ApiError, Daemon
from peerloom.apps.docs.browser import serve_editor
from peerloom.apps.docs.handle import DocHandle
from peerloom.apps.docs.keys import DocError
from peerloom.codec.multiaddr import Multiaddr, MultiaddrError
from peerloom.errors import PeerloomError

PREFIX = "/api/v1/docs"
MAX_TITLE = 200
MAX_LINK = 1024


def detail(handle: DocHandle) -> dict[str, Any]:
    """A document as the API shows it: its summary and the links to share it."""
    info = handle.info()
    return {"id": info.id, "title": info.title, "writable": info.writable, "readable": info.readable,
            "size": info.size, "peers": info.peers, "link": handle.link, "read_link": handle.read_link}


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as JSON (Content-Type: application/json)")
    try:
        body = await request.json()
    except (ValueError, LookupError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _string(body: dict[str, Any], key: str, limit: int, *, required: bool) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ApiError(400, f"{key!r} must be a non-empty string of at most {limit} characters")
    return value.strip()


def routes(daemon: Daemon) -> list[web.RouteDef]:
    """The routes, bound to `daemon`'s node (added by `server.make_app` before its catch-all)."""
    docs = daemon.node.docs

    def handle_of(request: web.Request) -> DocHandle:
        handle = docs.get(request.match_info["id"])
        if handle is None:
            raise ApiError(404, f"no document {request.match_info['id']!r} on this node: open its link first")
        return handle

    async def list_docs(request: web.Request) -> web.Response:
        return web.json_response({"docs": [detail(h) for h in (docs.get(i.id) for i in docs.list()) if h]})

    async def create(request: web.Request) -> web.Response:
        body = await _body(request) if request.can_read_body else {}
        handle = await docs.create(_string(body, "title", MAX_TITLE, required=False))
        return web.json_response({"doc": detail(handle)}, status=201)

    async def open_link(request: web.Request) -> web.Response:
        link = _string(await _body(request), "link", MAX_LINK, required=True) or ""
        try:
            handle = await docs.open(link)
        except DocError as exc:
            raise ApiError(400, str(exc)) from None
        return web.json_response({"doc": detail(handle)})

    async def one(request: web.Request) -> web.Response:
        return web.json_response({"doc": detail(handle_of(request))})

    async def editor(request: web.Request) -> web.StreamResponse:
        handle = handle_of(request)
        if not handle.readable:
            raise ApiError(403, "this node holds no read key for the document: it can only relay it")
        return await serve_editor(request, handle)

    async def dial(request: web.Request) -> web.Response:
        addr = _string(await _body(request), "addr", MAX_LINK, required=True) or ""
        try:
            Multiaddr(addr).to_host_port()
            await docs.connect(addr)
        except MultiaddrError as exc:
            raise ApiError(400, f"'addr': {exc}") from None
        except (PeerloomError, OSError, TimeoutError) as exc:
            raise ApiError(502, f"cannot reach {addr}: {exc}") from None
        return web.json_response({"addr": addr})

    return [web.get(PREFIX, list_docs), web.post(PREFIX, create), web.post(f"{PREFIX}/open", open_link),
            web.post(f"{PREFIX}/peers", dial), web.get(f"{PREFIX}/{{id}}", one), web.get(f"{PREFIX}/{{id}}/ws", editor)]
