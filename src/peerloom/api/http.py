"""What every app's daemon routes share: reading a JSON request body, and adding a table of routes under a prefix.

The apps (pubsub, docs, compute, exit, …) each mount their own routes (DESIGN.md: each app brings its routes); these
two helpers keep their request handling the same everywhere: a body that is not a JSON object is a 400 (or a 415 when
it is not sent as JSON), never a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from peerloom.api.service import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def json_body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request's body as a JSON object; with `optional`, no body at all reads as {}."""
    if optional and not request.can_read_body:
        return {}
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as JSON (Content-Type: application/json)")
    try:
        body = await request.json()
    except (ValueError, LookupError, RecursionError):  # bad JSON or text, unknown charset, nesting too deep
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def add_routes(app: web.Application, prefix: str, routes: Iterable[tuple[str, str, Handler]]) -> None:
    """Add each (method, path, handler) under `prefix`."""
    for method, path, handler in routes:
        app.router.add_route(method, prefix + path, handler)
