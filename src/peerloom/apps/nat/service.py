"""The node's NAT service: whether it is reachable (AutoNAT v1, client and server) and its port mappings (NAT-PMP or
UPnP-IGD, whichever the gateway speaks: `settings.port_mapping_protocols`).

    node.nat.status()   # {"reachability": "private", "confidence": 1.0, "observed": [...], "confirmed": [...],
                        #  "port_mapping": {"gateway": ..., "external_ip": ..., "mappings": [...]}, ...}

It answers other peers' AutoNAT requests (`settings.autonat_server`), asks the connected peers that serve AutoNAT
whether they can dial it back — soon after the first ones are identified, then every `autonat_interval` (every
minute while the answer is unknown) — and, with `settings.port_mapping`, maps the BitTorrent TCP port, the DHT/uTP
UDP port and the secure layer's TCP port on the gateway, renews them and deletes them when the node stops. The mapped
ports are among the addresses it asks AutoNAT servers to dial, so a working mapping makes the node "public".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from peerloom.codec.multiaddr import Multiaddr
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.host import PeerEvent, PeerIdentified
from peerloom.net.nat.autonat import AUTONAT_PROTOCOL, Reachability, Verdict
from peerloom.net.nat.autonat_driver import AutoNatClient, AutoNatServer
from peerloom.net.nat.portmap import PortMapper
from peerloom.net.stream import Stream
from peerloom.service import NodeContext

log = logging.getLogger(__name__)
FIRST_PROBE_DELAY = 5.0  # seconds after an AutoNAT peer was identified: let a few more connect first
UNKNOWN_RETRY = 60.0  # seconds between probes while the verdict is unknown


class NatService:
    name = "nat"

    def __init__(self, bittorrent_port: Callable[[], int]) -> None:
        self.bittorrent_port = bittorrent_port
        self.protocols: tuple[str, ...] = ()
        self.server: AutoNatServer | None = None
        self.client: AutoNatClient | None = None
        self.mapper: PortMapper | None = None
        self.mapping_error: str | None = None
        self._ctx: NodeContext | None = None
        self._wake = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self.advertised: list[Multiaddr] = []  # confirmed addresses we added to the host's (identify's) listen list

    async def start(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        settings = ctx.settings
        if settings.autonat_server:
            self.server = AutoNatServer(dial_timeout=settings.autonat_dial_timeout)
            self.protocols = (AUTONAT_PROTOCOL,)
        if settings.autonat:
            self.client = AutoNatClient(ctx.host, reachability=Reachability(quorum=settings.autonat_quorum),
                                        timeout=settings.autonat_dial_timeout + 10, mapped_ports=self._mapped_ports)
            self._unsubscribe = ctx.host.subscribe(self._peer_event)
            ctx.tasks.spawn(self._probe_loop(), name="AutoNAT probes")
        if settings.port_mapping:
            ctx.tasks.spawn(self._map_ports(), name="port mapping")

    def _mapped_ports(self) -> list[int]:
        return self.mapper.external_ports() if self.mapper is not None else []

    def ports_to_map(self) -> list[tuple[str, int]]:
        """The BitTorrent TCP port, the UDP port of the DHT and uTP, and the secure layer's TCP port(s)."""
        assert self._ctx is not None
        settings = self._ctx.settings
        port = self.bittorrent_port()
        ports = [("tcp", port)]
        if settings.dht or settings.utp:
            ports.append(("udp", settings.dht_port or port))
        for addr in self._ctx.host.listen_addrs:
            with contextlib.suppress(PeerloomError):
                ports.append(("tcp", addr.to_host_port()[1]))
        return list(dict.fromkeys(p for p in ports if p[1]))

    async def _map_ports(self) -> None:
        assert self._ctx is not None
        settings = self._ctx.settings
        try:
            mapper = PortMapper(settings.port_mapping_gateway or None, protocols=settings.port_mapping_protocols)
            await mapper.start()
            self.mapper = mapper
            await mapper.map(self.ports_to_map())
            self.mapping_error = None
            self._wake.set()  # a new mapping is worth a new probe
        except (PeerloomError, OSError, ValueError) as exc:
            self.mapping_error = str(exc)
            log.warning("port mapping failed: %s", exc)

    async def wait_for_mapping(self, timeout: float) -> None:
        """Until the port mapping answered (mapped or failed), at most `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.mapping_error is None and (self.mapper is None or not self.mapper.external_ports()):
                    await asyncio.sleep(0.05)

    def _peer_event(self, event: PeerEvent) -> None:
        if isinstance(event, PeerIdentified) and AUTONAT_PROTOCOL in event.protocols:
            self._wake.set()

    async def _probe_loop(self) -> None:
        assert self.client is not None and self._ctx is not None
        interval = self._ctx.settings.autonat_interval
        while True:
            await self._wake.wait()
            await asyncio.sleep(FIRST_PROBE_DELAY)
            self._wake.clear()
            if self.client.servers():
                await self.client.probe()
                self._advertise()
            verdict, _ = self.client.reachability.verdict(time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(UNKNOWN_RETRY if verdict is Verdict.UNKNOWN else interval):
                    await self._wake.wait()
            self._wake.set()

    async def probe(self, peers: Sequence[Multiaddr] = ()) -> dict[str, Any]:
        """Dial `peers` (peers serving AutoNAT; one that cannot be reached is logged and skipped), ask the AutoNAT
        servers now, and return the new status."""
        if self.client is None:
            raise PeerloomError("AutoNAT is off on this node")
        assert self._ctx is not None
        host = self._ctx.host

        async def join(addr: Multiaddr) -> None:
            try:
                conn = await host.connect(addr)
                assert conn.remote_peer is not None
                await host.identify(conn.remote_peer)
            except PeerloomError as exc:
                log.info("cannot reach the AutoNAT peer %s: %s", addr, exc)

        await asyncio.gather(*(join(a) for a in peers))
        await self.client.probe()
        self._advertise()
        return self.status()

    def _advertise(self) -> None:
        """Advertise (in identify's listen addresses) exactly the addresses AutoNAT servers reached us on: a public
        address peers can dial, and no longer once the servers stop reaching it."""
        assert self.client is not None and self._ctx is not None
        host = self._ctx.host
        confirmed = self.client.reachability.confirmed(time.monotonic())
        for addr in self.advertised:
            if addr not in confirmed:
                host.remove_listen_addr(addr)
        for addr in confirmed:
            host.add_listen_addr(addr)
        self.advertised = confirmed

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        verdict, confidence = (self.client.reachability.verdict(now) if self.client is not None
                               else (Verdict.UNKNOWN, 0.0))
        return {
            "reachability": verdict.value,
            "confidence": round(confidence, 3),
            "autonat": self.client is not None,
            "answers": [] if self.client is None else [
                {"server": str(a.server), "reachable": a.reachable, "addr": str(a.addr) if a.addr else None,
                 "age": round(now - a.at, 1)} for a in self.client.reachability.answers.values()],
            "observed": [] if self.client is None else [str(a) for a in self.client.observed_addrs()],
            "confirmed": [] if self.client is None else [str(a) for a in self.client.reachability.confirmed(now)],
            "autonat_server": None if self.server is None else {
                status.name: count for status, count in self.server.served.items()},
            "port_mapping": None if self.mapper is None and self.mapping_error is None else {
                **(self.mapper.status() if self.mapper is not None else {}), "error": self.mapping_error},
        }

    def admits(self, peer: PeerId, protocol: str) -> bool:
        return True

    async def handle(self, stream: Stream, protocol: str) -> None:
        assert self.server is not None
        await self.server.handle(stream)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.mapper is not None:
            await self.mapper.close()  # deletes the mappings
        if self.server is not None:
            await self.server.close()
