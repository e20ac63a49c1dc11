"""The daemon's Bitcoin route in-process: with no Bitcoin node running on its home it answers the stored tip
(genesis, or what a node stored there), with a node running it answers that node's
tip, peers and mempool; replies conform to openapi.json, a bad network is one JSON 400."""

from __future__ import annotations

from pathlib import Path

from test_api import V1, Api, conforms, schema
from test_api import api as api
from test_api import quick_events as quick_events

from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.runtime import BtcNode
from peerloom.apps.btc.serialize import hash_hex
from peerloom.apps.btc.status import stored_tip


async def test_status_of_the_home_s_bitcoin_node(api: Api) -> None:
    home = api.daemon.node.home
    reply = await api.call("GET", f"{V1}/btc/status")
    conforms(reply, schema("BtcStatus"))
    assert reply == {"network": "regtest", "height": 0, "hash": hash_hex(REGTEST.genesis_hash), "running": False,
                     "peers": [], "mempool": []}
    async with BtcNode(Path(home), REGTEST, listen=("127.0.0.1", 0), workers=0) as btc:
        await btc.generate(3, b"\x51")
        reply = await api.call("GET", f"{V1}/btc/status")
        conforms(reply, schema("BtcStatus"))
        assert reply["running"] and reply["height"] == 3 and reply["hash"] == btc.chain.tip.header.hash_hex
    reply = await api.call("GET", f"{V1}/btc/status")
    assert not reply["running"] and reply["height"] == 3
    assert stored_tip(api.daemon.node.state, REGTEST)["height"] == 3
    await api.call("GET", f"{V1}/btc/status?network=moon", 400)
