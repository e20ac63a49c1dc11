"""The daemon's route for the secure layer's open connections (`peerloom connections` through a running daemon):

    GET /api/v1/connections    each connection: the peer, "direct" or "relayed" (and through which relay), direction
"""

from __future__ import annotations

from aiohttp import web

from peerloom.api.service import Daemon


def routes(daemon: Daemon, prefix: str = "/api/v1") -> list[web.RouteDef]:
    """The route, bound to `daemon`'s node (added by `server.make_app` before its catch-all)."""

    async def list_connections(request: web.Request) -> web.Response:
        return web.json_response({"connections": daemon.node.secure_host.connection_info()})

    return [web.get(f"{prefix}/connections", list_connections)]
