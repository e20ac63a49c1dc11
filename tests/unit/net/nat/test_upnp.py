"""UPnP-IGD parsing (peerloom.net.nat.upnp) against what Debian's miniupnpd 2.3.1 really sent (tests/data/upnp, captured
in the NAT lab by capture.py there), and against the malformed and hostile inputs a LAN device could send."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerloom.net.nat.upnp import (
    MAX_DESCRIPTION,
    MAX_SOAP,
    MAX_SSDP,
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

DATA = Path(__file__).parents[3] / "data" / "upnp"
LOCATION = "http://10.18.1.1:38161/rootDesc.xml"
GATEWAY = Gateway(LOCATION, "urn:schemas-upnp-org:service:WANIPConnection:2", "http://10.18.1.1:38161/ctl/IPConn")


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def soap_sample(name: str) -> tuple[int, bytes]:
    """A captured SOAP answer: the file's first line is the HTTP status, the rest the body."""
    status, body = sample(name).split(b"\n", 1)
    return int(status.split()[1]), body


def description(services: str, url_base: str = "") -> bytes:
    return (f'<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0">{url_base}<device>'
            f"<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><deviceList><device>"
            f"<friendlyName>box</friendlyName><serviceList>{services}</serviceList></device></deviceList></device>"
            f"</root>").encode()


def service(service_type: str, control: str) -> str:
    return f"<service><serviceType>{service_type}</serviceType><controlURL>{control}</controlURL></service>"


# -- SSDP --------------------------------------------------------------------------------------------------------
def test_miniupnpds_search_answer() -> None:
    answer = parse_ssdp_response(sample("ssdp_response.txt"))
    assert answer.location.startswith("http://10.18.1.1:") and answer.location.endswith("/rootDesc.xml")
    assert answer.st == "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
    assert "MiniUPnPd/2.3.1" in answer.server and answer.usn.startswith("uuid:")


def test_search_answers_with_bare_line_feeds_and_odd_header_case_are_taken() -> None:
    answer = parse_ssdp_response(b"HTTP/1.1 200 OK\nst: upnp:rootdevice\nLocation:http://192.168.1.1:5000/d.xml\n\n")
    assert answer.location == "http://192.168.1.1:5000/d.xml" and answer.st == "upnp:rootdevice"


@pytest.mark.parametrize("data", [
    b"", b"NOTIFY * HTTP/1.1\r\nLOCATION: http://a/\r\nST: x\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nLOCATION: http://a/\r\nST: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n",  # no LOCATION
    b"HTTP/1.1 200 OK\r\nLOCATION: https://10.0.0.1/d.xml\r\nST: x\r\n\r\n",  # not http
    b"HTTP/1.1 200 OK\r\nLOCATION: http://10.0.0.1:99999/d.xml\r\nST: x\r\n\r\n",  # port out of range
    b"HTTP/1.1 200 OK\r\nLOCATION: http://10.0.0.1/" + b"a" * 1100 + b"\r\nST: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", b"HTTP/1.1 200 OK\r\nST: \xff\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(40)) + b"\r\n",
    b"HTTP/1.1 200 OK\r\nLOCATION: http://10.0.0.1/\r\nST: x\r\n" + b"X: " + b"y" * MAX_SSDP + b"\r\n\r\n",
])
def test_malformed_search_answers_raise_the_typed_error(data: bytes) -> None:
    with pytest.raises(UpnpError):
        parse_ssdp_response(data)


def test_the_searches_we_send() -> None:
    multicast = encode_msearch("urn:schemas-upnp-org:device:InternetGatewayDevice:1", mx=1)
    assert multicast == (b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n'
                         b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n")
    unicast = encode_msearch("urn:schemas-upnp-org:service:WANIPConnection:1", host="10.18.1.1:1900")
    assert b"HOST: 10.18.1.1:1900\r\n" in unicast and b"MX:" not in unicast  # UDA 2.0 §1.3.3: no MX in unicast


# -- the device description ---------------------------------------------------------------------------------------
def test_miniupnpds_description_gives_its_wanipconnection_control_url() -> None:
    gateway = parse_description(sample("rootDesc.xml"), LOCATION)
    assert gateway == Gateway(LOCATION, "urn:schemas-upnp-org:service:WANIPConnection:2",
                              "http://10.18.1.1:38161/ctl/IPConn", "WANConnectionDevice")


def test_the_best_service_wins_and_urls_resolve_against_urlbase_or_the_location() -> None:
    both = service("urn:schemas-upnp-org:service:WANPPPConnection:1", "/ppp") + service(
        "urn:schemas-upnp-org:service:WANIPConnection:1", "ip")
    gateway = parse_description(description(both), "http://192.168.1.1:5000/igd/desc.xml")
    assert gateway.service_type == "urn:schemas-upnp-org:service:WANIPConnection:1"
    assert gateway.control_url == "http://192.168.1.1:5000/igd/ip"
    ppp = service("urn:schemas-upnp-org:service:WANPPPConnection:1", "ctl/ppp")
    gateway = parse_description(description(ppp, "<URLBase>http://192.168.1.1:6000/</URLBase>"),
                                "http://192.168.1.1:5000/desc.xml")
    assert gateway.control_url == "http://192.168.1.1:6000/ctl/ppp"


@pytest.mark.parametrize("data", [
    description(service("urn:schemas-upnp-org:service:Layer3Forwarding:1", "/l3f")),  # nothing to map ports with
    description(service("urn:schemas-upnp-org:service:WANIPConnection:1", "")),  # no control URL
    description(service("urn:schemas-upnp-org:service:WANIPConnection:1", "http://203.0.113.9/steal")),  # elsewhere
    description(service("urn:schemas-upnp-org:service:WANIPConnection:1", "/x"), "<URLBase>ftp://a/</URLBase>"),
    b"<notroot/>", b"<root><device>", b"\xff\xfe<\x00r\x00",
    b'<?xml version="1.0"?><!DOCTYPE root [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    b"<root>&b;</root>",  # entity expansion ("billion laughs"): refused before parsing
    b'<?xml version="1.0"?><!DOCTYPE root SYSTEM "http://203.0.113.9/evil.dtd"><root/>',
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "b">]><root>&a;</root>'.encode("utf-16"),
    description("") + b" " * MAX_DESCRIPTION,
])
def test_bad_or_hostile_descriptions_raise_the_typed_error(data: bytes) -> None:
    with pytest.raises(UpnpError):
        parse_description(data, "http://192.168.1.1:5000/desc.xml")


# -- SOAP ----------------------------------------------------------------------------------------------------------
def test_miniupnpds_action_answers() -> None:
    status, body = soap_sample("soap_get_external_ip.xml")
    assert status == 200
    assert external_ip(parse_soap_response(body, "GetExternalIPAddress")) == "11.18.0.77"  # type: ignore[arg-type]
    for name in ("soap_add_port_mapping.xml",):
        assert parse_soap_response(soap_sample(name)[1], "AddPortMapping") == {}
    for name in ("soap_delete_port_mapping.xml", "soap_delete_port_mapping_again.xml"):
        assert parse_soap_response(soap_sample(name)[1], "DeletePortMapping") == {}


def test_miniupnpds_faults() -> None:
    status, body = soap_sample("soap_fault_conflict.xml")
    assert status == 500
    assert parse_soap_response(body, "AddPortMapping") == SoapFault(718, "ConflictInMappingEntry")
    fault = parse_soap_response(soap_sample("soap_fault_not_authorized.xml")[1], "AddPortMapping")
    assert fault == SoapFault(606, "Action not authorized") and str(fault) == "UPnP error 606: Action not authorized"


def test_a_fault_without_upnperror_keeps_its_faultstring() -> None:
    body = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>'
            b"<faultcode>s:Server</faultcode><faultstring>busy</faultstring></s:Fault></s:Body></s:Envelope>")
    assert parse_soap_response(body, "AddPortMapping") == SoapFault(0, "busy")


@pytest.mark.parametrize(("data", "action"), [
    (soap_sample("soap_get_external_ip.xml")[1], "AddPortMapping"),  # the answer to another action
    (b"<Envelope/>", "AddPortMapping"), (b"<Envelope><Body/></Envelope>", "AddPortMapping"),
    (b"<Envelope><Body><Fault><UPnPError><errorCode>x</errorCode></UPnPError></Fault></Body></Envelope>", "A"),
    (b"<html>no</html>", "AddPortMapping"), (b"not xml", "AddPortMapping"),
    (b"<Envelope>" + b" " * MAX_SOAP + b"</Envelope>", "AddPortMapping"),
])
def test_malformed_action_answers_raise_the_typed_error(data: bytes, action: str) -> None:
    with pytest.raises(UpnpError):
        parse_soap_response(data, action)


def test_a_bad_external_address_is_refused_and_an_empty_one_means_none_yet() -> None:
    assert external_ip({"NewExternalIPAddress": ""}) == ""
    with pytest.raises(UpnpError):
        external_ip({"NewExternalIPAddress": "<script>"})


def test_requests_carry_the_arguments_in_order_escaped_and_the_soapaction_header() -> None:
    body, headers = encode_soap_request(GATEWAY, "AddPortMapping",
                                        add_port_mapping_args("tcp", 4001, 4001, "10.18.1.2", 120, "a<b&c"))
    assert headers["SOAPAction"] == '"urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping"'
    text = body.decode()
    order = ["NewRemoteHost", "NewExternalPort", "NewProtocol", "NewInternalPort", "NewInternalClient", "NewEnabled",
             "NewPortMappingDescription", "NewLeaseDuration"]
    assert [text.index(f"<{name}>") for name in order] == sorted(text.index(f"<{name}>") for name in order)
    assert "<NewProtocol>TCP</NewProtocol>" in text and "<NewLeaseDuration>120</NewLeaseDuration>" in text
    assert "<NewPortMappingDescription>a&lt;b&amp;c</NewPortMappingDescription>" in text
    body, _ = encode_soap_request(GATEWAY, "DeletePortMapping", delete_port_mapping_args("udp", 6881))
    assert b"<NewExternalPort>6881</NewExternalPort><NewProtocol>UDP</NewProtocol>" in body


def test_leases_renew_halfway_and_permanent_ones_never() -> None:
    limited = Lease("tcp", 4001, 4001, 120, granted_at=100.0)
    permanent = Lease("udp", 6881, 6881, 0, granted_at=100.0)
    assert limited.renew_at == 160.0 and permanent.renew_at is None
    assert next_renewal([permanent, limited]) == 160.0 and next_renewal([permanent]) is None


def test_a_refused_lease_is_asked_again_as_permanent_once() -> None:
    # miniupnpd grants leases; the 725 an IGDv1 answers instead is its conflict fault with the code of
    # WANIPConnection:1 §2.4.16 put in
    body = soap_sample("soap_fault_conflict.xml")[1].replace(b"718", b"725").replace(
        b"ConflictInMappingEntry", b"OnlyPermanentLeasesSupported")
    fault = parse_soap_response(body, "AddPortMapping")
    assert fault == SoapFault(725, "OnlyPermanentLeasesSupported")
    assert lease_refused(fault, 7200) and not lease_refused(fault, 0)  # 0 already: no second retry
    assert not lease_refused(SoapFault(718, "ConflictInMappingEntry"), 7200) and not lease_refused({}, 7200)


def test_a_conflict_and_the_port_addanyportmapping_reserved() -> None:
    assert conflict(parse_soap_response(soap_sample("soap_fault_conflict.xml")[1], "AddPortMapping"))
    assert not conflict(SoapFault(606, "Action not authorized")) and not conflict({})
    assert reserved_port({"NewReservedPort": "40123"}) == 40123
    for bad in ("", "0", "65536", "-1", "4e3", "1" * 30):
        with pytest.raises(UpnpError):
            reserved_port({"NewReservedPort": bad})
