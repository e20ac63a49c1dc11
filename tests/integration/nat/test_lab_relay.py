"""In the NAT lab: two hosts behind separate NATs meet through a peerloom relay (Circuit Relay v2) in the public
namespace. Behind cone NATs DCUtR then punches a direct connection; behind symmetric NATs (random ports) punching
fails and they stay relayed, and still carry a 1 MiB stream intact."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.netlab import LabProcess, NatLab, skip_reason

AGENT = Path(__file__).parents[2] / "support" / "nat_agent.py"
_REASON = skip_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def agent(lab: NatLab, ns: str, listen: str, *extra: str) -> tuple[LabProcess, dict]:
    process = lab.python(ns, str(AGENT), "--listen", listen, *extra, stdin=True)
    ready = process.read_json()
    assert ready["ready"], ready
    return process, ready


def ask(process: LabProcess, **command: object) -> dict:
    process.send(command)
    answer = process.read_json(90)
    assert "error" not in answer, answer
    return answer


@pytest.mark.parametrize(("kind", "direct"), [("cone", True), ("symmetric", False)])
def test_two_nodes_behind_nats_meet_through_a_relay_and_punch_through_cone_nats(kind: str, direct: bool) -> None:
    with NatLab((kind, kind)) as lab:
        _relay, relay_ready = agent(lab, lab.public, f"{lab.public_ip}:4001", "--relay-server",
                                   "--circuit-data", str(8 << 20))
        a, a_ready = agent(lab, lab.hosts[0], "0.0.0.0:4001", "--hole-punch")
        b, b_ready = agent(lab, lab.hosts[1], "0.0.0.0:4001", "--hole-punch")
        circuit = ask(b, cmd="reserve", addr=relay_ready["addr"])["circuit"]
        assert "/p2p-circuit/" in circuit
        ask(a, cmd="connect", addr=relay_ready["addr"])  # A learns its observed address from the relay
        ask(a, cmd="connect", addr=circuit)
        view = ask(a, cmd="wait_direct", peer=b_ready["peer"], timeout=20 if direct else 12)
        (to_b,) = [c for c in view["connections"] if c["peer_id"] == b_ready["peer"]]
        if direct:
            assert to_b["kind"] == "direct", view
            assert to_b["address"] == f"{lab.nat_wan_ips[1]}:4001", view  # B's NAT kept the listening port
        else:
            assert to_b["kind"] == "relayed" and to_b["relay"] == relay_ready["peer"], view
            assert ask(b, cmd="wait_direct", peer=a_ready["peer"], timeout=0)["punch_attempts"] >= 1  # B tried
        blob = ask(a, cmd="blob", peer=b_ready["peer"], size=1 << 20)
        assert blob["sent"] == 1 << 20 and blob["echoed"] == blob["sha256"]
        (after,) = [c for c in ask(a, cmd="connections")["connections"] if c["peer_id"] == b_ready["peer"]]
        assert after["kind"] == ("direct" if direct else "relayed")
