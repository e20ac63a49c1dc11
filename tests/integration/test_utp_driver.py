"""uTP drivers on real UDP sockets on loopback: a byte-identical transfer both ways through the asyncio transport,
refused dials, hostile datagrams that cost one connection while the driver keeps serving, and a driver attached to
sockets someone else owns."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from peerloom.torrent.utp import UtpConfig
from peerloom.torrent.utp_driver import (
    PMTU_OPTIONS,
    PMTUDISC_DONT,
    UtpDriver,
    UtpTransport,
    gso_supported,
    pmtu_mode,
    set_pmtu_mode,
)
from peerloom.torrent.utp_packet import PacketType, encode_header


class Collector(asyncio.Protocol):
    """Keeps what arrives and notes how the connection ended."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool | None:
        self.eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def until(condition: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


@asynccontextmanager
async def drivers(config: UtpConfig | None = None, **options: object
                  ) -> AsyncIterator[tuple[UtpDriver, UtpDriver, list[Collector]]]:
    accepted: list[Collector] = []

    def incoming(address: tuple[str, int]) -> Collector:
        accepted.append(Collector())
        return accepted[-1]

    server = UtpDriver(config=config, on_incoming=incoming, **options)  # type: ignore[arg-type]
    client = UtpDriver(config=config, **options)  # type: ignore[arg-type]
    await server.open("127.0.0.1", 0)
    await client.open("127.0.0.1", 0)
    try:
        yield server, client, accepted
    finally:
        client.close()
        server.close()


async def test_transfer_both_ways_is_byte_identical_and_closes_in_order() -> None:
    up, down = random.Random(1).randbytes(4 << 20), random.Random(2).randbytes(1 << 20)
    async with drivers(UtpConfig(max_payload=1400)) as (server, client, accepted):
        assert server.local_address is not None
        transport, proto = await client.connect(server.local_address, Collector, timeout=5)
        assert isinstance(transport, UtpTransport) and isinstance(proto, Collector)
        transport.write(up)
        await until(lambda: accepted and len(accepted[0].data) == len(up))
        far = accepted[0]
        assert far.transport is not None
        far.transport.write(down)
        await until(lambda: len(proto.data) == len(down))
        assert bytes(far.data) == up and bytes(proto.data) == down
        assert transport.get_extra_info("peername") == server.local_address
        transport.close()
        assert await asyncio.wait_for(far.lost, 5) is None and far.eof
        assert await asyncio.wait_for(proto.lost, 5) is None
        await until(lambda: server.connections == 0 and client.connections == 0)


def _gso_here() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return gso_supported(s)


@pytest.mark.parametrize("batched", [True, False], ids=["gso", "one-by-one"])
async def test_full_size_packets_leave_in_batched_sends_and_arrive_byte_identical(batched: bool) -> None:
    """Standard 1,400-byte packets (no loopback large-datagram extension): with UDP GSO a run of them goes in one
    sendmsg that the kernel cuts into datagrams; without it, one sendto each. Either way the same bytes arrive."""
    if batched and not _gso_here():
        pytest.skip("this kernel has no UDP GSO (UDP_SEGMENT)")
    up = random.Random(3).randbytes(8 << 20)
    async with drivers(UtpConfig(max_payload=1400), loopback_payload=0, batched_sends=batched) as (
            server, client, accepted):
        assert server.local_address is not None
        transport, _ = await client.connect(server.local_address, Collector, timeout=5)
        transport.write(up)
        await until(lambda: accepted and len(accepted[0].data) == len(up), timeout=30)
        assert bytes(accepted[0].data) == up
        assert transport.get_extra_info("utp_mtu")[0] <= 1500  # standard datagrams: no large-packet extension
        if batched:
            assert client.gso_sends > 0
        else:
            assert client.gso_sends == 0
        transport.close()


async def test_dialing_a_driver_that_accepts_nothing_is_refused() -> None:
    refuser = UtpDriver()
    client = UtpDriver()
    await refuser.open("127.0.0.1", 0)
    await client.open("127.0.0.1", 0)
    try:
        assert refuser.local_address is not None
        with pytest.raises(ConnectionError, match="refused"):
            await client.connect(refuser.local_address, Collector, timeout=5)
        assert refuser.resets_sent == 1
    finally:
        client.close()
        refuser.close()


@pytest.mark.parametrize(
    "wild",
    [
        lambda cid: encode_header(PacketType.DATA, cid, 30_000, 0, 1 << 20, 0, 0) + b"x",  # far past the window
        lambda cid: b"\x01\x02" + encode_header(PacketType.DATA, cid, 1, 0, 0, 0, 0)[2:] + b"\x02\x00" * 20,  # chain
        lambda cid: b"\x01\x01" + encode_header(PacketType.DATA, cid, 1, 0, 0, 0, 0)[2:] + b"\x00\xff",  # sack length
    ],
)
async def test_a_peer_sending_wild_packets_is_dropped_and_the_driver_stays_up(wild: object) -> None:
    async with drivers() as (server, client, accepted):
        assert server.local_address is not None
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.bind(("127.0.0.1", 0))
        raw.setblocking(False)
        try:
            raw.sendto(encode_header(PacketType.SYN, 777, 1, 0, 1 << 20, 0, 0), server.local_address)
            await until(lambda: len(accepted) == 1)
            raw.sendto(wild(778), server.local_address)  # type: ignore[operator]  # BEP 29: data goes on id + 1
            exc = await asyncio.wait_for(accepted[0].lost, 5)
            assert isinstance(exc, ConnectionError)
            await asyncio.sleep(0.05)
            replies = []
            while True:
                try:
                    replies.append(raw.recv(2048))
                except BlockingIOError:
                    break
            assert any(r[0] >> 4 == PacketType.RESET for r in replies)
        finally:
            raw.close()
        transport, _ = await client.connect(server.local_address, Collector, timeout=5)  # the driver still serves
        transport.write(b"still here")
        await until(lambda: len(accepted) == 2 and bytes(accepted[1].data) == b"still here")
        assert server.internal_errors == 0


async def test_a_protocol_that_pauses_reading_closes_the_window() -> None:
    async with drivers() as (server, client, accepted):
        assert server.local_address is not None
        transport, _ = await client.connect(server.local_address, Collector, timeout=5)
        await until(lambda: accepted and accepted[0].transport is not None)
        far = accepted[0].transport
        assert isinstance(far, UtpTransport)
        far.pause_reading()
        transport.write(bytes(3 << 20))
        await asyncio.sleep(0.3)
        assert not accepted[0].data and not far.is_reading()
        assert transport.get_write_buffer_size() >= (3 << 20) - 2 * far.sock.config.recv_window  # the sender waits
        far.resume_reading()
        await until(lambda: len(accepted[0].data) == 3 << 20)


class Owner(asyncio.DatagramProtocol):
    """Another protocol's UDP socket (the DHT's, in a node) that hands uTP the datagrams it receives."""

    def __init__(self, driver: UtpDriver) -> None:
        self.driver = driver

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.driver.datagram_received(data, addr)


async def test_a_driver_attached_to_another_owners_socket_leaves_it_as_it_found_it() -> None:
    accepted: list[Collector] = []

    def incoming(address: tuple[str, int]) -> Collector:
        accepted.append(Collector())
        return accepted[-1]

    server = UtpDriver(on_incoming=incoming)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    set_pmtu_mode(sock, PMTUDISC_DONT)  # the owner's choice, which uTP switches only around its own datagrams
    udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: Owner(server), sock=sock)
    client = UtpDriver()
    await client.open("127.0.0.1", 0)
    try:
        server.attach({socket.AF_INET: (sock, udp)}, sock.getsockname())
        transport, proto = await client.connect(sock.getsockname(), Collector, timeout=5)
        await until(lambda: accepted and accepted[0].transport is not None)
        far = accepted[0].transport
        assert far is not None
        far.write(b"from the shared socket" * 1000)  # sent by the attached driver on the owner's socket
        await until(lambda: len(proto.data) == 22_000)
        transport.write(b"to it")
        await until(lambda: bytes(accepted[0].data) == b"to it")
        assert pmtu_mode(sock) == (PMTUDISC_DONT if PMTU_OPTIONS else None)
        server.close()
        assert await asyncio.wait_for(proto.lost, 5) is not None  # the attached driver reset its connections
        assert sock.fileno() != -1 and not udp.is_closing()  # and left the socket to its owner
    finally:
        client.close()
        udp.close()
