"""peerloom's wallet pays bcoin 1.0.2 on regtest: bcoin mines two blocks to an address of OUR wallet (from
`peerloom btc address`) and enough more for segwit to be active in bcoin and the coins to mature; peerloom's
node syncs them, `peerloom btc balance` shows the 100 BTC, `peerloom btc send` pays a bcoin address from a signed
P2WPKH spend through the running node, which relays it; the transaction is in bcoin's mempool, bcoin mines it,
the payment is in bcoin's UTXO set and peerloom's node sees it confirmed with balances that add up.
(bcoin 1.0.2 has no taproot: P2TR key-path spends are tested against our own validation in
tests/unit/apps/btc/test_btc_wallet.py.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from coincurve import PrivateKey
from support.bcoin_node import BcoinNode, ensure_installed
from support.cli import peerloom

from peerloom.apps.btc.bech32 import address_for_script
from peerloom.apps.btc.params import COIN, REGTEST
from peerloom.apps.btc.runtime import BtcNode
from peerloom.apps.btc.signing import p2wpkh_script

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

SEGWIT_ACTIVE = 500  # bcoin's regtest activates segwit by version bits (FACTS.md): active by block 500


@pytest.fixture(scope="module")
def bcoin_ready() -> None:
    res = ensure_installed()
    if not res:
        pytest.skip(res.reason)


async def cli_json(*args: str) -> dict:
    code, out, err = await peerloom("btc", *args, "--json", timeout=60)
    assert code == 0, err
    return json.loads(out)


async def test_a_wallet_payment_is_accepted_by_bcoin_mined_and_seen_confirmed(bcoin_ready: None,
                                                                               tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    ours = await cli_json("address", "--home", home)
    assert ours["address"].startswith("bcrt1q") and ours["path"] == "m/84'/1'/0'/0/0"
    # A P2WPKH key of bcoin's own test wallet (regtest_node.mjs: the ring of private key 0x02...02).
    theirs = p2wpkh_script(PrivateKey(bytes([2]) * 32).public_key.format(compressed=True))
    their_address = address_for_script("bcrt", theirs)
    assert their_address is not None

    async with BcoinNode.start(blocks=0) as bcoin:
        await bcoin.mine_to(2, bytes.fromhex(ours["script"]))
        await bcoin.mine(SEGWIT_ACTIVE - 2)
        async with BtcNode(Path(home), REGTEST, connect=[("127.0.0.1", bcoin.port)], workers=0) as node:
            await node.wait_for_height(bcoin.height, timeout=120)
            before = await cli_json("balance", "--home", home)
            assert before["node_running"] and before["height"] == SEGWIT_ACTIVE
            assert (before["confirmed"], before["immature"], before["unconfirmed"]) == (100 * COIN, 0, 0)

            # Bad input is one clear line and a non-zero exit.
            code, _, err = await peerloom("btc", "send", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "1",
                                          "--home", home)
            assert code != 0 and "bad address for regtest" in err and len(err.strip().splitlines()) == 1
            code, _, err = await peerloom("btc", "send", their_address, "500", "--home", home)
            assert code != 0 and "insufficient funds" in err

            sent = await cli_json("send", their_address, "1.5", "--home", home)
            txid = sent["txid"]
            assert sent["amount"] == 150_000_000 and sent["inputs"] == 1 and sent["fee"] >= 2 * sent["vsize"]
            async with asyncio.timeout(30):
                while txid not in await bcoin.mempool_txids():
                    await asyncio.sleep(0.2)
            pending = await cli_json("balance", "--home", home)
            change = 50 * COIN - 150_000_000 - sent["fee"]
            assert (pending["confirmed"], pending["unconfirmed"]) == (50 * COIN, change)

            mined = await bcoin.mine(1)
            await node.wait_for_height(mined["height"], timeout=60)
            assert txid in {tx.txid_hex for tx in node.chain.read_block(node.chain.tip.hash).transactions}
            utxos = await bcoin.utxos()
            assert (txid, 0, 150_000_000, theirs.hex(), mined["height"], False) in utxos
            after = await cli_json("balance", "--home", home)
            assert (after["confirmed"], after["immature"], after["unconfirmed"]) == (50 * COIN + change, 0, 0)
            assert after["confirmed"] == 100 * COIN - 150_000_000 - sent["fee"]
            assert node.mempool.get(bytes.fromhex(txid)[::-1]) is None
