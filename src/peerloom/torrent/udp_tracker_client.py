"""The asyncio driver of UDP trackers (BEP 15): moves datagrams between `udp_tracker` exchanges and a socket.

One datagram endpoint per address family serves every announce and scrape of a client; an answer goes
to the exchange waiting on its (tracker address, transaction id), anything else is dropped. Connection
ids are cached per tracker address until they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from peerloom.torrent.tracker import AnnounceRequest, AnnounceResponse, ScrapeStats, TrackerError
from peerloom.torrent.udp_tracker import (
    MAX_SCRAPE_HASHES,
    RETRANSMIT_BASE,
    AnnounceQuery,
    ConnectionIds,
    Query,
    ScrapeQuery,
    UdpTrackerExchange,
    UdpTrackerUrl,
    parse_udp_url,
    transaction_id,
)

log = logging.getLogger(__name__)

R = TypeVar("R")
Address = tuple[str, int]


class _Endpoint(asyncio.DatagramProtocol):
    """A UDP socket whose incoming datagrams are handed to the future waiting on their address and txid."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = False
        self._waiting: dict[tuple[Address, int], asyncio.Future[bytes]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        txid = transaction_id(data)
        if txid is None:
            return
        waiter = self._waiting.get(((addr[0], addr[1]), txid))
        if waiter is not None and not waiter.done():
            waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP tracker socket error: %r", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(TrackerError("UDP tracker socket closed"))

    def expect(self, addr: Address, txid: int) -> asyncio.Future[bytes]:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[(addr, txid)] = waiter
        return waiter

    def forget(self, addr: Address, txid: int) -> None:
        self._waiting.pop((addr, txid), None)

    def send(self, data: bytes, addr: Address) -> None:
        if self.transport is None or self.transport.is_closing():
            raise TrackerError("UDP tracker socket closed")
        self.transport.sendto(data, addr)


class UdpTrackerClient:
    """Announces and scrapes over UDP. `timeout` bounds each call (DNS, connect, retries, answer);
    `retransmit_base` is BEP 15's 15 s, shorter in tests."""

    def __init__(self, *, timeout: float = 15.0, retransmit_base: float = RETRANSMIT_BASE,
                 families: frozenset[int] = frozenset()) -> None:
        self.timeout = timeout
        # the address families our BitTorrent port takes (empty: any): a tracker records the address it is reached
        # from, so one reached over a family we do not listen on would hand out an address nobody can dial
        self.families = families or frozenset((socket.AF_INET, socket.AF_INET6))
        self.retransmit_base = retransmit_base
        self.connection_ids = ConnectionIds()
        self._endpoints: dict[int, _Endpoint] = {}

    async def announce(self, url: str, req: AnnounceRequest) -> AnnounceResponse:
        target = parse_udp_url(url)
        async with self._deadline(target):
            family, addr = await self._resolve(target)
            query = AnnounceQuery(req, v6=family == socket.AF_INET6, url_data=target.url_data)
            return await self._exchange(family, addr, query)

    async def scrape(self, url: str, info_hashes: list[bytes]) -> dict[bytes, ScrapeStats]:
        """Counts for each info-hash, asked in packets of at most 74 (BEP 15)."""
        target = parse_udp_url(url)
        out: dict[bytes, ScrapeStats] = {}
        async with self._deadline(target):
            family, addr = await self._resolve(target)
            for i in range(0, len(info_hashes), MAX_SCRAPE_HASHES):
                batch = tuple(info_hashes[i : i + MAX_SCRAPE_HASHES])
                out.update(await self._exchange(family, addr, ScrapeQuery(batch)))
        return out

    async def close(self) -> None:
        for endpoint in self._endpoints.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        self._endpoints.clear()

    @contextlib.asynccontextmanager
    async def _deadline(self, target: UdpTrackerUrl) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except TimeoutError as exc:
            raise TrackerError(f"UDP tracker {target.host}:{target.port} did not answer in {self.timeout:g} s") from exc

    async def _resolve(self, target: UdpTrackerUrl) -> tuple[int, Address]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise TrackerError(f"cannot resolve UDP tracker {target.host}: {exc}") from exc
        for family, _, _, _, sockaddr in infos:
            if family in self.families:
                return family, (str(sockaddr[0]), int(sockaddr[1]))
        raise TrackerError(f"UDP tracker {target.host} has no IP address of a family this node listens on")

    async def _endpoint(self, family: int) -> _Endpoint:
        endpoint = self._endpoints.get(family)
        if endpoint is not None and not endpoint.closed:
            return endpoint
        loop = asyncio.get_running_loop()
        try:
            _, endpoint = await loop.create_datagram_endpoint(_Endpoint, family=family)
        except OSError as exc:
            raise TrackerError(f"cannot open a UDP socket: {exc.strerror}") from exc
        current = self._endpoints.get(family)
        if current is not None and not current.closed:  # another call made one meanwhile
            assert endpoint.transport is not None
            endpoint.transport.close()
            return current
        self._endpoints[family] = endpoint
        return endpoint

    async def _exchange(self, family: int, addr: Address, query: Query[R]) -> R:
        """Run one exchange to its result: send, wait until its deadline, retransmit or go on."""
        endpoint = await self._endpoint(family)
        loop = asyncio.get_running_loop()
        exchange = UdpTrackerExchange(
            query, connection=self.connection_ids.get(addr, loop.time()), retransmit_base=self.retransmit_base
        )
        datagram: bytes | None = exchange.start(loop.time())
        while datagram is not None:
            txid = exchange.txid
            waiter = endpoint.expect(addr, txid)
            try:
                endpoint.send(datagram, addr)
                async with asyncio.timeout_at(exchange.deadline):  # not wait_for: it can drop a cancel on 3.11
                    reply = await waiter
            except TimeoutError:
                datagram = exchange.timed_out(loop.time())
                continue
            finally:
                endpoint.forget(addr, txid)
            try:
                datagram = exchange.receive(reply, loop.time())
            except TrackerError:
                self.connection_ids.forget(addr)  # a refusal may mean the tracker no longer knows our id
                raise
            if exchange.connection is not None:
                self.connection_ids.put(addr, exchange.connection, loop.time())
        assert exchange.result is not None
        return exchange.result
