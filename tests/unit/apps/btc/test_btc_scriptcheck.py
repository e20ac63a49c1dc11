"""Block connection with the real script interpreter behind the script-check seam: a block of 20 signed P2WPKH
spends is verified in two worker processes and connects; the same block with one signature altered is refused
with Core's `mandatory-script-verify-flag-failed` and nothing is written; the in-process checker agrees."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.btc_chain import NOW, P2wpkhKey, Tip, coinbase_out, dump, mine_block

from peerloom.apps.btc.block import ConsensusError
from peerloom.apps.btc.blockfiles import BlockFiles
from peerloom.apps.btc.chainstate import MIGRATIONS, ChainState
from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.scriptcheck import InlineScriptChecker, ProcessScriptChecker, ScriptChecker
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut
from peerloom.state import State

KEY = P2wpkhKey(b"\x11" * 32)
N_SPENDS = 20


def _signed_spends(blocks, bad_index: int | None = None) -> list[Transaction]:
    txs = []
    for i, block in enumerate(blocks[:N_SPENDS]):
        outpoint, value = coinbase_out(block)
        tx = Transaction(2, (TxIn(outpoint, b"", 0xFFFFFFFE),), (TxOut(value - 2000, KEY.script),), 0)
        tx = KEY.sign_input(tx, 0, [TxOut(value, KEY.script)])
        if i == bad_index:
            sig, pub = tx.inputs[0].witness
            forged = sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]
            tx = Transaction(2, (TxIn(outpoint, b"", 0xFFFFFFFE, (forged, pub)),), tx.outputs, 0)
        txs.append(tx)
    return txs


@pytest.mark.parametrize("kind", ["process", "inline"])
def test_signed_spends_verify_and_a_forged_signature_is_refused(tmp_path: Path, kind: str) -> None:
    checker: ScriptChecker = ProcessScriptChecker(2) if kind == "process" else InlineScriptChecker()
    state = State(tmp_path / "state.sqlite")
    try:
        chain = ChainState(REGTEST, state.schema("btc", MIGRATIONS), BlockFiles(tmp_path / "blocks"), checker)
        tip = Tip.genesis()
        blocks = []
        for _ in range(100 + N_SPENDS):
            block, tip = mine_block(tip, script=KEY.script)
            chain.add_block(block, NOW)
            blocks.append(block)
        before = dump(chain)
        bad, _ = mine_block(tip, _signed_spends(blocks, bad_index=13), fees=2000 * N_SPENDS, script=KEY.script)
        refused = r"mandatory-script-verify-flag-failed \((EVAL_FALSE|SIG_NULLFAIL)\) tx "
        with pytest.raises(ConsensusError, match=refused):
            chain.add_block(bad, NOW)
        assert dump(chain) == before
        good, tip = mine_block(tip, _signed_spends(blocks), fees=2000 * N_SPENDS, script=KEY.script)
        chain.add_block(good, NOW)
        assert chain.tip.hash == good.hash
        spent = {coinbase_out(b)[0] for b in blocks[:N_SPENDS]}
        coins = dict(chain.coins())
        assert not spent & coins.keys()
        assert all(OutPoint(tx.txid, 0) in coins for tx in good.transactions[1:])
    finally:
        state.close()
        if isinstance(checker, ProcessScriptChecker):
            checker.close()
