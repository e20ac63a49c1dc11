"""The daemon's exit routes in-process, with a second real node on loopback: the daemon made an exit through the API
(the policy saved for its next start), a SOCKS server run by the daemon through the other node's exit, the status
and the traffic on both sides, and bad input refused with one JSON error."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.exit_net import body, http_server, settled, socks_get
from support.swarm import node

from peerloom.api.server import allowed_hosts, make_app
from peerloom.api.service import Daemon
from peerloom.apps.exit.policy import ExitPolicy
from peerloom.apps.exit.socks_server import SocksServer
from peerloom.apps.exit.wire import Reply
from peerloom.node import Node

pytestmark = pytest.mark.timeout(60)
TOKEN = "test-token-0123456789-abcdefghijklmnopqrstuvwxyz"
V1 = "/api/v1/exit"
QUIET = dict(pubsub=False, mdns=False, utp=False)


@dataclass
class Api:
    client: TestClient
    daemon: Daemon
    peer: Node

    async def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        async with self.client.request(method, path, headers={"X-Peerloom-Token": TOKEN}, **kwargs) as response:
            data = await response.read()
            assert response.status == expect, (response.status, data[:300])
            reply = json.loads(data)
            if expect >= 400:
                assert list(reply) == ["error"] and reply["error"]
            return reply


@contextlib.asynccontextmanager
async def serve(tmp: Path) -> AsyncIterator[Api]:
    async with node(tmp, "daemon", **QUIET) as daemon_node, node(tmp, "peer", **QUIET) as peer:
        daemon = Daemon(daemon_node, tmp / "downloads")
        await daemon.start()
        hosts: set[str] = set()
        client = TestClient(TestServer(make_app(daemon, TOKEN, hosts), host="127.0.0.1"))
        await client.start_server()
        hosts |= allowed_hosts("127.0.0.1", client.port or 0)
        try:
            await peer.secure_host.connect(daemon_node.secure_addrs[0])
            yield Api(client, daemon, peer)
        finally:
            await client.close()
            await daemon.stop()


async def test_the_daemon_becomes_an_exit_through_the_api_and_counts_what_it_served(tmp_path: Path) -> None:
    async with http_server() as http_port, serve(tmp_path) as api:
        status = await api.call("GET", V1)
        assert status["policy"]["serving"] is False and status["socks"] == [] and status["active"] == []
        peer_id = str(api.peer.secure_host.peer_id)
        policy = {"allowed_peers": [peer_id], "ports": [http_port], "allow_private": True, "rate": 0}
        assert await api.call("PUT", f"{V1}/policy", json=policy) == {**policy, "serving": True}
        socks = SocksServer(api.peer.exit, api.daemon.node.secure_host.peer_id)
        _, port = await socks.start("127.0.0.1", 0)
        try:
            code, data = await socks_get(port, "127.0.0.1", http_port)
        finally:
            await socks.close()
        assert code == Reply.SUCCEEDED and data == body()
        await settled(api.daemon.node, api.peer)
        traffic = await api.call("GET", f"{V1}/traffic")
        assert traffic["used"] == {} and traffic["served"][peer_id]["connections"] == 1
        assert traffic["served"][peer_id] == api.peer.exit.traffic()["used"][str(api.daemon.node.secure_host.peer_id)]
    # the policy set through the API is the daemon's next time (its settings name no peer)
    async with node(tmp_path, "daemon", **QUIET) as again:
        assert again.exit.policy.as_json() == {**policy, "serving": True}


async def test_the_daemon_runs_a_socks_server_through_another_nodes_exit(tmp_path: Path) -> None:
    async with http_server() as http_port, serve(tmp_path) as api:
        daemon_id = api.daemon.node.secure_host.peer_id
        api.peer.exit.set_policy(ExitPolicy.build([daemon_id], allow_private=True))
        via = f"{api.peer.secure_addrs[0]}"
        started = await api.call("POST", f"{V1}/socks", 201, json={"via": via, "listen": "127.0.0.1:0"})
        assert started["via"] == str(api.peer.secure_host.peer_id)
        port = int(started["listen"].rsplit(":", 1)[1])
        code, data = await socks_get(port, "127.0.0.1", http_port)
        assert code == Reply.SUCCEEDED and data == body()
        await settled(api.daemon.node, api.peer)
        status = await api.call("GET", V1)
        assert status["socks"][0]["connections"] == 1 and status["socks"][0]["failures"] == 0
        used = (await api.call("GET", f"{V1}/traffic"))["used"][str(api.peer.secure_host.peer_id)]
        assert used == api.peer.exit.traffic()["served"][str(daemon_id)]
        await api.call("DELETE", f"{V1}/socks/{port}")
        await api.call("DELETE", f"{V1}/socks/{port}", 404)
        assert (await api.call("GET", V1))["socks"] == []


async def test_bad_requests_are_refused_with_one_error(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        peer = str(api.peer.secure_host.peer_id)
        for bad in ({"allowed_peers": ["not-a-peer"]}, {"allowed_peers": [peer], "ports": [0]},
                    {"allowed_peers": [peer], "rate": -1}, {"allowed_peers": peer}, {"allow_private": "yes"}):
            await api.call("PUT", f"{V1}/policy", 400, json=bad)
        await api.call("PUT", f"{V1}/policy", 415, data=b"{}")
        for bad in ({"via": peer, "listen": "0.0.0.0:1080"}, {"via": peer, "listen": "10.0.0.1:1080"},
                    {"via": "nobody"}, {"via": "/ip4/127.0.0.1/tcp/1"}):
            await api.call("POST", f"{V1}/socks", 400, json=bad)
        assert (await api.call("GET", V1))["policy"]["serving"] is False
