"""The daemon's peer routes in-process: the peer store and finding a peer, held to the OpenAPI document."""

from __future__ import annotations

import asyncio
from pathlib import Path

from support.swarm import node
from test_api import V1, conforms, schema, serve

from peerloom.identity import Identity


async def test_peers_and_find_answer_as_documented(tmp_path: Path) -> None:
    async with serve(tmp_path) as api, node(tmp_path, "visitor") as visitor:
        assert (await api.call("GET", f"{V1}/peers")) == {"peers": []}
        await visitor.secure_host.connect(api.node.secure_addrs[0])
        them = visitor.identity.peer_id
        for _ in range(100):
            known = api.node.peers.get(them)
            if known is not None and known.protocols:
                break
            await asyncio.sleep(0.02)
        listed = await api.call("GET", f"{V1}/peers")
        for peer in listed["peers"]:
            conforms(peer, schema("KnownPeer"))
        assert [p["peer_id"] for p in listed["peers"]] == [str(them)] and listed["peers"][0]["connected"]
        found = await api.call("GET", f"{V1}/peers/{them.to_cid()}")
        conforms(found, schema("FoundPeer"))
        assert [a["addr"] for a in found["addrs"]] == [str(a) for a in visitor.secure_addrs]
        assert found["record"] is None and found["record_error"] == "the DHT is off"
        assert "no address known" in (await api.call("GET", f"{V1}/peers/{Identity.generate().peer_id}", 404))["error"]
        assert "not a PeerId" in (await api.call("GET", f"{V1}/peers/Qmnope", 400))["error"]
