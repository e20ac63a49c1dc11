"""In the NAT lab, `peerloom daemon` and `peerloom nat status`: behind a cone NAT a daemon is "private"; with
`--port-mapping` through Debian's miniupnpd its secure port is mapped, AutoNAT servers in the public namespace dial it
back through the mapping so it is "public", and stopping the daemon deletes the mapping on the gateway."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.netlab import NatLab, skip_reason

AGENT = Path(__file__).parents[2] / "support" / "nat_agent.py"
_REASON = skip_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@pytest.fixture
def lab() -> Iterator[NatLab]:
    with NatLab(("cone", "cone")) as lab:
        yield lab


def nat_status(lab: NatLab, ns: str, home: Path, *args: str) -> dict:
    done = lab.run(ns, sys.executable, "-m", "peerloom", "nat", "status", "--home", str(home), "--json", *args)
    return json.loads(done.stdout)


def test_a_daemon_behind_a_nat_is_private_and_public_once_its_ports_are_mapped(lab: NatLab) -> None:
    servers, agents = [], []
    for ip in ("203.0.113.2", "203.0.113.3"):
        server = lab.python(lab.public, str(AGENT), "--listen", f"{ip}:4001", "--server", stdin=True)
        servers.append(server.read_json()["addr"])
        agents.append(server)
    peers = [arg for addr in servers for arg in ("--peer", addr)]
    lab.start_miniupnpd(0)
    mapped, mapped_home = lab.daemon(lab.hosts[0], "mapped", "--port-mapping", "--listen", "0.0.0.0")
    plain, plain_home = lab.daemon(lab.hosts[1], "plain", "--listen", "0.0.0.0")

    behind = nat_status(lab, lab.hosts[1], plain_home, *peers)
    assert behind["reachability"] == "private", behind
    assert behind["port_mapping"] is None and behind["confirmed"] == []
    assert all(a.startswith("/ip4/203.0.113.11/tcp/") for a in behind["observed"]), behind

    status = nat_status(lab, lab.hosts[0], mapped_home, *peers)
    assert status["reachability"] == "public" and status["confidence"] == 1.0, status
    mapping = status["port_mapping"]
    assert mapping["gateway"] == lab.gateway_ips[0] and mapping["external_ip"] == "11.18.0.77", mapping
    assert {(m["protocol"], m["lifetime"]) for m in mapping["mappings"]} == {("tcp", 7200), ("udp", 7200)}, mapping
    secure = {m["external_port"] for m in mapping["mappings"] if m["protocol"] == "tcp"}
    confirmed = {int(a.rsplit("/", 1)[1]) for a in status["confirmed"]}
    assert status["confirmed"] and all(a.startswith("/ip4/203.0.113.10/tcp/") for a in status["confirmed"])
    assert confirmed <= secure  # reached through a mapped port
    rules = lab.nft_ruleset(lab.nats[0])
    assert all(f"dport {port}" in rules for port in secure)
    # it now advertises the confirmed address: a peer dialling it through the mapping reads it in identify
    runtime = json.loads((mapped_home / "daemon.json").read_text())
    via_mapping = f"{status['confirmed'][0]}/p2p/{runtime['secure_addrs'][0].rsplit('/', 1)[1]}"
    agents[0].send({"cmd": "identify", "addr": via_mapping})
    advertised = agents[0].read_json(30)["listen_addrs"]
    assert status["confirmed"][0] in advertised, advertised

    assert nat_status(lab, lab.hosts[0], mapped_home)["reachability"] == "public"  # GET: the daemon remembers
    assert mapped.stop() == 0
    rules = lab.nft_ruleset(lab.nats[0])
    assert not any(f"dport {port}" in rules for port in secure), rules  # the daemon deleted its mappings on exit
    assert plain.stop() == 0
