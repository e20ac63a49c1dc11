"""`peerloom find PEERID` against a loopback DHT where the peer published its signed record, and `peerloom peers`
showing the peers a node learned through identify; both alone and through a running daemon."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from support.cli import peerloom
from support.daemon import DaemonProcess
from support.swarm import node

from peerloom.cli.discovery import stored_peers
from peerloom.codec.multiaddr import Multiaddr
from peerloom.identity import Identity

DHT = dict(dht=True, public_bootstrap=False)


async def test_find_resolves_a_peer_id_through_its_record(tmp_path: Path) -> None:
    async with node(tmp_path, "boot", **DHT) as boot:
        assert boot.dht is not None
        async with node(tmp_path, "a", bootstrap=[("127.0.0.1", boot.dht.port)], **DHT) as a:
            assert a.peer_records is not None and await a.peer_records.wait_published(10)
            common = ("--bootstrap", f"127.0.0.1:{boot.dht.port}", "--listen", "127.0.0.1",
                      "--home", str(tmp_path / "home-cli"), "--no-daemon")
            code, stdout, stderr = await peerloom("find", str(a.identity.peer_id), *common, "--json")
            assert code == 0, stderr
            found = json.loads(stdout)
            assert [x["addr"] for x in found["addrs"]] == [str(x) for x in a.secure_addrs]
            assert found["addrs"][0]["source"] == "record" and found["record"]["seq"] >= int(time.time()) - 60
            # an Ed25519 PeerId nobody published: one line, exit 1
            code, stdout, stderr = await peerloom("find", str(Identity.generate().peer_id), *common, "--timeout", "5")
            assert code == 1 and stdout == "" and "no address known" in stderr and len(stderr.splitlines()) == 1


async def test_find_refuses_a_bad_peer_id_in_one_line(tmp_path: Path) -> None:
    code, stdout, stderr = await peerloom("find", "12D3KooWnotapeerid", "--home", str(tmp_path / "h"), "--no-daemon")
    assert code == 2 and stdout == "" and "not a PeerId" in stderr and len(stderr.strip().splitlines()) == 1


async def test_peers_lists_the_peers_learned_through_identify(tmp_path: Path) -> None:
    async with node(tmp_path, "x") as x, node(tmp_path, "y") as y:
        await y.secure_host.connect(x.secure_addrs[0])
        await y.secure_host.identify(x.identity.peer_id)
        await asyncio.sleep(0.05)
    code, stdout, stderr = await peerloom("peers", "--home", str(tmp_path / "home-y"), "--json", "--no-daemon")
    assert code == 0, stderr
    (peer,) = json.loads(stdout)["peers"]
    assert peer["peer_id"] == str(x.identity.peer_id) and peer["agent"] == x.client_name
    assert "/ipfs/id/1.0.0" in peer["protocols"] and not peer["connected"]
    assert [(a["addr"], a["source"]) for a in peer["addrs"]] == [(str(x.secure_addrs[0].without_p2p()), "identify")]
    code, stdout, stderr = await peerloom("peers", "--home", str(tmp_path / "home-y"), "--no-daemon")
    assert code == 0 and str(x.identity.peer_id) in stdout and "identify" in stdout and "1 peers known" in stderr
    assert stored_peers(tmp_path / "empty") == [] and not (tmp_path / "empty").exists()  # nothing made


async def test_peers_and_find_go_through_a_running_daemon(tmp_path: Path) -> None:
    home = tmp_path / "home-d"
    daemon = await DaemonProcess(home, tmp_path / "dl").start()
    try:
        secure = Multiaddr(daemon.runtime["secure_addrs"][0])
        async with node(tmp_path, "visitor") as visitor:
            await visitor.secure_host.connect(secure)
            await visitor.secure_host.identify(secure.peer_id)  # type: ignore[arg-type]
            them = str(visitor.identity.peer_id)
            for _ in range(100):  # the daemon identifies the visitor in turn
                listed = (await daemon.ok("GET", "/api/v1/peers"))["peers"]
                if listed and listed[0]["protocols"]:
                    break
                await asyncio.sleep(0.05)
            code, stdout, stderr = await peerloom("peers", "--home", str(home), "--json")
            assert code == 0, stderr
            assert [p["peer_id"] for p in json.loads(stdout)["peers"]] == [them]
            code, stdout, stderr = await peerloom("find", visitor.identity.peer_id.to_cid(), "--home", str(home))
            assert code == 0, stderr
            assert stdout.split() == [str(a) for a in visitor.secure_addrs]
            assert "from the peer store (the DHT is off)" in stderr
        status, answer = await daemon.call("GET", f"/api/v1/peers/{Identity.generate().peer_id}")
        assert status == 404 and "no address known" in answer["error"]
        status, answer = await daemon.call("GET", "/api/v1/peers/notapeer")
        assert status == 400 and "not a PeerId" in answer["error"]
    finally:
        daemon.stop()
