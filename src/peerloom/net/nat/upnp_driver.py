"""Port mappings on the gateway over UPnP-IGD: the asyncio driver of the sans-I/O `upnp` module (SSDP over UDP, the
description and the SOAP actions over HTTP with aiohttp).

    async with UpnpMapper(gateway="192.168.1.1") as mapper:   # None: any IGD that answers the multicast search
        await mapper.map([("tcp", 6881), ("udp", 6881)], lifetime=7200)
        mapper.status()
    # on exit: DeletePortMapping for each, the HTTP session closed

Discovery sends M-SEARCH for the IGD and its WAN connection services to 239.255.255.250:1900 out of the interface that
reaches the gateway, and unicast to the gateway itself (UDA 2.0 §1.3.3; some IGDs answer only one of the two). Only an
answer whose LOCATION is on the host that sent it counts, and with a gateway known only the gateway's. Every HTTP
exchange has a timeout and a size bound. Leases are renewed halfway; an IGD that refuses limited leases (IGDv1 error
725) gets a permanent mapping (lease 0), which is why the deletion on exit matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from peerloom.net.nat.gateway import PortMapError, local_address_towards
from peerloom.net.nat.upnp import (
    MAX_DESCRIPTION,
    MAX_SOAP,
    SEARCH_TARGETS,
    SSDP_ADDR,
    Gateway,
    Lease,
    SoapFault,
    UpnpError,
    add_port_mapping_args,
    conflict,
    delete_port_mapping_args,
    encode_msearch,
    encode_soap_request,
    external_ip,
    lease_refused,
    next_renewal,
    parse_description,
    parse_soap_response,
    parse_ssdp_response,
    reserved_port,
)

log = logging.getLogger(__name__)
SEARCH_TIMEOUT = 2.0  # seconds to wait for SSDP answers (the M-SEARCH asks for them within MX = 1 s)
HTTP_TIMEOUT = 5.0  # seconds for one description fetch or SOAP action
MAX_ANSWERS = 16  # SSDP answers kept per search: a busy LAN's other devices cannot fill memory
REMOVE_TIMEOUT = 3.0  # seconds to spend deleting the mappings on exit
OTHER_PORT_TRIES = 3  # IGDv1: random external ports tried when the node's own port is mapped to another client


class _Answers(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue(MAX_ANSWERS)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait((data, addr[0]))


async def _read_bounded(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise PortMapError(f"{what} of {response.content_length} bytes (at most {limit})")
    data = bytearray()
    async for chunk in response.content.iter_chunked(8192):
        data += chunk
        if len(data) > limit:
            raise PortMapError(f"{what} longer than {limit} bytes")
    return bytes(data)


async def discover(session: aiohttp.ClientSession, gateway: str | None, *,
                   timeout: float = SEARCH_TIMEOUT) -> Gateway:
    """The first IGD that answers the search (only `gateway` when given) and offers a WAN connection service."""
    local = local_address_towards(gateway or SSDP_ADDR[0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)  # UDA 2.0 §1.1.2: TTL 2 by default
        sock.bind((local, 0))
    except OSError:
        sock.close()
        raise
    transport, answers = await asyncio.get_running_loop().create_datagram_endpoint(_Answers, sock=sock)
    errors: list[str] = []
    seen: set[str] = set()
    try:
        for target in SEARCH_TARGETS:
            transport.sendto(encode_msearch(target, mx=1), SSDP_ADDR)
            if gateway:
                transport.sendto(encode_msearch(target, host=f"{gateway}:{SSDP_ADDR[1]}"), (gateway, SSDP_ADDR[1]))
        async with asyncio.timeout(timeout):
            while True:
                data, sender = await answers.queue.get()
                try:
                    answer = parse_ssdp_response(data)
                except UpnpError as exc:
                    log.debug("bad SSDP answer from %s: %s", sender, exc)
                    continue
                if urlsplit(answer.location).hostname != sender or (gateway and sender != gateway):
                    continue
                if answer.location in seen:
                    continue
                seen.add(answer.location)
                try:
                    return await fetch_description(session, answer.location)
                except (PortMapError, UpnpError) as exc:
                    errors.append(f"{answer.location}: {exc}")
    except TimeoutError:
        where = f"from {gateway}" if gateway else "on the LAN"
        raise PortMapError(f"no UPnP-IGD answered {where} within {timeout:g} s"
                           + (f" ({'; '.join(errors)})" if errors else "")) from None
    finally:
        transport.close()


async def fetch_description(session: aiohttp.ClientSession, location: str) -> Gateway:
    try:
        async with session.get(location, allow_redirects=False) as response:
            if response.status != 200:
                raise PortMapError(f"device description: HTTP {response.status}")
            data = await _read_bounded(response, MAX_DESCRIPTION, "device description")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PortMapError(f"cannot fetch the device description {location}: {exc or type(exc).__name__}") from None
    return parse_description(data, location)


class UpnpMapper:
    name = "UPnP-IGD"

    def __init__(self, gateway: str | None = None, *, location: str | None = None,
                 search_timeout: float = SEARCH_TIMEOUT, http_timeout: float = HTTP_TIMEOUT,
                 description: str = "peerloom") -> None:
        self.gateway = gateway
        self.location = location  # the IGD's description URL when known (`upnpc -u`): no search then
        self.search_timeout = search_timeout
        self.http_timeout = http_timeout
        self.description = description
        self.device: Gateway | None = None
        self.local_ip = ""
        self.external_ip: str | None = None
        self.leases: dict[tuple[str, int], Lease] = {}
        self.failures: dict[tuple[str, int], str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def __aenter__(self) -> UpnpMapper:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Find the IGD, learn our address towards it and its external address; PortMapError when there is none."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.http_timeout))
        try:
            if self.location:
                self.device = await fetch_description(self._session, self.location)
            else:
                self.device = await discover(self._session, self.gateway, timeout=self.search_timeout)
            host = urlsplit(self.device.control_url).hostname
            assert host is not None  # parse_description checked it
            self.gateway = self.gateway or host
            self.local_ip = local_address_towards(host)
            answer = await self._action("GetExternalIPAddress", [])
            if isinstance(answer, SoapFault):
                raise PortMapError(f"GetExternalIPAddress: {answer}")
            self.external_ip = external_ip(answer) or None
        except BaseException:
            await self._session.close()
            self._session = None
            raise
        self._renewer = asyncio.create_task(self._renew(), name="UPnP-IGD renewals")

    async def _action(self, action: str, args: list[tuple[str, object]]) -> dict[str, str] | SoapFault:
        assert self._session is not None and self.device is not None
        body, headers = encode_soap_request(self.device, action, args)
        try:
            async with self._session.post(self.device.control_url, data=body, headers=headers,
                                          allow_redirects=False) as response:
                if response.status not in (200, 500):  # a SOAP fault comes with 500 (UDA 2.0 §3.2.2)
                    raise PortMapError(f"{action}: HTTP {response.status}")
                data = await _read_bounded(response, MAX_SOAP, f"{action} answer")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PortMapError(f"{action}: {exc or type(exc).__name__}") from None
        try:
            return parse_soap_response(data, action)
        except UpnpError as exc:
            raise PortMapError(f"{action}: {exc}") from None

    async def _add_mapping(self, action: str, protocol: str, external: int, port: int,
                           lease: int) -> dict[str, str] | SoapFault:
        return await self._action(action, add_port_mapping_args(protocol, external, port, self.local_ip, lease,
                                                                self.description))

    async def _add(self, protocol: str, port: int, lease: int, external: int = 0) -> Lease:
        """AddPortMapping of `port` on our address to the `external` port (default: the same), falling back to a
        permanent mapping when the IGD refuses limited leases (IGDv1 725; some say 402), and to another external
        port when that one is mapped to someone else (718)."""
        external = external or port
        answer = await self._add_mapping("AddPortMapping", protocol, external, port, lease)
        if lease_refused(answer, lease):
            log.info("the IGD refused a %d s lease (%s): mapping %s %d permanently", lease, answer, protocol, port)
            lease = 0
            answer = await self._add_mapping("AddPortMapping", protocol, external, port, 0)
        if conflict(answer):
            external, answer = await self._add_elsewhere(protocol, port, lease, answer)
        if isinstance(answer, SoapFault):
            raise PortMapError(f"{protocol} port {port}: {answer}")
        granted = Lease(protocol, port, external, lease, time.monotonic())
        self.leases[(protocol, port)] = granted
        self.failures.pop((protocol, port), None)
        self._wake.set()
        return granted

    async def _add_elsewhere(self, protocol: str, port: int, lease: int,
                             answer: dict[str, str] | SoapFault) -> tuple[int, dict[str, str] | SoapFault]:
        """Another client holds our port on the gateway (two nodes behind one NAT): an IGDv2 picks a free external
        port itself (AddAnyPortMapping of WANIPConnection:2); on an IGDv1 a few random ones are tried."""
        assert self.device is not None
        if self.device.service_type.endswith(":WANIPConnection:2"):
            answer = await self._add_mapping("AddAnyPortMapping", protocol, port, port, lease)
            if isinstance(answer, SoapFault):
                return port, answer
            try:
                return reserved_port(answer), answer
            except UpnpError as exc:
                raise PortMapError(f"AddAnyPortMapping: {exc}") from None
        for _ in range(OTHER_PORT_TRIES):
            external = random.randint(1024, 65535)
            answer = await self._add_mapping("AddPortMapping", protocol, external, port, lease)
            if not conflict(answer):
                return external, answer
        return port, answer

    async def map(self, ports: list[tuple[str, int]], *, lifetime: int = 7200, timeout: float = 10.0) -> None:
        """AddPortMapping for each (protocol, port); PortMapError naming those that failed."""
        try:
            async with asyncio.timeout(timeout):
                for protocol, port in ports:
                    try:
                        await self._add(protocol, port, lifetime)
                    except PortMapError as exc:
                        self.failures[(protocol, port)] = str(exc)
        except TimeoutError:
            raise PortMapError(f"the IGD {self.gateway} did not answer within {timeout:.0f} s") from None
        failed = [self.failures[key] for key in ports if key in self.failures]
        if failed:
            raise PortMapError("; ".join(failed))

    async def _renew(self) -> None:
        while True:
            due = next_renewal(list(self.leases.values()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if due is None else max(0.0, due - time.monotonic())):
                    await self._wake.wait()
            now = time.monotonic()
            for key, lease in list(self.leases.items()):
                if lease.renew_at is not None and lease.renew_at <= now:
                    try:
                        await self._add(lease.protocol, lease.internal_port, lease.lease, lease.external_port)
                    except PortMapError as exc:  # tried again at the next half of what is left
                        log.warning("renewing the UPnP-IGD mapping of %s port %d: %s", *key, exc)
                        self.failures[key] = str(exc)
                        lease.granted_at = now - lease.lease / 2 + max(30.0, lease.lease / 4)

    def external_ports(self) -> list[int]:
        return [lease.external_port for lease in self.leases.values()]

    def status(self) -> dict[str, Any]:
        return {
            "protocol": self.name,
            "gateway": self.gateway,
            "control_url": self.device.control_url if self.device else None,
            "service": self.device.service_type if self.device else None,
            "external_ip": self.external_ip,
            "mappings": [{"protocol": m.protocol, "internal_port": m.internal_port, "external_port": m.external_port,
                          "lifetime": m.lease, "via": self.name} for m in self.leases.values()],
            "failures": [{"protocol": p, "internal_port": n, "reason": r} for (p, n), r in self.failures.items()],
        }

    async def close(self) -> None:
        """DeletePortMapping for each mapping (at most REMOVE_TIMEOUT seconds in all), then stop."""
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            self._renewer = None
        if self._session is None:
            return
        try:
            async with asyncio.timeout(REMOVE_TIMEOUT):
                for key, lease in list(self.leases.items()):
                    answer = await self._action("DeletePortMapping",
                                                delete_port_mapping_args(lease.protocol, lease.external_port))
                    if isinstance(answer, SoapFault):
                        log.warning("deleting the UPnP-IGD mapping of %s port %d: %s", *key, answer)
                    del self.leases[key]
        except (PortMapError, TimeoutError) as exc:
            log.warning("could not delete every UPnP-IGD mapping on exit: %s", exc or "timed out")
        finally:
            await self._session.close()
            self._session = None
