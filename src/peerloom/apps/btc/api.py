"""The daemon's Bitcoin route, mounted by `peerloom.api.server` under /api/v1/btc (documented in openapi.json).

- GET /btc/status?network=regtest     the tip (height, hash), peers and mempool of the Bitcoin node running on the
                                      daemon's home (`peerloom btc node`), or the stored tip when none runs
- GET /btc/wallet?network=regtest     the balance of the home's wallet (`peerloom btc balance`): 404 without one

These routes sit with the CLI and the API at the top of the layering; they read the home's state through
`apps.btc.status` only.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from peerloom.api.service import ApiError, Daemon

from .params import NETWORKS
from .status import home_status
from .wallet import WalletError, wallet_path
from .walletops import balance

PREFIX = "/api/v1/btc"


def mount(app: web.Application, daemon: Daemon) -> None:
    """Add the Bitcoin routes to the daemon's app."""

    async def status(request: web.Request) -> web.Response:
        network = request.query.get("network", "regtest")
        if network not in NETWORKS:
            raise ApiError(400, f"unknown network {network[:40]!r}: one of {', '.join(NETWORKS)}")
        node = daemon.node
        info = await asyncio.to_thread(home_status, node.home, NETWORKS[network], node.state)
        return web.json_response(info)

    async def wallet(request: web.Request) -> web.Response:
        network = request.query.get("network", "regtest")
        if network not in NETWORKS:
            raise ApiError(400, f"unknown network {network[:40]!r}: one of {', '.join(NETWORKS)}")
        home = daemon.node.home
        if not wallet_path(home, NETWORKS[network]).exists():
            raise ApiError(404, f"no {network} wallet in this home (`peerloom btc address` makes one)")
        try:
            return web.json_response(await asyncio.to_thread(balance, home, NETWORKS[network]))
        except WalletError as exc:
            raise ApiError(503, str(exc)) from None

    app.router.add_get(f"{PREFIX}/status", status)
    app.router.add_get(f"{PREFIX}/wallet", wallet)
