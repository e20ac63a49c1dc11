"""The daemon's exit routes, mounted by `peerloom.api.server` under /api/v1/exit (documented in openapi.json).

- GET    /exit                 the exit's policy, its connections under way (served and used), the SOCKS servers
- GET    /exit/traffic         bytes per peer: `served` (through this node) and `used` (through another node)
- PUT    /exit/policy          make this node an exit (or stop: no peer): allowed peers, ports, private, rate;
                               saved, so the daemon is the same exit after a restart
- POST   /exit/socks           run a SOCKS5 server on a loopback address through a peer's exit (`via`)
- DELETE /exit/socks/{port}    stop the SOCKS server on that port

The SOCKS servers the daemon runs are few (MAX_SOCKS) and listen on loopback only: SOCKS5 without authentication
on another interface would lend this node's exits to anyone who reaches it. These routes reach the node only through
`Daemon.node` and its `exit` (apps/exit/service.py).
"""

from __future__ import annotations

import ipaddress
import time

from aiohttp import web

from peerloom.api.http import Handler, add_routes, json_body
from peerloom.api.service import ApiError, Daemon
from peerloom.apps.exit.policy import ExitPolicy
from peerloom.apps.exit.socks_server import SocksServer
from peerloom.codec.multiaddr import Multiaddr, MultiaddrError
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId

PREFIX = "/api/v1/exit"
MAX_SOCKS = 8  # SOCKS servers the daemon runs at once
MAX_ALLOWED = 1024  # peers one policy may allow
SOCKS: web.AppKey[dict[int, SocksServer]] = web.AppKey("exit_socks")
DAEMON: web.AppKey[Daemon] = web.AppKey("exit_daemon")


def _via(daemon: Daemon, text: object) -> PeerId:
    """A PeerId, or a multiaddr ending in /p2p/PEERID whose address joins the peer store."""
    if not isinstance(text, str) or not text:
        raise ApiError(400, "'via' is the exit's PeerId or its multiaddr ending in /p2p/PEERID")
    try:
        if text.startswith("/"):
            addr = Multiaddr(text)
            if addr.peer_id is None:
                raise ApiError(400, "'via' as a multiaddr must end in /p2p/PEERID")
            daemon.node.peers.add_addrs(addr.peer_id, [addr], "user", time.time())
            return addr.peer_id
        return PeerId.from_string(text)
    except (PeerloomError, MultiaddrError, ValueError) as exc:
        raise ApiError(400, f"'via': {exc}") from None


def _listen(text: object) -> tuple[str, int]:
    if not isinstance(text, str):
        raise ApiError(400, "'listen' is HOST:PORT on loopback, e.g. 127.0.0.1:1080")
    host, _, digits = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
        port = int(digits)
    except ValueError:
        loopback, port = False, -1
    if not loopback or not 0 <= port < 65536:
        raise ApiError(400, "'listen' must be a loopback HOST:PORT (SOCKS5 here has no authentication)")
    return host, port


# -- handlers ------------------------------------------------------------------------------------------
async def exit_status(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response({**daemon.node.exit.status(),
                              "socks": [s.status() for s in request.app[SOCKS].values()]})


async def exit_traffic(request: web.Request) -> web.Response:
    return web.json_response(request.app[DAEMON].node.exit.traffic())


async def set_policy(request: web.Request) -> web.Response:
    body = await json_body(request)
    peers, ports = body.get("allowed_peers", []), body.get("ports", [])
    allow_private, rate = body.get("allow_private", False), body.get("rate", 0)
    if (not isinstance(peers, list) or len(peers) > MAX_ALLOWED or not all(isinstance(p, str) for p in peers)
            or not isinstance(ports, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in ports)
            or not isinstance(allow_private, bool) or isinstance(rate, bool) or not isinstance(rate, int)):
        raise ApiError(400, f"the policy is {{allowed_peers: [PeerId, ...] (at most {MAX_ALLOWED}), ports: "
                            "[int, ...], allow_private: bool, rate: bytes/s}")
    try:
        policy = ExitPolicy.build(peers, ports, allow_private=allow_private, rate=rate)
    except (PeerloomError, ValueError) as exc:
        raise ApiError(400, str(exc)) from None
    request.app[DAEMON].node.exit.set_policy(policy, save=True)
    return web.json_response(policy.as_json())


async def start_socks(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    body = await json_body(request)
    via, (host, port) = _via(daemon, body.get("via")), _listen(body.get("listen", "127.0.0.1:1080"))
    servers = request.app[SOCKS]
    if len(servers) >= MAX_SOCKS:
        raise ApiError(409, f"the daemon already runs {MAX_SOCKS} SOCKS servers: stop one first")
    server = SocksServer(daemon.node.exit, via)
    try:
        _, bound = await server.start(host, port)
    except OSError as exc:
        raise ApiError(409, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    servers[bound] = server
    return web.json_response(server.status(), status=201)


async def stop_socks(request: web.Request) -> web.Response:
    try:
        port = int(request.match_info["port"])
    except ValueError:
        raise ApiError(404, "no SOCKS server on that port") from None
    server = request.app[SOCKS].pop(port, None)
    if server is None:
        raise ApiError(404, f"no SOCKS server of the daemon on port {port}")
    await server.close()
    return web.json_response(server.status())


def mount(app: web.Application, daemon: Daemon) -> None:
    """Add the exit routes to the daemon's app; its SOCKS servers stop when the app is cleaned up."""
    app[DAEMON] = daemon
    servers: dict[int, SocksServer] = {}
    app[SOCKS] = servers

    async def cleanup(_: web.Application) -> None:
        for server in list(servers.values()):
            await server.close()
        servers.clear()

    app.on_cleanup.append(cleanup)
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "", exit_status),
        ("GET", "/traffic", exit_traffic),
        ("PUT", "/policy", set_policy),
        ("POST", "/socks", start_socks),
        ("DELETE", "/socks/{port}", stop_socks),
    ]
    add_routes(app, PREFIX, routes)
