"""The node's port mappings on its gateway, over NAT-PMP or UPnP-IGD: whichever works first holds them all.

    async with PortMapper(gateway="192.168.1.1", protocols=("natpmp", "upnp")) as mapper:  # gateway: default route's
        await mapper.map([("tcp", 6881), ("udp", 6881), ("tcp", 4001)])
        mapper.status()            # which protocol holds the mappings, external IP, each mapping's port and lifetime
    # on exit: every mapping deleted through the protocol that made it

Each protocol in turn is asked for every port; a protocol that fails (the gateway does not speak it, or refuses a
port) is closed — deleting what it did map — and the next one is tried. The one that mapped everything renews and,
on exit, deletes the mappings. NAT-PMP first: one datagram, and a gateway without it says so at once (ICMP port
unreachable) or within `probe_timeout`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from peerloom.net.nat.gateway import PortMapError, default_gateway
from peerloom.net.nat.natpmp import NATPMP_PORT
from peerloom.net.nat.natpmp_driver import NatPmpMapper
from peerloom.net.nat.upnp_driver import UpnpMapper

__all__ = ["PROTOCOLS", "PortMapError", "PortMapper", "default_gateway"]
PROTOCOLS = ("natpmp", "upnp")  # the setting `port_mapping_protocols` names these, in the order to try them
PROBE_TIMEOUT = 2.0  # seconds a silent gateway gets to answer NAT-PMP before UPnP-IGD is tried


class Mapper(Protocol):
    name: str

    async def map(self, ports: list[tuple[str, int]], *, lifetime: int = ..., timeout: float = ...) -> None: ...
    def external_ports(self) -> list[int]: ...
    def status(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class PortMapper:
    def __init__(self, gateway: str | None = None, *, protocols: Sequence[str] = PROTOCOLS,
                 natpmp_port: int = NATPMP_PORT, probe_timeout: float = PROBE_TIMEOUT) -> None:
        unknown = [p for p in protocols if p not in PROTOCOLS]
        if unknown or not protocols:
            raise ValueError(f"port mapping protocols must be among {', '.join(PROTOCOLS)}, not {list(protocols)}")
        self.gateway = gateway or default_gateway()
        self.protocols = tuple(protocols)
        self.natpmp_port = natpmp_port
        self.probe_timeout = probe_timeout
        self.active: Mapper | None = None  # the protocol that holds the mappings
        self.attempts: dict[str, str] = {}  # protocol name -> why it did not work

    async def __aenter__(self) -> PortMapper:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self.gateway is None and "upnp" not in self.protocols:
            raise PortMapError("no default gateway to ask for port mappings")

    async def _open(self, protocol: str) -> Mapper:
        if protocol == "natpmp":
            if self.gateway is None:
                raise PortMapError("no default gateway to ask")
            natpmp = NatPmpMapper(self.gateway, port=self.natpmp_port)
            try:
                await natpmp.start()
                await natpmp.wait_for_gateway(self.probe_timeout)
            except BaseException:
                await natpmp.close()
                raise
            return natpmp
        upnp = UpnpMapper(self.gateway)  # None: whichever IGD answers the multicast search
        await upnp.start()
        return upnp

    async def map(self, ports: list[tuple[str, int]], *, lifetime: int = 7200, timeout: float = 10.0) -> None:
        """Map every (protocol, port): through the protocol already holding mappings, else the first that maps them
        all. PortMapError saying why each protocol failed."""
        if self.active is not None:
            await self.active.map(ports, lifetime=lifetime, timeout=timeout)
            return
        for protocol in self.protocols:
            mapper: Mapper | None = None
            try:
                mapper = await self._open(protocol)
                await mapper.map(ports, lifetime=lifetime, timeout=timeout)
            except (PortMapError, OSError) as exc:
                self.attempts[protocol] = str(exc) or type(exc).__name__
                if mapper is not None:
                    await mapper.close()  # deletes what it did map
                continue
            self.active = mapper
            return
        raise PortMapError("; ".join(f"{NAMES[p]}: {reason}" for p, reason in self.attempts.items()))

    def external_ports(self) -> list[int]:
        return self.active.external_ports() if self.active is not None else []

    def status(self) -> dict[str, Any]:
        status = self.active.status() if self.active is not None else {
            "protocol": None, "gateway": self.gateway, "external_ip": None, "mappings": [], "failures": []}
        return {**status, "attempts": {NAMES[p]: reason for p, reason in self.attempts.items()}}

    async def close(self) -> None:
        if self.active is not None:
            await self.active.close()


NAMES = {"natpmp": NatPmpMapper.name, "upnp": UpnpMapper.name}
