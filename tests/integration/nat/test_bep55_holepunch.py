"""BEP 55 hole punching in real NATs (network namespaces, tests/support/netlab.py).

A seeder and a leecher sit behind two separate NATs that drop every unsolicited inbound packet; a third peer in the
public network (the relay) is in the same swarm and connected to both, but downloads at a trickle. The leecher learns
of the seeder by peer exchange from the relay, fails to dial it (its NAT drops the SYN), asks the relay for a
rendezvous, and both sides dial each other over uTP at once when the relay says so: the leecher then downloads from
the seeder directly, byte-identical. Behind symmetric NATs (a new port per destination) the same introduction cannot
open a path, and the leecher never reaches the seeder directly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.netlab import LabProcess, NatLab, skip_reason
from support.swarm import make_single

from peerloom.torrent.create import create

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

AGENT = str(Path(__file__).resolve().parents[2] / "support" / "bt_lab_agent.py")
PORT = 6881


def _swarm(lab: NatLab, tmp_path: Path) -> tuple[bytes, LabProcess]:
    data = make_single(tmp_path / "seed", size=6 * 1024 * 1024 + 333)
    torrent = tmp_path / "t.torrent"
    torrent.write_bytes(create(data, piece_length=64 * 1024).to_bytes())
    lab.python(lab.public, AGENT, "--home", str(tmp_path / "relay"), "--port", str(PORT),
               "--torrent", str(torrent), "--save", str(tmp_path / "relay-data"), "--rate", "2000")
    lab.python(lab.hosts[1], AGENT, "--home", str(tmp_path / "seeder"), "--port", str(PORT),
               "--torrent", str(torrent), "--save", str(tmp_path / "seed"), "--peer", f"{lab.public_ip}:{PORT}")
    leecher = lab.python(lab.hosts[0], AGENT, "--home", str(tmp_path / "leecher"), "--port", str(PORT),
                         "--torrent", str(torrent), "--save", str(tmp_path / "leech"),
                         "--peer", f"{lab.public_ip}:{PORT}")
    return data.read_bytes(), leecher


def _watch(home: Path, until, timeout: float) -> dict:  # type: ignore[no-untyped-def]
    """Poll an agent's newest state until `until(state)` or the timeout; the last state seen."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        try:
            state = _latest(home)
        except (OSError, ValueError):  # not written yet
            pass
        if state and until(state):
            return state
        time.sleep(0.2)
    return state


def _latest(home: Path) -> dict:
    """An agent's newest state (it keeps it in its home)."""
    return json.loads((home / "agent-state.json").read_text())


def test_relay_introduces_two_peers_behind_cone_nats(tmp_path: Path) -> None:
    with NatLab(nat=("cone", "cone")) as lab:
        want, leecher = _swarm(lab, tmp_path)
        seeder_public = [lab.nat_wan_ips[1], PORT]

        def direct(state: dict) -> bool:
            return any(p["address"] == seeder_public and p["utp"] for p in state["peers"])

        leech_home = tmp_path / "leecher"
        state = _watch(leech_home, direct, 40)
        assert direct(state), f"the leecher never reached the seeder directly: {state}; log: {leecher.output()[-2000:]}"
        assert state["punches"] + _latest(tmp_path / "seeder")["punches"] >= 1  # dialled because the relay said so
        state = _watch(leech_home, lambda s: s["done"], 40)
        assert state["done"], f"the download did not finish: {state}"
        relay_state = _latest(tmp_path / "relay")
        assert relay_state["relayed"] >= 1, relay_state
        assert state["rendezvous_sent"] + _latest(tmp_path / "seeder")["rendezvous_sent"] >= 1
        assert not relay_state["done"]  # the relay trickles: the data came from the seeder, through the punched hole
        assert (tmp_path / "leech" / "data.bin").read_bytes() == want


def test_symmetric_nats_defeat_the_punch(tmp_path: Path) -> None:
    with NatLab(nat=("symmetric", "symmetric")) as lab:
        _swarm(lab, tmp_path)
        seeder_public = [lab.nat_wan_ips[1], PORT]
        leech_home = tmp_path / "leecher"
        state = _watch(leech_home, lambda s: s["punches"] >= 1, 30)
        assert state["punches"] >= 1  # introduced...
        state = _watch(leech_home, lambda s: any(p["address"] == seeder_public for p in s["peers"]), 8)
        assert not any(p["address"] == seeder_public for p in state["peers"])  # ...but no path opens
