"""Relay and DCUtR as a node runs them (Settings / daemon flags) and as the API shows them: three nodes on loopback,
a relay (`relay_server`), B holding a reservation on it (`relays`), and A reaching B through it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.swarm import fast_settings, node
from test_api import V1, conforms, serve

from peerloom.codec.multiaddr import Multiaddr
from peerloom.net.connection import LinkError
from peerloom.net.relay.messages import Limit
from peerloom.net.stream import Stream
from peerloom.node import Node


async def circuit_of(b: Node) -> Multiaddr:
    """B's circuit address, once its reservation (made in the background from `settings.relays`) holds."""
    async with asyncio.timeout(30):
        while not (found := [a for a in b.secure_addrs if a.value_for("p2p-circuit") is not None]):
            await asyncio.sleep(0.05)
    return found[0]


@contextlib.asynccontextmanager
async def relay_and_b(tmp: Path, **b_settings: object) -> AsyncIterator[tuple[Node, Node]]:
    async with node(tmp, "relay", relay_server=True) as relay:
        assert relay.relay_server is not None
        async with node(tmp, "b", relays=[str(relay.secure_addrs[0])], **b_settings) as b:
            yield relay, b


async def test_the_api_lists_a_relayed_connection_with_its_relay(tmp_path: Path) -> None:
    async with relay_and_b(tmp_path, hole_punch=False) as (relay, b), serve(tmp_path) as api:
        assert b.hole_puncher is None
        circuit = await circuit_of(b)
        conn = await api.node.secure_host.connect(circuit)
        assert conn.limited
        listed = (await api.call("GET", f"{V1}/connections"))["connections"]
        conforms({"connections": listed}, api_schema())
        mine = {c["peer_id"]: c for c in listed}
        assert mine[str(b.identity.peer_id)]["kind"] == "relayed"
        assert mine[str(b.identity.peer_id)]["relay"] == str(relay.identity.peer_id)
        assert mine[str(relay.identity.peer_id)]["kind"] == "direct"


def api_schema() -> dict:
    from test_api import DOC

    return DOC["paths"]["/api/v1/connections"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]


async def test_nodes_upgrade_a_relayed_connection_by_hole_punching(tmp_path: Path) -> None:
    async with relay_and_b(tmp_path) as (_relay, b), node(tmp_path, "a") as a:
        circuit = await circuit_of(b)
        conn = await a.secure_host.connect(circuit)
        assert conn.limited
        peer = b.identity.peer_id
        async with asyncio.timeout(30):
            while (info := {c["peer_id"]: c for c in a.secure_host.connection_info()}).get(str(peer), {}).get(
                    "kind") != "direct":
                await asyncio.sleep(0.05)
        assert info[str(peer)]["relay"] is None and info[str(peer)]["address"] is not None
        assert b.hole_puncher is not None
        async with asyncio.timeout(30):  # B (which accepted the relayed connection) ran the exchange and dialled
            while b.hole_puncher.upgraded != 1:
                await asyncio.sleep(0.05)
        assert len(await a.secure_host.ping(peer)) == 1


class LimitedEcho:
    """A service whose echo protocol runs over relayed connections too (`limited_protocols`), the other not."""

    name = "limited-echo"
    protocols = ("/test/echo-anywhere/1", "/test/echo-direct/1")
    limited_protocols = ("/test/echo-anywhere/1",)

    async def start(self, ctx: object) -> None:
        pass

    async def handle(self, stream: Stream, protocol: str) -> None:
        while data := await stream.read():
            await stream.write(data)
        await stream.close()

    def admits(self, peer: object, protocol: str) -> bool:
        return True

    async def stop(self) -> None:
        pass


async def test_relay_limits_from_settings_and_services_choosing_limited_protocols(tmp_path: Path) -> None:
    async with node(tmp_path, "relay", relay_server=True, relay_circuit_bytes=1 << 20, relay_circuit_seconds=0) as r:
        assert r.relay_server is not None and r.relay_server.limits.limit == Limit(0, 1 << 20)
        home = tmp_path / "home-b"
        settings = fast_settings(relays=[str(r.secure_addrs[0])], hole_punch=False)
        async with Node(home, host="127.0.0.1", settings=settings, services=[LimitedEcho()]) as b, \
                node(tmp_path, "a", hole_punch=False) as a:
            conn = await a.secure_host.connect(await circuit_of(b))
            assert conn.limited
            stream = await a.secure_host.new_stream(b.identity.peer_id, ["/test/echo-anywhere/1"], limited=True)
            await stream.write(b"x" * 300_000)  # past js's 128 KiB default: this relay allows 1 MiB
            await stream.close()
            got = b""
            while chunk := await stream.read():
                got += chunk
            assert got == b"x" * 300_000
            with pytest.raises(LinkError):
                await a.secure_host.new_stream(b.identity.peer_id, ["/test/echo-direct/1"], limited=True)
