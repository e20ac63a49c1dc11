"""peerloom validates a real chain: bcoin 1.0.2 mines 500 regtest blocks carrying transactions of every script
type it makes (P2PKH, P2SH multisig, and after segwit's activation P2WPKH, P2SH-P2WPKH, P2WSH multisig, plus
OP_RETURN outputs); peerloom syncs them headers-first over P2P, verifies every script in worker processes,
and must end on bcoin's tip with exactly bcoin's UTXO set (read from bcoin's chain database). A transaction
bcoin relays reaches peerloom's mempool; and after two bcoin nodes mined apart, peerloom follows the heavier
chain through a reorg and ends with bcoin's UTXO set."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.bcoin_node import BcoinNode, ensure_installed

from peerloom.apps.btc.blockfiles import BlockFiles
from peerloom.apps.btc.chainstate import MIGRATIONS, Activation, ChainState
from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.peer_driver import BtcPeer
from peerloom.apps.btc.runtime import BtcNode
from peerloom.apps.btc.scriptcheck import ProcessScriptChecker
from peerloom.apps.btc.serialize import hash_from_hex, hash_hex
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


async def test_a_transaction_relayed_by_bcoin_reaches_peerloom_s_mempool(bcoin_ready: None, tmp_path: Path) -> None:
    async with (
        BcoinNode.start(blocks=101) as node,
        BtcNode(tmp_path, REGTEST, connect=[("127.0.0.1", node.port)], workers=0) as ours,
    ):
        await ours.wait_for_height(101, timeout=120)
        txid = await node.send_transaction()
        async with asyncio.timeout(60):
            while hash_from_hex(txid) not in ours.mempool:
                await asyncio.sleep(0.1)
        entry = ours.mempool.entries[hash_from_hex(txid)]
        assert entry.fee == 10_000 and entry.tx.txid_hex == txid
        # bcoin mines it: the block confirms it and peerloom's mempool lets it go.
        await node.mine(1)
        await ours.wait_for_height(102, timeout=60)
        assert hash_from_hex(txid) not in ours.mempool
        assert utxo_rows(ours.chain) == await node.utxos()


async def _height(node: BcoinNode, height: int, timeout: float = 120.0) -> None:
    async with asyncio.timeout(timeout):
        while await node.current_height() < height:
            await asyncio.sleep(0.2)


async def test_peerloom_follows_bcoin_to_the_most_work_chain_after_a_partition(
        bcoin_ready: None, tmp_path: Path) -> None:
    async with BcoinNode.start(blocks=110) as a, BcoinNode.start(blocks=0) as b:
        await b.add_peer(a.port)
        await _height(b, 110)
        await b.drop_peers()
        await a.drop_peers()
        # Partitioned: a mines 3 blocks, b mines 6 with transactions (its own history from block 111 on).
        await a.mine(3)
        await b.mine_with_transactions(6, 2)
        async with BtcNode(tmp_path, REGTEST, connect=[("127.0.0.1", a.port)], workers=0) as ours:
            await ours.wait_for_height(113, timeout=120)
            assert ours.chain.tip.header.hash_hex == a.tip_hash
            on_a = utxo_rows(ours.chain)
            assert on_a == await a.utxos()
            # Reconnected: a reorganises to b's heavier chain and announces it; peerloom follows.
            await a.add_peer(b.port)
            await ours.wait_for_height(116, timeout=120)
            assert ours.chain.tip.header.hash_hex == b.tip_hash
            await _height(a, 116)
            assert utxo_rows(ours.chain) == await a.utxos() == await b.utxos() != on_a
