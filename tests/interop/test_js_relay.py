"""Circuit Relay v2 and DCUtR against js-libp2p (@libp2p/circuit-relay-v2 4.2.8, @libp2p/dcutr 3.0.28; the js side
is tests/interop/js/relay.mjs): a js relay relays for two peerloom nodes, a peerloom relay relays for two js nodes,
and DCUtR upgrades a relayed js↔peerloom connection to a direct one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

import pytest
from support.jslibp2p import ECHO_PROTOCOL, JS_DIR, JsPeer, ensure_installed

from peerloom.codec.multiaddr import Multiaddr
from peerloom.identity import Identity, PeerId
from peerloom.net.host import Host
from peerloom.net.nat.dcutr_driver import HolePuncher
from peerloom.net.relay.client import RelayClient
from peerloom.net.relay.server import RelayServer
from peerloom.net.stream import Stream

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]
RELAY_SCRIPT = JS_DIR / "relay.mjs"


@pytest.fixture(scope="module")
def js_ready() -> None:
    res = ensure_installed()
    if not res:
        pytest.skip(res.reason)


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def js(*args: str) -> AsyncIterator[JsPeer]:
    async with JsPeer.run(RELAY_SCRIPT, list(args)) as peer:
        yield peer


@contextlib.asynccontextmanager
async def peerloom_host(*, listen: bool = True) -> AsyncIterator[Host]:
    async with Host(Identity.generate()) as host:
        if listen:
            await host.listen("/ip4/127.0.0.1/tcp/0")
        host.set_handler(ECHO_PROTOCOL, echo, limited=True)
        yield host


async def echo_through(host: Host, peer: PeerId, size: int) -> bytes:
    stream = await host.new_stream(peer, [ECHO_PROTOCOL], limited=True)
    payload = os.urandom(size)
    await stream.write(payload)
    await stream.close()
    got = b""
    async with asyncio.timeout(30):
        while chunk := await stream.read():
            got += chunk
    assert got == payload
    return got


async def test_a_js_relay_relays_between_two_peerloom_nodes(js_ready: None) -> None:
    async with js("server") as relay, peerloom_host() as a, peerloom_host() as b:
        client = RelayClient(b)
        client.start()
        try:
            held = await client.reserve(relay.addr)  # js's voucher checked: signed by the relay, for us
            assert held.relay == PeerId.from_string(relay.peer_id) and held.limit is not None
            # js's default limits, 128 KiB and 2 minutes; js 4.2.8 sends the duration in milliseconds (the spec says
            # seconds; js's own client multiplies what it receives by 1000, and our relay sends seconds)
            assert held.limit.data == 1 << 17 and held.limit.duration == 120_000
            conn = await a.connect(held.circuit_addr.encapsulate(f"/p2p/{b.peer_id}"))
            assert conn.limited and conn.relay == held.relay
            await echo_through(a, b.peer_id, 50_000)
            assert len(await a.ping(b.peer_id)) == 1
        finally:
            await client.close()


async def test_a_peerloom_relay_relays_between_two_js_nodes(js_ready: None) -> None:
    async with peerloom_host() as relay:
        server = RelayServer(relay)
        server.start()
        try:
            relay_addr = str(relay.listen_addrs[0])
            async with js("client", "--relay", relay_addr) as b:
                reserved = await b.wait_for("reserved", timeout=30, where=lambda e: any(
                    "p2p-circuit" in a for a in e["addrs"]))
                circuit = next(a for a in reserved["addrs"] if "p2p-circuit" in a)
                assert len(server.table) == 1
                async with js("dial", circuit, "--echo", "60000") as a:
                    result = await a.wait_for("echo", timeout=60)
                    assert result["match"] and result["received"] == 60000 and result["limited"]
                    assert server.relayed_bytes >= 2 * 60000
        finally:
            await server.close()


async def test_dcutr_upgrades_a_relayed_js_peerloom_connection(js_ready: None) -> None:
    async with peerloom_host() as relay, peerloom_host() as a:
        server = RelayServer(relay)
        server.start()
        # js DCUtR ignores loopback addresses: offer our port as /dns4/localhost (which it takes as public) in the
        # exchange only, not in identify, or js would dial it at once (DCUtR's unilateral upgrade) and not punch
        port = a.listen_addrs[0].value_for("tcp")
        puncher = HolePuncher(a, announce=[Multiaddr(f"/dns4/localhost/tcp/{port}")])
        puncher.start()
        try:
            async with js("client", "--relay", str(relay.listen_addrs[0]), "--dcutr", "--port",
                          str(free_port())) as b:
                reserved = await b.wait_for("reserved", timeout=30, where=lambda e: any(
                    "p2p-circuit" in x for x in e["addrs"]))
                circuit = Multiaddr(next(x for x in reserved["addrs"] if "p2p-circuit" in x))
                relayed = await a.connect(circuit)  # we dial: js (B, the relayed connection's acceptor) punches
                assert relayed.limited
                peer = PeerId.from_string(b.peer_id)
                async with asyncio.timeout(60):
                    while peer not in a.connections or a.connections[peer].limited:
                        await asyncio.sleep(0.05)
                direct = a.connections[peer]
                assert direct.remote_address is not None and direct.relay is None
                assert puncher.answered >= 1  # through the exchange (CONNECT, CONNECT, SYNC), js as B
                await echo_through(a, peer, 10_000)  # on the direct connection
        finally:
            await puncher.close()
            await server.close()
