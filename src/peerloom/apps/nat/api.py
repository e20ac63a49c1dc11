"""The daemon's NAT routes, mounted by `peerloom.api.server` under /api/v1/nat (documented in openapi.json).

- GET  /nat          reachability (AutoNAT verdict and confidence, each server's answer), observed and confirmed
                     addresses, the AutoNAT server's counts, the port mappings
- POST /nat/probe    ask the connected AutoNAT servers now (waits for their answers), then the same status; an
                     optional body `{"peers": [multiaddr, ...]}` names up to 8 peers serving AutoNAT to dial first
"""

from __future__ import annotations

from aiohttp import web

from peerloom.api.service import ApiError, Daemon
from peerloom.apps.nat.service import NatService
from peerloom.codec.multiaddr import Multiaddr, MultiaddrError
from peerloom.errors import PeerloomError

PREFIX = "/api/v1/nat"
MAX_PEERS = 8
DAEMON: web.AppKey[Daemon] = web.AppKey("nat_daemon")


def _nat(request: web.Request) -> NatService:
    nat = request.app[DAEMON].node.nat
    if nat is None:
        raise ApiError(503, "AutoNAT and port mapping are off on this node")
    return nat


async def status(request: web.Request) -> web.Response:
    return web.json_response(_nat(request).status())


async def _peers(request: web.Request) -> list[Multiaddr]:
    if not request.can_read_body:
        return []
    try:
        peers = (await request.json()).get("peers", [])
        if not isinstance(peers, list) or len(peers) > MAX_PEERS:
            raise ValueError(f"'peers' must be a list of at most {MAX_PEERS} multiaddrs")
        addrs = [Multiaddr(p) for p in peers]  # a non-string is a TypeError
        for addr in addrs:
            addr.to_host_port()
    except (ValueError, TypeError, AttributeError, LookupError, RecursionError, MultiaddrError) as exc:
        raise ApiError(400, f"the body must be JSON {{\"peers\": [multiaddr, ...]}}: {exc}") from None
    return addrs


async def probe(request: web.Request) -> web.Response:
    nat = _nat(request)
    addrs = await _peers(request)
    try:
        return web.json_response(await nat.probe(addrs))
    except PeerloomError as exc:
        raise ApiError(409, str(exc)) from None


def mount(app: web.Application, daemon: Daemon) -> None:
    app[DAEMON] = daemon
    app.router.add_get(PREFIX, status)
    app.router.add_post(PREFIX + "/probe", probe)
