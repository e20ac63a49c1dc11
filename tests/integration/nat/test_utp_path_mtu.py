"""uTP path MTU discovery through a real router (network namespaces, tests/support/netlab.py).

The seeder sits behind NAT box 0, whose WAN link has an MTU of 1280 while the seeder's own link has 1500: the seeder
cannot know the path's MTU from its interface. It dials a leecher in the public network over uTP and sends it the
data with the don't-fragment bit set: the first full-size packets die at the NAT box, which answers with ICMP
"fragmentation needed"; the seeder's kernel then refuses datagrams that large (EMSGSIZE), the packets are sent again
in fragments, and the connection settles on datagrams that fit 1280 bytes. The download is byte-identical. It does
so on a UDP socket of uTP's own and, with the DHT on, on the DHT's socket that uTP shares (the default).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from support.netlab import NatLab, skip_reason
from support.swarm import make_single

from peerloom.torrent.create import create
from peerloom.torrent.utp_mtu import IPV4_OVERHEAD, SETTLED

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

AGENT = str(Path(__file__).resolve().parents[2] / "support" / "bt_lab_agent.py")
PORT = 6881
MTU = 1280


def _state(home: Path) -> dict[str, Any]:
    try:
        return json.loads((home / "agent-state.json").read_text())
    except (OSError, ValueError):  # not written yet
        return {}


@pytest.mark.parametrize("dht", [False, True], ids=["own-socket", "dht-socket"])
def test_utp_settles_below_a_1280_byte_path_and_the_data_arrives(tmp_path: Path, dht: bool) -> None:
    data = make_single(tmp_path / "seed", size=4 * 1024 * 1024 + 333)
    torrent = tmp_path / "t.torrent"
    torrent.write_bytes(create(data, piece_length=64 * 1024).to_bytes())
    with NatLab(nat=("cone", "cone")) as lab:
        lab.run(lab.nats[0], "ip", "link", "set", "wan", "mtu", str(MTU))
        lab.run(lab.public, "ip", "link", "set", "up0", "mtu", str(MTU))
        route = ("ip", "-o", "route", "get", lab.public_ip)
        assert f"mtu {MTU}" not in lab.run(lab.hosts[0], *route).stdout  # the seeder's route knows only its 1500
        lab.python(lab.public, AGENT, "--home", str(tmp_path / "leecher"), "--port", str(PORT),
                   "--torrent", str(torrent), "--save", str(tmp_path / "leech"))
        seeder = lab.python(lab.hosts[0], AGENT, "--home", str(tmp_path / "seeder"), "--port", str(PORT),
                            "--torrent", str(torrent), "--save", str(tmp_path / "seed"), "--utp-first",
                            "--peer", f"{lab.public_ip}:{PORT}", *(["--dht"] if dht else []))
        seen: list[list[int]] = []  # the seeder's (floor, ceiling) of its uTP connection to the leecher
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _state(tmp_path / "leecher").get("done"):
            seen += [p["mtu"] for p in _state(tmp_path / "seeder").get("peers", []) if p["utp"] and p["mtu"]]
            time.sleep(0.2)
        assert _state(tmp_path / "leecher").get("done"), f"the download did not finish: {seeder.output()[-2000:]}"
        learnt = lab.run(lab.hosts[0], *route).stdout
    assert f"mtu {MTU}" in learnt, learnt  # the NAT box's ICMP taught the seeder's kernel the path's MTU
    assert (tmp_path / "leech" / data.name).read_bytes() == data.read_bytes()
    assert seen, "the seeder never sent over uTP"
    floor, ceiling = seen[-1]
    path = MTU - IPV4_OVERHEAD
    assert path - SETTLED < floor <= ceiling <= path, seen  # settled below the path's MTU, close to it
