"""Port mappings on the gateway over NAT-PMP: a thin asyncio driver of `natpmp.NatPmpClient` (portmap.PortMapper
chooses between it and UPnP-IGD).

    async with NatPmpMapper(gateway="192.168.1.1") as mapper:    # default: the default route's gateway
        await mapper.wait_for_gateway(2.0)                        # PortMapError when nothing answers NAT-PMP
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
import time
from typing import Any

from peerloom.net.nat.gateway import PortMapError, default_gateway
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


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, mapper: NatPmpMapper) -> None:
        self.mapper = mapper

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.mapper.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.mapper.error_received(exc)


class NatPmpMapper:
    name = "NAT-PMP"

    def __init__(self, gateway: str | None = None, *, port: int = NATPMP_PORT,
                 client: NatPmpClient | None = None) -> None:
        self.gateway = gateway or default_gateway()
        self.port = port
        self.client = client or NatPmpClient()
        self.failures: dict[tuple[str, int], str] = {}
        self.unreachable: str | None = None  # why the gateway cannot be asked (an ICMP port unreachable: no NAT-PMP)
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()

    async def __aenter__(self) -> NatPmpMapper:
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

    def error_received(self, exc: Exception) -> None:
        """The connected socket's ICMP errors: port unreachable means the gateway serves no NAT-PMP, so stop
        waiting for answers that will not come."""
        self.unreachable = f"no NAT-PMP on {self.gateway}:{self.port} ({exc})"
        self._changed.set()

    async def wait_for_gateway(self, timeout: float) -> None:
        """Until the gateway answered the external address request; PortMapError when it did not in `timeout` s
        (or refused NAT-PMP's port): a gateway without NAT-PMP is found out quickly, not after the 64 s of retries."""
        try:
            async with asyncio.timeout(timeout):
                while self.client.external_ip is None and self.unreachable is None:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise PortMapError(f"no NAT-PMP answer from {self.gateway} within {timeout:g} s") from None
        if self.unreachable is not None:
            raise PortMapError(self.unreachable)

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
                while self.client.waiting and self.unreachable is None:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise PortMapError(f"the gateway {self.gateway} did not answer within {timeout:.0f} s") from None
        if self.unreachable is not None:
            raise PortMapError(self.unreachable)
        failed = {key: reason for key, reason in self.failures.items() if key in ports}
        if failed:
            raise PortMapError("; ".join(f"{p} port {n}: {r}" for (p, n), r in failed.items()))

    def external_ports(self) -> list[int]:
        return [m.external_port for m in self.client.mappings.values() if m.external_port]

    def status(self) -> dict[str, Any]:
        return {
            "protocol": self.name,
            "gateway": self.gateway,
            "external_ip": self.client.external_ip,
            "mappings": [{"protocol": m.protocol, "internal_port": m.internal_port, "external_port": m.external_port,
                          "lifetime": m.lifetime, "via": self.name}
                         for m in self.client.mappings.values() if m.external_port],
            "failures": [{"protocol": p, "internal_port": n, "reason": r} for (p, n), r in self.failures.items()],
        }

    async def close(self) -> None:
        """Delete every mapping (waiting briefly for the gateway's answers), then stop."""
        if self._transport is not None and self.client.mappings and self.unreachable is None:
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
