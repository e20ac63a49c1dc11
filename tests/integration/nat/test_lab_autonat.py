"""In the NAT lab: AutoNAT says "private" behind a NAT and "public" in the public namespace; a NAT-PMP mapping on
Debian's miniupnpd makes a host behind a NAT reachable from the public namespace, and is removed on exit."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.netlab import NatLab, skip_reason

AGENT = Path(__file__).parents[2] / "support" / "nat_agent.py"
_REASON = skip_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def agent(lab: NatLab, ns: str, listen: str, *extra: str) -> tuple:
    process = lab.python(ns, str(AGENT), "--listen", listen, *extra, stdin=True)
    ready = process.read_json()
    assert ready["ready"], ready
    return process, ready


def ask(process, **command) -> dict:
    process.send(command)
    answer = process.read_json(60)
    assert "error" not in answer, answer
    return answer


@pytest.fixture
def lab() -> Iterator[NatLab]:
    with NatLab(("cone", "cone")) as lab:
        yield lab


def test_autonat_says_private_behind_a_nat_and_public_in_the_public_namespace(lab: NatLab) -> None:
    servers = [agent(lab, lab.public, f"{ip}:4001", "--server")[1] for ip in ("203.0.113.2", "203.0.113.3")]
    behind, _ = agent(lab, lab.hosts[0], "0.0.0.0:4001")
    public, _ = agent(lab, lab.public, "203.0.113.1:4001")
    for client in (behind, public):
        for server in servers:
            ask(client, cmd="connect", addr=server["addr"])
    private_view = ask(behind, cmd="probe")
    assert private_view["verdict"] == "private", private_view
    assert private_view["confidence"] == 1.0
    assert [a["reachable"] for a in private_view["answers"]] == [False, False]
    assert private_view["observed"] and all("/ip4/203.0.113.10/tcp/" in a for a in private_view["observed"])
    assert private_view["confirmed"] == []
    public_view = ask(public, cmd="probe")
    assert public_view["verdict"] == "public", public_view
    assert public_view["confirmed"] == ["/ip4/203.0.113.1/tcp/4001"]


def test_a_natpmp_mapping_on_miniupnpd_makes_a_host_reachable_and_is_removed_on_exit(lab: NatLab) -> None:
    lab.start_miniupnpd(0)
    behind, ready = agent(lab, lab.hosts[0], "0.0.0.0:4001")
    outside, _ = agent(lab, lab.public, "203.0.113.1:4001")
    via_nat = f"/ip4/{lab.nat_wan_ips[0]}/tcp/4001/p2p/{ready['peer']}"
    outside.send({"cmd": "ping", "addr": via_nat})
    assert "error" in outside.read_json(60)  # before the mapping: the NAT drops the connection
    status = ask(behind, cmd="map", gateway=lab.gateway_ips[0], lifetime=120)
    assert status["mappings"] == [{"protocol": "tcp", "internal_port": 4001, "external_port": 4001,
                                   "lifetime": 120, "via": "NAT-PMP"}], status
    assert status["protocol"] == "NAT-PMP" and status["attempts"] == {}
    assert status["external_ip"] == "11.18.0.77"  # the ext_ip= miniupnpd announces
    assert "dport 4001" in lab.nft_ruleset(lab.nats[0])
    assert ask(outside, cmd="ping", addr=via_nat)["rtt"] > 0  # a secure connection from the public side, and a ping
    assert ask(behind, cmd="unmap")["mappings"] == []
    assert "dport 4001" not in lab.nft_ruleset(lab.nats[0])


def test_the_lab_removes_its_namespaces_and_processes_even_after_a_failure() -> None:
    with pytest.raises(RuntimeError, match="inside the lab"), NatLab(("symmetric", "cone")) as lab:
        names = [lab.public, *lab.nats, *lab.hosts]
        sleeper = lab.spawn(lab.hosts[0], "sleep", "600")
        assert set(names) <= set(namespaces())
        raise RuntimeError("a failure inside the lab")
    assert not set(names) & set(namespaces())
    assert sleeper.proc.poll() is not None  # stopped by its PID


def namespaces() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]
