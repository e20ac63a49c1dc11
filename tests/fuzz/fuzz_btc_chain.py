"""atheris fuzz target for peerloom's Bitcoin chain state inputs: undo data (decoded, then re-encoded equal), a
block from untrusted bytes connected against a small UTXO set (contextual checks, sigop counting, inputs, the
coinbase amount), and a transaction offered to the mempool (standardness, conflicts, orphans).

Run: `python tests/fuzz/fuzz_btc_chain.py [corpus dir] [-max_total_time=N]`. The first input byte picks the
target, the rest is its input. Each may raise only `BtcError` (ConsensusError, MempoolReject are subclasses).
"""

from __future__ import annotations

import harness

from peerloom.apps.btc.block import parse_block
from peerloom.apps.btc.coins import Coin, decode_undo, encode_undo
from peerloom.apps.btc.mempool import Mempool
from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.rules import REGTEST_DEPLOYMENTS
from peerloom.apps.btc.serialize import BtcError
from peerloom.apps.btc.tx import OutPoint, parse_transaction
from peerloom.apps.btc.validation import BlockContext, ScriptJob, connect_block

_GENESIS_CB = REGTEST.genesis.transactions[0]
_COINS = {OutPoint(_GENESIS_CB.txid, 0): Coin(50 * 10**8, b"\x51", 0, True),
          OutPoint(b"\x01" * 32, 0): Coin(10**8, b"\x51", 5, False)}


class _Source:
    def fetch_coins(self, outpoints):
        return {op: _COINS[op] for op in outpoints if op in _COINS}


def _undo(data: bytes) -> None:
    items = decode_undo(data)
    assert decode_undo(encode_undo(items)) == items


def _connect(data: bytes) -> None:
    block = parse_block(data)
    if not block.transactions or not block.transactions[0].inputs:
        return
    ctx = BlockContext(200, block.hash, REGTEST.genesis.header.time, lambda h: REGTEST.genesis.header.time,
                       REGTEST_DEPLOYMENTS)
    delta = connect_block(block, ctx, _Source())
    assert delta.fees >= 0


def _no_scripts(job: ScriptJob) -> None:
    """Script verification has its own target (fuzz_btc_script); here every script passes."""


def _mempool(data: bytes) -> None:
    tx = parse_transaction(data)
    pool = Mempool()
    pool.accept(tx, _Source(), 200, REGTEST.genesis.header.time, 0, _no_scripts)
    assert len(pool) + len(pool.orphans) <= 1


TestOneInput = harness.Pick(_undo, _connect, _mempool, allowed=BtcError)


def seeds() -> list[bytes]:
    """Valid inputs for every target, to start a corpus from."""
    undo = encode_undo([(OutPoint(b"\x02" * 32, 1), Coin(5, b"\x51", 7, True))])
    return [b"\x00" + undo, b"\x01" + REGTEST.genesis.serialize(), b"\x02" + _GENESIS_CB.serialize()]


if __name__ == "__main__":
    harness.main(TestOneInput)
