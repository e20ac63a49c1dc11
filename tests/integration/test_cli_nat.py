"""`peerloom nat status` without a daemon: a short-lived node asks the peers given with --peer (on loopback the
AutoNAT server refuses to dial LAN addresses, so the answer is "unknown"); mistakes are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import peerloom
from support.swarm import node


async def test_nat_status_asks_the_peers_given(tmp_path: Path) -> None:
    async with node(tmp_path, "server") as server:
        addr = str(server.secure_addrs[0])
        code, out, err = await peerloom("nat", "status", "--home", str(tmp_path / "me"), "--peer", addr, "--json")
        assert code == 0, err
        status = json.loads(out)
        assert status["reachability"] == "unknown" and status["autonat_server"] is None
        assert status["observed"] and status["observed"][0].startswith("/ip4/127.0.0.1/tcp/")
        code, out, _ = await peerloom("nat", "status", "--home", str(tmp_path / "me"), "--peer", addr)
        assert code == 0 and out.startswith("reachability: unknown") and "port mapping: off" in out


async def test_mistakes_are_one_line(tmp_path: Path) -> None:
    code, out, err = await peerloom("nat", "status", "--home", str(tmp_path))
    assert code == 2 and out == "" and err.count("\n") == 1 and "--peer" in err
    code, out, err = await peerloom("nat", "status", "--home", str(tmp_path), "--peer", "/ip4/1.2.3.4/udp/5")
    assert code == 2 and err.count("\n") == 1, err
