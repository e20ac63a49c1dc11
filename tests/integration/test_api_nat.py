"""The daemon's NAT routes in-process: GET /api/v1/nat and POST /api/v1/nat/probe reply in the shape openapi.json
documents; a probe dials the peers its body names and records their AutoNAT answers (on loopback the server refuses
to dial LAN addresses: E_DIAL_REFUSED says nothing about us, so the verdict stays unknown); bad bodies are 400, and
503 when the NAT service is off."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.swarm import node

from peerloom.api.server import OPENAPI_FILE, allowed_hosts, make_app
from peerloom.api.service import Daemon
from peerloom.net.nat.autonat import Status

pytestmark = pytest.mark.timeout(30)
TOKEN = "test-token-0123456789-abcdefghijklmnopqrstuvwxyz"
SCHEMA = json.loads(OPENAPI_FILE.read_text())["components"]["schemas"]["NatStatus"]


@contextlib.asynccontextmanager
async def serve(tmp: Path, **settings: Any) -> AsyncIterator[tuple[TestClient, Daemon]]:
    async with node(tmp, "daemon", **settings) as daemon_node:
        daemon = Daemon(daemon_node, tmp / "downloads")
        await daemon.start()
        hosts: set[str] = set()
        client = TestClient(TestServer(make_app(daemon, TOKEN, hosts), host="127.0.0.1"))
        await client.start_server()
        hosts |= allowed_hosts("127.0.0.1", client.port or 0)
        try:
            yield client, daemon
        finally:
            await client.close()
            await daemon.stop()


async def call(client: TestClient, method: str, path: str, expect: int, **kwargs: Any) -> Any:
    async with client.request(method, path, headers={"X-Peerloom-Token": TOKEN}, **kwargs) as response:
        body = await response.json()
        assert response.status == expect, body
        return body


def has_shape(status: dict[str, Any]) -> None:
    assert set(status) == set(SCHEMA["required"]) == set(SCHEMA["properties"])
    assert status["reachability"] in SCHEMA["properties"]["reachability"]["enum"]


async def test_status_and_a_probe_through_a_peer(tmp_path: Path) -> None:
    async with serve(tmp_path) as (client, _), node(tmp_path, "peer") as peer:
        status = await call(client, "GET", "/api/v1/nat", 200)
        has_shape(status)
        assert status["reachability"] == "unknown" and status["answers"] == [] and status["port_mapping"] is None
        addr = str(peer.secure_addrs[0])
        probed = await call(client, "POST", "/api/v1/nat/probe", 200, json={"peers": [addr]})
        has_shape(probed)
        assert probed["reachability"] == "unknown" and probed["answers"] == []  # a refusal is not an answer
        assert peer.nat is not None and peer.nat.server is not None
        assert peer.nat.server.served[Status.E_DIAL_REFUSED] == 1  # the peer was asked, and refused LAN addresses
        assert probed["observed"] and probed["observed"][0].startswith("/ip4/127.0.0.1/tcp/")
        for body in ({"peers": "x"}, {"peers": [1]}, {"peers": ["/ip4/1.2.3.4/udp/1"]}, {"peers": ["a"] * 9}, [1]):
            await call(client, "POST", "/api/v1/nat/probe", 400, json=body)


async def test_503_when_the_nat_service_is_off(tmp_path: Path) -> None:
    async with serve(tmp_path, autonat=False, autonat_server=False, port_mapping=False) as (client, _):
        await call(client, "GET", "/api/v1/nat", 503)
