"""The asyncio driver of local service discovery (BEP 14): one multicast UDP socket and one announce task.

The socket joins the LSD group on one interface with multicast loop on, so nodes on the same host hear each other;
several nodes share the port through SO_REUSEADDR/SO_REUSEPORT. Over IPv4 (239.192.152.143) `interface` is an IPv4
address of it (0.0.0.0 lets the kernel choose the default one, 127.0.0.1 keeps everything on loopback); over IPv6
([ff15::efc0:988f]) it is an interface name ("" lets the kernel choose). A node listening on both families runs one
of each. A link-local IPv6 source keeps its %scope, without which it cannot be dialled.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable

from peerloom.discovery.lsd import ANNOUNCE_INTERVAL, LSD_GROUP, LSD_PORT, LocalDiscovery
from peerloom.errors import PeerloomError

log = logging.getLogger(__name__)

Address = tuple[str, int]


class LsdService(asyncio.DatagramProtocol):
    """Announces the swarms `hashes()` names every `interval` (and at once after `announce_soon`), and calls
    `on_peer(info_hash, (ip, port))` for every other node's announce."""

    def __init__(
        self,
        port: int,
        hashes: Callable[[], list[bytes]],
        on_peer: Callable[[bytes, Address], None],
        *,
        interface: str = "0.0.0.0",
        group: str = LSD_GROUP,
        group_port: int = LSD_PORT,
        interval: float = ANNOUNCE_INTERVAL,
    ) -> None:
        self.hashes = hashes
        self.on_peer = on_peer
        self.interface = interface
        self.group = group
        self.group_port = group_port
        self.v6 = ":" in group
        self.state = LocalDiscovery(port, interval=interval,
                                    host=f"[{group}]:{group_port}" if self.v6 else f"{group}:{group_port}")
        self.transport: asyncio.DatagramTransport | None = None
        self.sent = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Join the group and start announcing; PeerloomError when the system refuses multicast."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if self.v6 else socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if self.v6:
                self._join_v6(sock)
            else:
                self._join_v4(sock)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise PeerloomError(
                f"local peer discovery cannot join {self.group} port {self.group_port} on "
                f"{self.interface or 'the default interface'}: {exc.strerror}"
            ) from exc
        await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self._task = asyncio.create_task(self._announce_loop(), name="lsd announces")

    def _join_v4(self, sock: socket.socket) -> None:
        sock.bind(("", self.group_port))
        interface = socket.inet_aton(self.interface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(self.group) + interface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)  # BEP 14: the local network only

    def _join_v6(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # IPv4 announces go to the IPv4 socket
        sock.bind(("::", self.group_port))
        index = socket.if_nametoindex(self.interface) if self.interface else 0
        membership = socket.inet_pton(socket.AF_INET6, self.group) + struct.pack("@I", index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)  # BEP 14: the local network only

    def announce_soon(self) -> None:
        """A swarm was added: announce what is due now rather than at the next round."""
        self._wake.set()

    async def _announce_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = loop.time()
            try:
                datagrams = self.state.due(self.hashes(), now)
            except Exception:
                log.exception("LSD: cannot list the swarms to announce")
                datagrams = []
            for datagram in datagrams:
                if self.transport is None or self.transport.is_closing():
                    return
                self.transport.sendto(datagram, (self.group, self.group_port))
                self.sent += 1
            delay = max(0.05, self.state.next_due(now) - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        host = _source(addr)
        for info_hash, port in self.state.receive(data):
            try:
                self.on_peer(info_hash, (host, port))
            except Exception:
                log.exception("LSD: handling a peer from %s failed", addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("LSD socket: %r", exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None


def _source(addr: tuple) -> str:
    """The sender's IP from a datagram's source address; an IPv6 link-local one with its %scope (the 4th item)."""
    host = str(addr[0])
    if len(addr) >= 4 and addr[3] and "%" not in host:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_link_local:
                return f"{host}%{addr[3]}"
    return host


class LsdGroups:
    """Local service discovery in each group the node joined (BEP 14's IPv4 and IPv6 ones, as the BitTorrent port
    takes either family): one `LsdService` each, told together; their counters summed."""

    def __init__(self, services: list[LsdService]) -> None:
        self.services = services

    def announce_soon(self) -> None:
        for service in self.services:
            service.announce_soon()

    @property
    def sent(self) -> int:
        """Announces multicast, over every group."""
        return sum(s.sent for s in self.services)

    @property
    def received(self) -> int:
        """Other nodes' announces heard."""
        return sum(s.state.received for s in self.services)

    @property
    def own(self) -> int:
        """Our own announces looped back (and dropped by their cookie)."""
        return sum(s.state.own for s in self.services)
