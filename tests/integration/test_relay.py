"""Circuit Relay v2 on loopback between three peerloom hosts: a relay R, a client B that reserves on it, and A that
reaches B through R; the relay's limits (bytes, duration, reservation caps) are enforced."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from peerloom.codec.multiaddr import Multiaddr
from peerloom.identity import Identity
from peerloom.net.connection import LinkError
from peerloom.net.host import Host
from peerloom.net.relay.client import RelayClient
from peerloom.net.relay.messages import HOP_PROTOCOL, HopMessage, HopType, Status, decode_hop, encode_hop
from peerloom.net.relay.reservations import RelayLimits
from peerloom.net.relay.server import RelayServer
from peerloom.net.relay.wire import RelayRefused, read_message
from peerloom.net.stream import Stream, StreamError

ECHO = "/test/echo/1.0.0"


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


@dataclass
class Trio:
    relay: Host
    server: RelayServer
    relay_addr: Multiaddr
    a: Host
    b: Host
    client: RelayClient


@contextlib.asynccontextmanager
async def trio(limits: RelayLimits | None = None, *, echo_limited: bool = True) -> AsyncIterator[Trio]:
    relay, a, b = (Host(Identity.generate()) for _ in range(3))
    server = RelayServer(relay, limits or RelayLimits())
    client = RelayClient(b)
    async with relay, a, b:
        relay_addr = await relay.listen("/ip4/127.0.0.1/tcp/0")
        server.start()
        client.start()
        b.set_handler(ECHO, echo, limited=echo_limited)
        try:
            yield Trio(relay, server, relay_addr, a, b, client)
        finally:
            await client.close()
            await server.close()


async def test_a_reaches_b_through_the_relay_on_a_limited_connection() -> None:
    async with trio() as t:
        held = await t.client.reserve(t.relay_addr)
        assert held.relay == t.relay.peer_id and held.limit is not None
        circuit = held.circuit_addr.encapsulate(f"/p2p/{t.b.peer_id}")
        assert circuit in t.b.listen_addrs
        conn = await t.a.connect(circuit)
        assert conn.limited and conn.relay == t.relay.peer_id and conn.remote_peer == t.b.peer_id
        assert conn.remote_address is None
        assert t.b.connections[t.a.peer_id].limited
        assert len(await t.a.ping(t.b.peer_id, count=2)) == 2  # ping runs on limited connections
        info = await t.a.identify(t.b.peer_id)
        assert ECHO in info.protocols and info.observed_addr is None
        stream = await t.a.new_stream(t.b.peer_id, [ECHO], limited=True)
        payload = os.urandom(100_000)
        await stream.write(payload)
        await stream.close()
        got = b""
        while chunk := await stream.read():
            got += chunk
        assert got == payload
        with pytest.raises(LinkError, match="limited"):  # not unless the caller says the protocol runs on it
            await t.a.new_stream(t.b.peer_id, [ECHO])


async def test_protocols_not_marked_limited_are_refused_over_a_relay() -> None:
    async with trio(echo_limited=False) as t:
        held = await t.client.reserve(t.relay_addr)
        await t.a.connect(held.circuit_addr.encapsulate(f"/p2p/{t.b.peer_id}"))
        with pytest.raises(LinkError):
            await t.a.new_stream(t.b.peer_id, [ECHO], limited=True)


async def test_a_peer_without_a_reservation_cannot_be_reached() -> None:
    async with trio() as t:
        circuit = t.relay_addr.encapsulate(f"/p2p-circuit/p2p/{t.b.peer_id}")
        with pytest.raises(RelayRefused) as caught:
            await t.a.connect(circuit)
        assert caught.value.status is Status.NO_RESERVATION


async def test_a_circuit_exceeding_its_bytes_is_cut() -> None:
    async with trio(RelayLimits(circuit_data=64 * 1024, circuit_duration=0)) as t:
        held = await t.client.reserve(t.relay_addr)
        await t.a.connect(held.circuit_addr.encapsulate(f"/p2p/{t.b.peer_id}"))
        stream = await t.a.new_stream(t.b.peer_id, [ECHO], limited=True)
        with pytest.raises((StreamError, LinkError)):
            async with asyncio.timeout(30):
                for _ in range(64):
                    await stream.write(os.urandom(16 * 1024))
                    await stream.read()
        async with asyncio.timeout(30):
            while t.a.peer_id in t.b.connections or t.b.peer_id in t.a.connections:
                await asyncio.sleep(0.05)
        assert t.server.table.circuits == 0


async def test_a_circuit_outliving_its_duration_is_cut() -> None:
    async with trio(RelayLimits(circuit_duration=1, circuit_data=0)) as t:
        held = await t.client.reserve(t.relay_addr)
        conn = await t.a.connect(held.circuit_addr.encapsulate(f"/p2p/{t.b.peer_id}"))
        async with asyncio.timeout(30):
            while not conn.closed:
                await asyncio.sleep(0.05)
        assert t.b.peer_id not in t.a.connections
        assert t.server.table.circuits == 0


async def test_a_thousand_reservations_from_one_peer_keep_one_entry() -> None:
    async with trio(RelayLimits(max_reservations=4, max_reservations_per_ip=2)) as t:
        for _ in range(1000):
            stream = await t.b.new_stream(t.relay_addr, [HOP_PROTOCOL])
            await stream.write(encode_hop(HopMessage(HopType.RESERVE)))
            answer = await read_message(stream, decode_hop)
            await stream.close()
            assert answer.status is Status.OK
        assert len(t.server.table) == 1 and t.server.table.state_size() == 2
        statuses = []
        async with contextlib.AsyncExitStack() as stack:  # the per-IP cap (all on 127.0.0.1) refuses the third
            for _ in range(3):
                host = await stack.enter_async_context(Host(Identity.generate()))
                try:
                    await RelayClient(host).reserve(t.relay_addr)
                    statuses.append(Status.OK)
                except RelayRefused as exc:
                    statuses.append(exc.status)
            assert statuses == [Status.OK, Status.RESOURCE_LIMIT_EXCEEDED, Status.RESOURCE_LIMIT_EXCEEDED]
            assert len(t.server.table) == 2
        async with asyncio.timeout(10):  # reservations end with their peers' connections
            while len(t.server.table) > 1:
                await asyncio.sleep(0.05)


async def test_dcutr_upgrades_a_relayed_connection_to_a_direct_one() -> None:
    from peerloom.net.nat.dcutr_driver import HolePuncher

    async with trio() as t:
        punchers = [HolePuncher(t.a), HolePuncher(t.b)]
        for puncher in punchers:
            puncher.start()
        try:
            await t.a.listen("/ip4/127.0.0.1/tcp/0")  # A needs a port to punch from (B has one: see below)
            await t.b.listen("/ip4/127.0.0.1/tcp/0")
            held = await t.client.reserve(t.relay_addr)
            relayed = await t.a.connect(held.circuit_addr.encapsulate(f"/p2p/{t.b.peer_id}"))
            assert relayed.limited
            async with asyncio.timeout(30):
                while t.b.peer_id not in t.a.connections or t.a.connections[t.b.peer_id].limited:
                    await asyncio.sleep(0.05)
                while t.a.peer_id not in t.b.connections or t.b.connections[t.a.peer_id].limited:
                    await asyncio.sleep(0.05)
            direct_a, direct_b = t.a.connections[t.b.peer_id], t.b.connections[t.a.peer_id]
            assert direct_a.remote_address is not None and direct_b.remote_address is not None
            assert direct_a.initiator and not direct_b.initiator  # DCUtR's roles: A the client, B the server
            assert relayed.closed
            stream = await t.a.new_stream(t.b.peer_id, [ECHO])  # a direct connection runs every protocol
            await stream.write(b"direct")
            await stream.close()
            assert await stream.read() == b"direct"
            assert punchers[1].upgraded == 1 and punchers[1].attempts >= 1
        finally:
            for puncher in punchers:
                await puncher.close()
