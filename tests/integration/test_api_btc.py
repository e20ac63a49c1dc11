"""The daemon's Bitcoin route in-process: with no Bitcoin node running on its home it answers the stored tip
(genesis, or what a node stored there), with a node running it answers that node's
tip, peers and mempool; the wallet's balance (404 without a wallet) with and without a running node; replies
conform to openapi.json, a bad network is one JSON 400."""

from __future__ import annotations

from pathlib import Path

from test_api import V1, Api, conforms, schema
from test_api import api as api
from test_api import quick_events as quick_events

from peerloom.apps.btc.params import COIN, REGTEST
from peerloom.apps.btc.runtime import BtcNode
from peerloom.apps.btc.serialize import hash_hex
from peerloom.apps.btc.status import stored_tip
from peerloom.apps.btc.walletops import new_address


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


async def test_wallet_balance_of_the_home(api: Api) -> None:
    home = Path(api.daemon.node.home)
    await api.call("GET", f"{V1}/btc/wallet", 404)
    ours = new_address(home, REGTEST, "p2wpkh")
    async with BtcNode(home, REGTEST, workers=0) as btc:
        await btc.generate(1, bytes.fromhex(ours["script"]))
        await btc.generate(1, b"\x51")
        reply = await api.call("GET", f"{V1}/btc/wallet")
        conforms(reply, schema("BtcWallet"))
        assert reply == {"network": "regtest", "height": 2, "node_running": True, "confirmed": 0,
                         "immature": 50 * COIN, "unconfirmed": 0, "total": 50 * COIN}
    reply = await api.call("GET", f"{V1}/btc/wallet")
    assert not reply["node_running"] and reply["immature"] == 50 * COIN
    await api.call("GET", f"{V1}/btc/wallet?network=moon", 400)
