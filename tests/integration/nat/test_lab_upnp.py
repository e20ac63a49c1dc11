"""In the NAT lab, with Debian's miniupnpd serving UPnP-IGD only (its NAT-PMP off): the port mapper finds NAT-PMP
missing, maps through UPnP-IGD (SSDP, the device description, SOAP AddPortMapping), a peer in the public namespace
reaches the host behind the NAT through the mapping, and the mapping is gone — from miniupnpd's own list and from its
nft rules — once the node stopped."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.netlab import MINIUPNPD_EXT_IP, NatLab, skip_reason

from peerloom.api.server import OPENAPI_FILE

AGENT = Path(__file__).parents[2] / "support" / "nat_agent.py"
_REASON = skip_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@pytest.fixture
def lab() -> Iterator[NatLab]:
    with NatLab(("cone", "cone")) as lab:
        yield lab


def agent(lab: NatLab, ns: str, listen: str):
    process = lab.python(ns, str(AGENT), "--listen", listen, stdin=True)
    ready = process.read_json()
    assert ready["ready"], ready
    return process, ready


ADD_FROM_OTHER = """
import sys, urllib.parse, http.client
url, ip = urllib.parse.urlsplit(sys.argv[1]), sys.argv[2]
service = "urn:schemas-upnp-org:service:WANIPConnection:2"
args = (f"<NewRemoteHost></NewRemoteHost><NewExternalPort>4001</NewExternalPort><NewProtocol>TCP</NewProtocol>"
        f"<NewInternalPort>4001</NewInternalPort><NewInternalClient>{ip}</NewInternalClient><NewEnabled>1</NewEnabled>"
        f"<NewPortMappingDescription>other</NewPortMappingDescription><NewLeaseDuration>0</NewLeaseDuration>")
body = ('<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        f'<u:AddPortMapping xmlns:u="{service}">{args}</u:AddPortMapping></s:Body></s:Envelope>')
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5, source_address=(ip, 0))
conn.request("POST", url.path, body.encode(), {"Content-Type": "text/xml", "SOAPAction": f'"{service}#AddPortMapping"'})
response = conn.getresponse()
assert response.status == 200, response.read()
"""


def tcp_connect(lab: NatLab, ip: str, port: int) -> str:
    """A bare TCP connect from the public namespace: "connected", "refused" (the SYN reached a host with nothing
    listening) or "timeout" (the NAT dropped it). The kernels on both ends answer a handshake between namespaces in
    well under a millisecond, however loaded the machine, so 1 s is plenty either way (a dropped SYN waits it out)."""
    code = ("import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)\n"
            "    print('connected')\nexcept ConnectionRefusedError:\n    print('refused')\n"
            "except TimeoutError:\n    print('timeout')\n")
    return lab.run(lab.public, sys.executable, "-c", code, ip, str(port)).stdout.strip()


def miniupnpd_list(lab: NatLab) -> list[str]:
    """The mappings miniupnpd itself reports (`upnpc -l`, miniupnpc's client, from the host behind it)."""
    listing = lab.run(lab.hosts[0], "upnpc", "-l").stdout
    assert "ExternalIPAddress = " + MINIUPNPD_EXT_IP in listing, listing  # upnpc did reach it
    return re.findall(r"^\s*\d+\s+(TCP|UDP)\s+(\d+)->([\d.]+):(\d+)", listing, re.MULTILINE)


def test_a_upnp_igd_mapping_on_miniupnpd_makes_a_host_reachable_and_is_removed_when_the_node_stops(
        lab: NatLab) -> None:
    lab.start_miniupnpd(0, enable_natpmp=False)
    behind, ready = agent(lab, lab.hosts[0], "0.0.0.0:4001")
    outside, _ = agent(lab, lab.public, "203.0.113.1:4001")
    via_nat = f"/ip4/{lab.nat_wan_ips[0]}/tcp/4001/p2p/{ready['peer']}"
    assert tcp_connect(lab, lab.nat_wan_ips[0], 4001) == "timeout"  # before the mapping: the NAT drops the SYN

    behind.send({"cmd": "map", "gateway": lab.gateway_ips[0], "lifetime": 120})
    status = behind.read_json(60)
    assert status.get("protocol") == "UPnP-IGD", status
    assert "NAT-PMP" in status["attempts"]  # tried first, and miniupnpd does not serve it here
    assert status["mappings"] == [{"protocol": "tcp", "internal_port": 4001, "external_port": 4001,
                                   "lifetime": 120, "via": "UPnP-IGD"}], status
    assert status["external_ip"] == MINIUPNPD_EXT_IP  # GetExternalIPAddress: the ext_ip= miniupnpd announces
    assert status["control_url"].startswith(f"http://{lab.gateway_ips[0]}:")
    assert miniupnpd_list(lab) == [("TCP", "4001", lab.host_ips[0], "4001")]
    assert "dport 4001" in lab.nft_ruleset(lab.nats[0])

    outside.send({"cmd": "ping", "addr": via_nat})
    answer = outside.read_json(60)
    assert answer.get("rtt", 0) > 0, answer  # a secure connection from the public side, through the mapping

    assert behind.proc.stdin is not None
    behind.proc.stdin.close()  # the node stops: its mapper deletes the mapping on the way out
    assert behind.proc.wait(30) == 0, behind.output()[-3000:]
    assert miniupnpd_list(lab) == []
    assert "dport 4001" not in lab.nft_ruleset(lab.nats[0])
    assert tcp_connect(lab, lab.nat_wan_ips[0], 4001) == "timeout"  # dropped at the NAT again (not refused behind it)


def test_a_daemon_maps_through_upnp_igd_shows_it_in_nat_status_and_deletes_on_stop(lab: NatLab) -> None:
    lab.start_miniupnpd(0, enable_natpmp=False)
    daemon, home = lab.daemon(lab.hosts[0], "mapped", "--port-mapping", "--listen", "0.0.0.0")
    status = {}
    for _ in range(100):  # the mapping is made in the background once the daemon runs
        status = json.loads(lab.run(lab.hosts[0], sys.executable, "-m", "peerloom", "nat", "status", "--home",
                                    str(home), "--json").stdout)["port_mapping"] or {}
        if status.get("mappings") or status.get("error"):
            break
        time.sleep(0.2)
    assert status.get("protocol") == "UPnP-IGD" and status["error"] is None, status
    mapped = {(m["protocol"].upper(), str(m["external_port"])) for m in status["mappings"]}
    assert {m["via"] for m in status["mappings"]} == {"UPnP-IGD"} and len(mapped) >= 2, status  # TCP ports + UDP
    assert {(p, e) for p, e, _, _ in miniupnpd_list(lab)} == mapped
    schema = json.loads(OPENAPI_FILE.read_text())["components"]["schemas"]["NatStatus"]["properties"]["port_mapping"]
    assert set(status) <= set(schema["properties"]), status  # the API documents what it says
    assert all(set(m) <= set(schema["properties"]["mappings"]["items"]["properties"]) for m in status["mappings"])
    text = lab.run(lab.hosts[0], sys.executable, "-m", "peerloom", "nat", "status", "--home", str(home)).stdout
    assert "port mapping: UPnP-IGD, gateway 10.18.1.1, external IP 11.18.0.77" in text, text
    assert all(f"-> {port} (7200 s) via UPnP-IGD" in text for _, port in mapped), text
    assert daemon.stop() == 0
    assert miniupnpd_list(lab) == []
    rules = lab.nft_ruleset(lab.nats[0])
    assert not any(f"dport {port}" in rules for _, port in mapped), rules


def test_when_another_mapping_holds_the_port_the_igd_picks_another_one_that_works(lab: NatLab) -> None:
    lab.start_miniupnpd(0, enable_natpmp=False)
    # another machine on the same LAN (a second address of the host) holds external port 4001 first: our
    # AddPortMapping gets 718 ConflictInMappingEntry (miniupnpd's secure_mode: a client maps only to itself)
    other = "10.18.1.3"
    lab.run(lab.hosts[0], "ip", "addr", "add", f"{other}/24", "dev", "eth0")
    control = re.search(r"Found valid IGD : (\S+)", lab.run(lab.hosts[0], "upnpc", "-s").stdout)
    assert control is not None
    lab.run(lab.hosts[0], sys.executable, "-c", ADD_FROM_OTHER, control.group(1), other)
    behind, ready = agent(lab, lab.hosts[0], "0.0.0.0:4001")
    outside, _ = agent(lab, lab.public, "203.0.113.1:4001")
    behind.send({"cmd": "map", "gateway": lab.gateway_ips[0], "lifetime": 120})
    status = behind.read_json(60)
    assert status.get("protocol") == "UPnP-IGD", status
    [mapping] = status["mappings"]
    external = mapping["external_port"]
    assert mapping["internal_port"] == 4001 and external != 4001, status  # AddAnyPortMapping chose it
    assert sorted(miniupnpd_list(lab)) == sorted([("TCP", "4001", other, "4001"),
                                                  ("TCP", str(external), lab.host_ips[0], "4001")])
    outside.send({"cmd": "ping", "addr": f"/ip4/{lab.nat_wan_ips[0]}/tcp/{external}/p2p/{ready['peer']}"})
    answer = outside.read_json(60)
    assert answer.get("rtt", 0) > 0, answer
    assert behind.proc.stdin is not None
    behind.proc.stdin.close()
    assert behind.proc.wait(30) == 0, behind.output()[-3000:]
    assert miniupnpd_list(lab) == [("TCP", "4001", other, "4001")]  # only ours was deleted
