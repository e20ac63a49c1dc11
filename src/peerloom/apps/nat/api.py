"""The daemon's NAT routes, mounted by `peerloom.api.server` under /api/v1/nat (documented in openapi.json).

- GET  /nat          reachability (AutoNAT verdict and confidence, each server's answer), observed and confirmed
                     addresses, the AutoNAT server's counts, the port mappings
- POST /nat/probe    ask the connected AutoNAT servers now (waits for their answers), then the same status
"""

from __future__ import annotations

from aiohttp import web

from peerloom.api.service import ApiError, Daemon
from peerloom.apps.nat.service import NatService
from peerloom.errors import PeerloomError

PREFIX = "/api/v1/nat"
DAEMON: web.AppKey[Daemon] = web.AppKey("nat_daemon")


def _nat(request: web.Request) -> NatService:
    nat = request.app[DAEMON].node.nat
    if nat is None:
        raise ApiError(503, "AutoNAT and port mapping are off on this node")
    return nat


async def status(request: web.Request) -> web.Response:
    return web.json_response(_nat(request).status())


async def probe(request: web.Request) -> web.Response:
    try:
        return web.json_response(await _nat(request).probe())
    except PeerloomError as exc:
        raise ApiError(409, str(exc)) from None


def mount(app: web.Application, daemon: Daemon) -> None:
    app[DAEMON] = daemon
    app.router.add_get(PREFIX, status)
    app.router.add_post(PREFIX + "/probe", probe)
