"""peerloom validates a real chain: bcoin 1.0.2 mines 500 regtest blocks carrying transactions of every script
type it makes (P2PKH, P2SH multisig, and after segwit's activation P2WPKH, P2SH-P2WPKH, P2WSH multisig, plus
OP_RETURN outputs); peerloom syncs them headers-first over P2P, verifies every script in worker processes,
and must end on bcoin's tip with exactly bcoin's UTXO set (read from bcoin's chain database)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.bcoin_node import BcoinNode, ensure_installed

from peerloom.apps.btc.blockfiles import BlockFiles
from peerloom.apps.btc.chainstate import MIGRATIONS, Activation, ChainState
from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.peer_driver import BtcPeer
from peerloom.apps.btc.scriptcheck import ProcessScriptChecker
from peerloom.apps.btc.serialize import hash_hex
from peerloom.apps.btc.sync import BlockSync
from peerloom.state import State

pytestmark = [pytest.mark.interop, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def bcoin_ready() -> None:
    res = ensure_installed()
    if not res:
        pytest.skip(res.reason)


def utxo_rows(chain: ChainState) -> set[tuple[str, int, int, str, int, bool]]:
    return {(hash_hex(op.txid), op.index, c.value, c.script_pubkey.hex(), c.height, c.coinbase)
            for op, c in chain.coins()}


async def test_peerloom_syncs_500_blocks_of_bcoin_transactions_to_the_same_utxo_set(
        bcoin_ready: None, tmp_path: Path) -> None:
    async with BcoinNode.start(blocks=100) as node:
        await node.mine_with_transactions(400, 2)
        assert node.height == 500
        expected = await node.utxos()
        checker = ProcessScriptChecker(2)
        state = State(tmp_path / "state.sqlite")
        try:
            chain = ChainState(REGTEST, state.schema("btc", MIGRATIONS), BlockFiles(tmp_path / "blocks"), checker)
            seen = {"txs": 0, "witness_txs": 0, "inputs": 0}

            def count(result: Activation) -> None:
                for block in result.connected:
                    for tx in block.transactions[1:]:
                        seen["txs"] += 1
                        seen["witness_txs"] += tx.has_witness
                        seen["inputs"] += len(tx.inputs)

            async with await BtcPeer.connect("127.0.0.1", node.port, REGTEST) as peer:
                sync = BlockSync(chain)
                sync.on_activation.append(count)
                await sync.run(peer, until_height=node.height)
            assert (chain.height, chain.tip.header.hash_hex) == (node.height, node.tip_hash)
            ours = utxo_rows(chain)
            assert ours == expected
            kinds = {row[3][:4] for row in ours}
            assert {"76a9", "a914", "0014", "0020"} <= kinds  # P2PKH, P2SH, P2WPKH, P2WSH coins
            assert seen["txs"] >= 700 and seen["witness_txs"] >= 100, seen  # segwit activates near height 430
        finally:
            state.close()
            checker.close()
