"""The UPnP-IGD driver's paths miniupnpd cannot show (the NAT lab test covers the rest against the real one): on
loopback, an IGDv1 that refuses limited leases (error 725, as IGDv1 routers often do) — the driver maps permanently
and still deletes on exit —, the renewal of a limited lease halfway through it, and a gateway sending an oversized
description or an HTTP error.

The server here serves miniupnpd's own description (tests/data/upnp) and answers SOAP actions by parsing the requests
the driver sends; it keeps the mapping table the assertions read."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from peerloom.net.nat.gateway import PortMapError
from peerloom.net.nat.upnp import MAX_DESCRIPTION
from peerloom.net.nat.upnp_driver import UpnpMapper

DATA = Path(__file__).parents[2] / "data" / "upnp"
ENVELOPE = ('<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{}'
            "</s:Body></s:Envelope>")
FAULT = ("<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>"
         '<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>{}</errorCode>'
         "<errorDescription>{}</errorDescription></UPnPError></detail></s:Fault>")


class Igd:
    """A WANIPConnection: like an IGDv1, permanent leases only (unless `leases`); `table` holds (protocol, external
    port) -> the request's arguments."""

    def __init__(self) -> None:
        self.leases = False
        self.table: dict[tuple[str, int], dict[str, str]] = {}
        self.actions: list[str] = []
        self.description = (DATA / "rootDesc.xml").read_bytes()

    async def describe(self, request: web.Request) -> web.Response:
        return web.Response(body=self.description, content_type="text/xml")

    async def control(self, request: web.Request) -> web.Response:
        action = request.headers["SOAPAction"].strip('"').rpartition("#")[2]
        args = dict(re.findall(r"<(New\w+)>([^<]*)</\1>", await request.text()))
        self.actions.append(f"{action} {args.get('NewLeaseDuration', '')}".strip())
        service = "urn:schemas-upnp-org:service:WANIPConnection:2"
        if action == "GetExternalIPAddress":
            out = "<NewExternalIPAddress>198.51.100.7</NewExternalIPAddress>"
        elif action == "AddPortMapping":
            if args["NewLeaseDuration"] != "0" and not self.leases:
                return web.Response(status=500, content_type="text/xml",
                                    text=ENVELOPE.format(FAULT.format(725, "OnlyPermanentLeasesSupported")))
            self.table[(args["NewProtocol"], int(args["NewExternalPort"]))] = args
            out = ""
        elif action == "DeletePortMapping":
            self.table.pop((args["NewProtocol"], int(args["NewExternalPort"])), None)
            out = ""
        else:
            return web.Response(status=500, text=ENVELOPE.format(FAULT.format(401, "Invalid Action")))
        return web.Response(content_type="text/xml",
                            text=ENVELOPE.format(f'<u:{action}Response xmlns:u="{service}">{out}</u:{action}Response>'))


@pytest.fixture
async def igd() -> AsyncIterator[tuple[Igd, str]]:
    server = Igd()
    app = web.Application()
    app.router.add_get("/rootDesc.xml", server.describe)
    app.router.add_post("/ctl/IPConn", server.control)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield server, f"http://127.0.0.1:{port}/rootDesc.xml"
    finally:
        await runner.cleanup()


async def test_an_igd_refusing_leases_gets_permanent_mappings_deleted_on_exit(igd: tuple[Igd, str]) -> None:
    server, location = igd
    mapper = UpnpMapper(location=location)
    await mapper.start()
    try:
        assert mapper.external_ip == "198.51.100.7" and mapper.local_ip == "127.0.0.1"
        await mapper.map([("tcp", 4001), ("udp", 6881)], lifetime=7200)
        assert server.actions == ["GetExternalIPAddress", "AddPortMapping 7200", "AddPortMapping 0",
                                  "AddPortMapping 7200", "AddPortMapping 0"]
        assert set(server.table) == {("TCP", 4001), ("UDP", 6881)}
        assert server.table[("TCP", 4001)]["NewInternalClient"] == "127.0.0.1"
        assert [(m["protocol"], m["lifetime"]) for m in mapper.status()["mappings"]] == [("tcp", 0), ("udp", 0)]
    finally:
        await mapper.close()
    assert server.table == {}  # a permanent mapping would outlive us: deleted on exit


async def test_an_oversized_description_is_refused(igd: tuple[Igd, str]) -> None:
    server, location = igd
    server.description += b" " * MAX_DESCRIPTION
    mapper = UpnpMapper(location=location)
    with pytest.raises(PortMapError, match="device description"):
        await mapper.start()
    await mapper.close()


async def test_an_http_error_on_the_control_url_is_a_port_map_error(igd: tuple[Igd, str]) -> None:
    server, location = igd
    server.description = server.description.replace(b"/ctl/IPConn", b"/ctl/missing")
    mapper = UpnpMapper(location=location)
    with pytest.raises(PortMapError, match="GetExternalIPAddress: HTTP 404"):
        await mapper.start()
    await mapper.close()


async def test_a_limited_lease_is_renewed_halfway_through(igd: tuple[Igd, str]) -> None:
    server, location = igd
    server.leases = True
    async with UpnpMapper(location=location) as mapper:
        await mapper.map([("tcp", 4001)], lifetime=1)  # renewed every half second
        async with asyncio.timeout(30):  # a bound on waiting for the event, not a speed assertion
            while server.actions.count("AddPortMapping 1") < 3:
                await asyncio.sleep(0.05)
        assert mapper.status()["mappings"] == [{"protocol": "tcp", "internal_port": 4001, "external_port": 4001,
                                                "lifetime": 1, "via": "UPnP-IGD"}]
    assert server.table == {}
