"""The node's port mappings on its gateway over NAT-PMP: a thin asyncio driver of `natpmp.NatPmpClient`.

    async with PortMapper(gateway="192.168.1.1") as mapper:      # default: the default route's gateway
        await mapper.map([("tcp", 6881), ("udp", 6881), ("tcp", 4001)])
        mapper.status()            # external IP, each mapping's external port and lifetime
    # on exit: every mapping deleted (lifetime 0), the socket closed

One UDP socket connected to (gateway, 5351); one task re-arms a timer from the core's `next_wakeup()` (the aioquic way)
to retransmit and to renew each mapping halfway through its lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from pathlib import Path
from typing import Any

from peerloom.errors import PeerloomError
from peerloom.net.nat.natpmp import (
    NATPMP_PORT,
    ExternalAddress,
    Mapped,
    MappingFailed,
    NatPmpClient,
    NatPmpError,
)

log = logging.getLogger(__name__)
REMOVE_TIMEOUT = 3.0  # seconds to wait on exit for the gateway to confirm the deletions


class PortMapError(PeerloomError):
    """No gateway, or the gateway refused or never answered."""


def default_gateway(route_file: Path = Path("/proc/net/route")) -> str | None:
    """The IPv4 default route's gateway on Linux (None elsewhere or without one)."""
    with contextlib.suppress(OSError):
        for line in route_file.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 2 and fields[1] == "00000000" and fields[2] != "00000000":
                return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
    return None


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, mapper: PortMapper) -> None:
        self.mapper = mapper

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.mapper.datagram_received(data, addr)


class PortMapper:
    def __init__(self, gateway: str | None = None, *, port: int = NATPMP_PORT,
                 client: NatPmpClient | None = None) -> None:
        self.gateway = gateway or default_gateway()
        self.port = port
        self.client = client or NatPmpClient()
        self.failures: dict[tuple[str, int], str] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()

    async def __aenter__(self) -> PortMapper:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self.gateway is None:
            raise PortMapError("no default gateway to ask for port mappings")
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(self),
                                                                 remote_addr=(self.gateway, self.port))
        self._timer = asyncio.create_task(self._run(), name="NAT-PMP timer")
        self.client.request_external_address(time.monotonic())
        self._wake.set()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[0] != self.gateway:  # §3.1: only the gateway's answers count
            return
        try:
            events = self.client.datagram_received(data, time.monotonic())
        except NatPmpError as exc:
            log.debug("bad NAT-PMP datagram from %s: %s", addr, exc)
            return
        self._events(events)

    def _events(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, MappingFailed):
                self.failures[(event.protocol, event.internal_port)] = event.reason
            elif isinstance(event, Mapped):
                self.failures.pop((event.protocol, event.internal_port), None)
            elif isinstance(event, ExternalAddress):
                log.info("the gateway's external address: %s", event.ip)
        if events:
            self._changed.set()
        self._wake.set()

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            self._events(self.client.tick(now))
            self._wake.clear()
            assert self._transport is not None
            for datagram in self.client.datagrams_to_send(now):
                self._transport.sendto(datagram)
            wakeup = self.client.next_wakeup()
            timeout = None if wakeup is None else max(0.0, wakeup - time.monotonic())
            with contextlib.suppress(TimeoutError):  # not wait_for: on 3.11 it can swallow the cancel of close()
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def map(self, ports: list[tuple[str, int]], *, lifetime: int = 7200, timeout: float = 10.0) -> None:
        """Ask for each (protocol, port) and wait until the gateway answered each; PortMapError when one failed."""
        now = time.monotonic()
        for protocol, port in ports:
            self.failures.pop((protocol, port), None)
            self.client.add_mapping(protocol, port, lifetime=lifetime, now=now)
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                while self.client.waiting:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise PortMapError(f"the gateway {self.gateway} did not answer within {timeout:.0f} s") from None
        failed = {key: reason for key, reason in self.failures.items() if key in ports}
        if failed:
            raise PortMapError("; ".join(f"{p} port {n}: {r}" for (p, n), r in failed.items()))

    def external_ports(self) -> list[int]:
        return [m.external_port for m in self.client.mappings.values() if m.external_port]

    def status(self) -> dict[str, Any]:
        return {
            "protocol": "NAT-PMP",
            "gateway": self.gateway,
            "external_ip": self.client.external_ip,
            "mappings": [{"protocol": m.protocol, "internal_port": m.internal_port, "external_port": m.external_port,
                          "lifetime": m.lifetime} for m in self.client.mappings.values() if m.external_port],
            "failures": [{"protocol": p, "internal_port": n, "reason": r} for (p, n), r in self.failures.items()],
        }

    async def close(self) -> None:
        """Delete every mapping (waiting briefly for the gateway's answers), then stop."""
        if self._transport is not None and self.client.mappings:
            self.client.remove_all(time.monotonic())
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REMOVE_TIMEOUT):
                    while self.client.mappings and self.client.waiting:
                        self._changed.clear()
                        await self._changed.wait()
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
