"""The daemon's routes for the peer store and for finding a peer by its PeerId (`peerloom peers`, `peerloom find`
through a running daemon):

    GET /api/v1/peers            every peer the store knows, the most recently seen first
    GET /api/v1/peers/{peer_id}  where a peer listens: its signed record resolved through the DHT, and the store
"""

from __future__ import annotations

import time

from aiohttp import web

from peerloom.api.service import ApiError, Daemon
from peerloom.discovery.peer_record_driver import PeerNotFound, find_peer
from peerloom.identity import PeerId, PeerIdError

FIND_TIMEOUT = 20.0  # a DHT lookup crosses a few hops; the CLI's client waits 30 s


def routes(daemon: Daemon, prefix: str = "/api/v1") -> list[web.RouteDef]:
    """The routes, bound to `daemon`'s node (added by `server.make_app` before its catch-all)."""

    async def list_peers(request: web.Request) -> web.Response:
        now = time.time()
        return web.json_response({"peers": [p.to_json(now) for p in daemon.node.peers.all()]})

    async def find(request: web.Request) -> web.Response:
        text = request.match_info["peer_id"]
        try:
            peer = PeerId.from_string(text)
        except PeerIdError as exc:
            raise ApiError(400, f"not a PeerId: {exc}") from None
        node = daemon.node
        try:
            return web.json_response(await find_peer(peer, node.peers, node.peer_records, timeout=FIND_TIMEOUT))
        except PeerNotFound as exc:
            raise ApiError(404, str(exc)) from None

    return [web.get(f"{prefix}/peers", list_peers), web.get(f"{prefix}/peers/{{peer_id}}", find)]
