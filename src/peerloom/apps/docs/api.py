"""The daemon's document routes, mounted by `peerloom.api.server` under /api/v1/docs (documented in openapi.json).

- GET    /docs                     the documents the node holds (id, link without secrets, title, rights, size, peers)
- POST   /docs                     create one (`{"title"?, "text"?}`); answers with its links
- POST   /docs/open                hold the document of a link (`{"link", "peers"?}`): with keys, or just its name
- GET    /docs/{id}                one document: its info, its share links, and its text when this node can read it
- PUT    /docs/{id}/text           replace the text (`{"text"}`) with the smallest edit; answers once it is durable
- POST   /docs/{id}/edits          one edit in UTF-16 positions (`{"insert": TEXT, "index"}` or
                                   `{"delete": LENGTH, "index"}`); answers once it is durable
- POST   /docs/{id}/peers          dial peers (`{"peers": [multiaddr, ...]}`); their streams open by themselves
- GET    /docs/{id}/ws             the browser editor's WebSocket (`browser`: y-protocols with the page's Yjs doc)

A write answers only after its signed update is committed to the state database: a 200 is the acknowledgement
(it survives the daemon being killed right after). The share links carry keys: only the daemon's token holder (the
local user) gets them. Requests are bounded (text size, peers per request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from peerloom.api.http import Handler, add_routes, json_body
from peerloom.api.service import ApiError, Daemon
from peerloom.apps.docs.browser import serve_editor
from peerloom.apps.docs.keys import DocError
from peerloom.apps.pubsub.interface import dial_all
from peerloom.codec.multiaddr import Multiaddr, MultiaddrError

if TYPE_CHECKING:
    from peerloom.apps.docs.handle import DocHandle
    from peerloom.apps.docs.service import DocsService

PREFIX = "/api/v1/docs"
MAX_TEXT = 4 * 1024 * 1024  # characters of text one request may carry
MAX_TITLE = 200
MAX_DIAL = 8
DAEMON: web.AppKey[Daemon] = web.AppKey("docs_daemon")


def _docs(request: web.Request) -> DocsService:
    return request.app[DAEMON].node.docs


def _handle(request: web.Request) -> DocHandle:
    handle = _docs(request).get(request.match_info["doc"])
    if handle is None:
        raise ApiError(404, "this node holds no such document (POST /api/v1/docs/open with its link first)")
    return handle


def _string(body: dict[str, Any], key: str, limit: int, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"'{key}' must be a string")
    if len(value) > limit:
        raise ApiError(413, f"'{key}' is over {limit} characters")
    return value


def _int(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApiError(400, f"'{key}' must be a non-negative integer")
    return value


async def _dial(request: web.Request, body: dict[str, Any]) -> int:
    values = body.get("peers", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values) or len(values) > MAX_DIAL:
        raise ApiError(400, f"'peers' must be a list of at most {MAX_DIAL} multiaddrs (strings)")
    try:
        addrs = [Multiaddr(v) for v in values]
    except MultiaddrError as exc:
        raise ApiError(400, f"'peers': {exc}") from None
    failures = await dial_all(request.app[DAEMON].node.secure_host, addrs)
    if failures and len(failures) == len(addrs):
        raise ApiError(502, f"cannot reach any of the peers: {'; '.join(failures)}")
    return len(addrs) - len(failures)


def describe(handle: DocHandle, *, with_text: bool = False) -> dict[str, Any]:
    info = handle.info()
    out: dict[str, Any] = {"id": info.id, "link": info.link, "title": info.title, "writable": info.writable,
                           "readable": info.readable, "size": info.size, "peers": info.peers,
                           "share_link": handle.link, "read_link": handle.read_link}
    if with_text and handle.readable:
        out["text"] = str(handle.text())
    return out


def _edit(change: Callable[[], None]) -> None:
    try:
        change()
    except DocError as exc:
        raise ApiError(403 if "writer key" in str(exc) else 400, str(exc)) from None


async def list_docs(request: web.Request) -> web.Response:
    docs = _docs(request)
    return web.json_response({"docs": [describe(h) for h in (docs.get(i.id) for i in docs.list()) if h]})


async def create(request: web.Request) -> web.Response:
    body = await json_body(request) if request.can_read_body else {}
    title = _string(body, "title", MAX_TITLE)
    text = _string(body, "text", MAX_TEXT)
    handle = await _docs(request).create(title)
    if text:
        _edit(lambda: handle.text().insert(0, text))
    return web.json_response(describe(handle, with_text=True), status=201)


async def open_doc(request: web.Request) -> web.Response:
    body = await json_body(request)
    link = _string(body, "link", 300, required=True)
    assert link is not None
    try:
        handle = await _docs(request).open(link)
    except DocError as exc:
        raise ApiError(400, str(exc)) from None
    await _dial(request, body)
    return web.json_response(describe(handle, with_text=True))


async def get_doc(request: web.Request) -> web.Response:
    return web.json_response(describe(_handle(request), with_text=True))


async def put_text(request: web.Request) -> web.Response:
    handle = _handle(request)
    text = _string(await json_body(request), "text", MAX_TEXT, required=True)
    assert text is not None
    _edit(lambda: handle.text().replace(text))
    return web.json_response(describe(handle, with_text=True))


async def edit(request: web.Request) -> web.Response:
    handle = _handle(request)
    body = await json_body(request)
    index = _int(body, "index")
    if ("insert" in body) == ("delete" in body):
        raise ApiError(400, "an edit is {'insert': TEXT, 'index': N} or {'delete': LENGTH, 'index': N}")
    if "insert" in body:
        text = _string(body, "insert", MAX_TEXT, required=True)
        assert text is not None
        _edit(lambda: handle.text().insert(index, text))
    else:
        length = _int(body, "delete")
        _edit(lambda: handle.text().delete(index, length))
    return web.json_response(describe(handle, with_text=True))


async def add_peers(request: web.Request) -> web.Response:
    handle = _handle(request)
    dialled = await _dial(request, await json_body(request))
    return web.json_response({"id": handle.id, "dialled": dialled})


async def editor_socket(request: web.Request) -> web.StreamResponse:
    handle = _handle(request)
    if not handle.readable:
        raise ApiError(403, "this node holds no read key for the document: it can only relay it")
    return await serve_editor(request, handle)


def mount(app: web.Application, daemon: Daemon) -> None:
    """Add the document routes to the daemon's app."""
    app[DAEMON] = daemon
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "", list_docs),
        ("POST", "", create),
        ("POST", "/open", open_doc),
        ("GET", "/{doc}", get_doc),
        ("PUT", "/{doc}/text", put_text),
        ("POST", "/{doc}/edits", edit),
        ("POST", "/{doc}/peers", add_peers),
        ("GET", "/{doc}/ws", editor_socket),
    ]
    add_routes(app, PREFIX, routes)
