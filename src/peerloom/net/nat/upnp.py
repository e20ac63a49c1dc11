"""UPnP-IGD port mapping, sans-I/O: the SSDP search and its answers, the gateway's device description, and the SOAP
actions of its WANIPConnection (or WANPPPConnection) service. The driver (upnp_driver) does the UDP and HTTP.

    encode_msearch(target)                        -> an M-SEARCH datagram, multicast to 239.255.255.250:1900 or
                                                     unicast to the gateway (UDA 2.0 §1.3.2, §1.3.3)
    parse_ssdp_response(datagram)                 -> SsdpResponse (its LOCATION: the description's URL)
    parse_description(xml, location)              -> Gateway (the control URL of the WAN connection service)
    encode_soap_request(gateway, action, args)    -> (body, headers) for an HTTP POST to gateway.control_url
    parse_soap_response(xml, action)              -> the action's out-arguments, or a SoapFault (UPnPError code)

Why our own rather than a library (`async-upnp-client`, `miniupnpc`): what a port mapper needs is one datagram, one
XML document and three SOAP actions — a few hundred lines we can bound, test against miniupnpd and fuzz here, with no
new dependency and the same shape as our NAT-PMP client.

Every parser bounds its input before it allocates and raises UpnpError. The XML comes from any device on the LAN: it
goes through xml.etree (expat) only after a size check and after refusing any DOCTYPE — no DTD means no entity
declarations, so no entity expansion ("billion laughs") and no external entities, the care defusedxml takes.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit
from xml.sax.saxutils import escape

from peerloom.errors import ProtocolError

SSDP_ADDR = ("239.255.255.250", 1900)
# what a port mapper searches for: the gateway device (IGD v1 and v2) and the two services that map ports
SEARCH_TARGETS = (
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
# the services whose AddPortMapping we call, best first (WANIPConnection:2 also serves the v1 actions we use)
CONNECTION_SERVICES = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
MAX_SSDP = 2048  # one SSDP answer: miniupnpd's are ~440 bytes
MAX_SSDP_HEADERS = 32
MAX_DESCRIPTION = 64 * 1024  # a device description: miniupnpd's is 3 KiB, big consumer routers' ~20 KiB
MAX_SOAP = 16 * 1024  # a SOAP answer of the actions we call: a few hundred bytes
MAX_URL = 1024
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
CONTROL_NS = "urn:schemas-upnp-org:control-1-0"
# UPnPError codes a gateway answers AddPortMapping with when it will not give a lease of limited duration: IGDv1
# (WANIPConnection:1 §2.4.16) has 725 OnlyPermanentLeasesSupported; some old firmware says 402 Invalid Args instead
LEASE_REFUSED = frozenset({725, 402})
CONFLICT = 718  # ConflictInMappingEntry: that external port is mapped to another client (or another internal port)


class UpnpError(ProtocolError):
    """A malformed SSDP answer, device description or SOAP answer."""


@dataclass(frozen=True)
class SsdpResponse:
    location: str  # http URL of the root device description
    st: str  # the search target it answers
    usn: str
    server: str


@dataclass(frozen=True)
class Gateway:
    location: str  # where its description came from
    service_type: str  # e.g. urn:schemas-upnp-org:service:WANIPConnection:2
    control_url: str  # absolute http URL the SOAP actions are posted to
    friendly_name: str = ""


@dataclass(frozen=True)
class SoapFault:
    code: int  # the UPnPError errorCode (0 when the fault carried none)
    description: str

    def __str__(self) -> str:
        return f"UPnP error {self.code}: {self.description}" if self.code else self.description


def encode_msearch(target: str, *, host: str = "239.255.255.250:1900", mx: int = 2) -> bytes:
    """An SSDP search (UDA 2.0 §1.3.2): answers are spread over `mx` seconds; a unicast search (§1.3.3) names the
    device's address in HOST and carries no MX."""
    lines = ["M-SEARCH * HTTP/1.1", f"HOST: {host}", 'MAN: "ssdp:discover"']
    if host.startswith("239.255.255.250"):
        lines.append(f"MX: {mx}")
    lines.append(f"ST: {target}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _http_url(url: str, what: str) -> str:
    if len(url) > MAX_URL:
        raise UpnpError(f"{what} of {len(url)} characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when out of range
    except ValueError as exc:
        raise UpnpError(f"bad {what} {url!r}: {exc}") from None
    if parts.scheme != "http" or not parts.hostname or (port is not None and port == 0):
        raise UpnpError(f"{what} is not an http URL: {url!r}")
    return url


def parse_ssdp_response(data: bytes) -> SsdpResponse:
    """A search answer: `HTTP/1.1 200 OK` and headers (case-insensitive names), LOCATION and ST required."""
    if len(data) > MAX_SSDP:
        raise UpnpError(f"SSDP answer of {len(data)} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise UpnpError("SSDP answer is not ASCII") from None
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")  # lenient: some devices send bare LF
    status = lines[0].split(None, 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or status[1] != "200":
        raise UpnpError(f"not an SSDP search answer: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            break
        name, sep, value = line.partition(":")
        if not sep:
            raise UpnpError(f"bad SSDP header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
        if len(headers) > MAX_SSDP_HEADERS:
            raise UpnpError("too many SSDP headers")
    if "location" not in headers or "st" not in headers:
        raise UpnpError("SSDP answer without LOCATION or ST")
    return SsdpResponse(_http_url(headers["location"], "LOCATION"), headers["st"], headers.get("usn", ""),
                        headers.get("server", ""))


def _parse_xml(data: bytes, limit: int, what: str) -> ET.Element:
    if len(data) > limit:
        raise UpnpError(f"{what} of {len(data)} bytes (at most {limit})")
    try:
        # decoded here and fed as text, which makes expat ignore any encoding= declaration: the DOCTYPE check below
        # sees exactly what expat parses (a UTF-16 document could otherwise hide one from a byte search)
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UpnpError(f"{what} is not UTF-8") from None
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise UpnpError(f"{what} with a DOCTYPE or ENTITY declaration")  # no DTD: no entity expansion at all
    parser = ET.XMLParser()
    try:
        parser.feed(text)
        return parser.close()
    except ET.ParseError as exc:
        raise UpnpError(f"{what} is not well-formed XML: {exc}") from None


def _local(tag: object) -> str:
    """An element's name without its namespace (devices differ in which namespace they put things in)."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _child_text(element: ET.Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return ""


def parse_description(data: bytes, location: str) -> Gateway:
    """The root device description (UDA 2.0 §2.3) fetched from `location`: the control URL of its best WAN
    connection service, made absolute against URLBase (UDA 1.0) or the location. The control URL must stay on the
    description's host: a device on the LAN does not get to send our SOAP requests elsewhere."""
    _http_url(location, "description location")
    root = _parse_xml(data, MAX_DESCRIPTION, "device description")
    if _local(root.tag) != "root":
        raise UpnpError(f"device description's root element is <{_local(root.tag)}>, not <root>")
    base = _child_text(root, "URLBase") or location
    found: dict[str, tuple[str, str]] = {}
    for device in root.iter():
        if _local(device.tag) != "device":
            continue
        for service_list in device:
            if _local(service_list.tag) != "serviceList":
                continue
            for service in service_list:
                service_type = _child_text(service, "serviceType")
                if service_type in CONNECTION_SERVICES and service_type not in found:
                    found[service_type] = (_child_text(service, "controlURL"), _child_text(device, "friendlyName"))
    for service_type in CONNECTION_SERVICES:
        if service_type in found:
            control, name = found[service_type]
            if not control:
                raise UpnpError(f"{service_type} without a controlURL")
            url = _http_url(urljoin(_http_url(base, "URLBase"), control), "control URL")
            if urlsplit(url).hostname != urlsplit(location).hostname:
                raise UpnpError(f"control URL {url!r} is on another host than the description {location!r}")
            return Gateway(location, service_type, url, name[:200])
    raise UpnpError("the device offers no WANIPConnection or WANPPPConnection service")


def encode_soap_request(gateway: Gateway, action: str, args: list[tuple[str, object]]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one control action (UDA 2.0 §3.2.1): the arguments in the order of the service
    description, as they must be."""
    params = "".join(f"<{name}>{escape(str(value))}</{name}>" for name, value in args)
    body = (f'<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="{SOAP_NS}" '
            f's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
            f'<u:{action} xmlns:u="{gateway.service_type}">{params}</u:{action}></s:Body></s:Envelope>\r\n')
    headers = {"Content-Type": 'text/xml; charset="utf-8"', "SOAPAction": f'"{gateway.service_type}#{action}"'}
    return body.encode(), headers


def parse_soap_response(data: bytes, action: str) -> dict[str, str] | SoapFault:
    """A control action's answer: its out-arguments (`<u:ACTIONResponse>`'s children by name), or the SoapFault
    (UDA 2.0 §3.2.2) the gateway sent — a fault is an answer, not a malformed one."""
    root = _parse_xml(data, MAX_SOAP, "SOAP answer")
    if _local(root.tag) != "Envelope":
        raise UpnpError(f"SOAP answer's root element is <{_local(root.tag)}>, not <Envelope>")
    body = next((child for child in root if _local(child.tag) == "Body"), None)
    if body is None or len(body) == 0:
        raise UpnpError("SOAP answer without a Body")
    answer = body[0]
    if _local(answer.tag) == "Fault":
        for element in answer.iter():
            if _local(element.tag) == "UPnPError":
                code = _child_text(element, "errorCode")
                if not code.isdigit() or len(code) > 6:
                    raise UpnpError(f"UPnPError code {code[:20]!r}")
                return SoapFault(int(code), _child_text(element, "errorDescription")[:200])
        return SoapFault(0, _child_text(answer, "faultstring")[:200] or "SOAP fault")
    if _local(answer.tag) != action + "Response":
        raise UpnpError(f"SOAP answer <{_local(answer.tag)}> to {action}")
    return {_local(child.tag): (child.text or "").strip() for child in answer}


def external_ip(arguments: dict[str, str]) -> str:
    """GetExternalIPAddress's NewExternalIPAddress, checked to be an IPv4 address ("" when it has none yet)."""
    value = arguments.get("NewExternalIPAddress", "")
    if not value:
        return ""
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise UpnpError(f"NewExternalIPAddress {value[:40]!r} is not an IPv4 address") from None


def lease_refused(answer: dict[str, str] | SoapFault, lease: int) -> bool:
    """Whether an AddPortMapping answer asks for the same mapping again with a permanent lease (0)."""
    return isinstance(answer, SoapFault) and lease != 0 and answer.code in LEASE_REFUSED


def conflict(answer: dict[str, str] | SoapFault) -> bool:
    return isinstance(answer, SoapFault) and answer.code == CONFLICT


def reserved_port(arguments: dict[str, str]) -> int:
    """AddAnyPortMapping's NewReservedPort (WANIPConnection:2): the external port the gateway chose."""
    value = arguments.get("NewReservedPort", "")
    if not value.isdigit() or len(value) > 5 or not 0 < int(value) < 65536:
        raise UpnpError(f"NewReservedPort {value[:20]!r} is not a port")
    return int(value)


def add_port_mapping_args(protocol: str, external_port: int, internal_port: int, client: str, lease: int,
                          description: str = "peerloom") -> list[tuple[str, object]]:
    """AddPortMapping's in-arguments in the service description's order (WANIPConnection:1 §2.4.16); the same for
    AddAnyPortMapping (WANIPConnection:2)."""
    return [("NewRemoteHost", ""), ("NewExternalPort", external_port), ("NewProtocol", protocol.upper()),
            ("NewInternalPort", internal_port), ("NewInternalClient", client), ("NewEnabled", 1),
            ("NewPortMappingDescription", description), ("NewLeaseDuration", lease)]


def delete_port_mapping_args(protocol: str, external_port: int) -> list[tuple[str, object]]:
    return [("NewRemoteHost", ""), ("NewExternalPort", external_port), ("NewProtocol", protocol.upper())]


@dataclass
class Lease:
    """One mapping a gateway granted: renewed halfway through a limited lease; a permanent one (0) is not."""

    protocol: str
    internal_port: int
    external_port: int
    lease: int  # seconds; 0: permanent (the gateway refused limited leases)
    granted_at: float

    @property
    def renew_at(self) -> float | None:
        return self.granted_at + self.lease / 2 if self.lease else None


def next_renewal(leases: list[Lease]) -> float | None:
    times = [t for t in (lease.renew_at for lease in leases) if t is not None]
    return min(times) if times else None
