"""Context-free consensus checks of transactions and blocks: what Bitcoin Core's `CheckTransaction` and
`CheckBlock` verify without the chain or the UTXO set — non-empty inputs and outputs, amounts in range,
no duplicate inputs, coinbase shape, size and weight limits, one coinbase first, proof of work, the merkle
root and its mutation (`Block.check_merkle_root`). The sigop limit needs the script parser and comes with
script validation. Each failure is a `ConsensusError` (block.py) carrying Core's reject reason."""

from __future__ import annotations

from .block import Block, ConsensusError
from .params import COIN
from .tx import Transaction

MAX_MONEY = 21_000_000 * COIN
MAX_BLOCK_WEIGHT = 4_000_000
WITNESS_SCALE_FACTOR = 4


def check_transaction(tx: Transaction) -> None:
    """Core's `CheckTransaction` (consensus/tx_check.cpp)."""
    if not tx.inputs:
        raise ConsensusError("bad-txns-vin-empty")
    if not tx.outputs:
        raise ConsensusError("bad-txns-vout-empty")
    if len(tx.serialize(witness=False)) * WITNESS_SCALE_FACTOR > MAX_BLOCK_WEIGHT:
        raise ConsensusError("bad-txns-oversize")
    total = 0
    for out in tx.outputs:
        if out.value < 0:
            raise ConsensusError("bad-txns-vout-negative")
        if out.value > MAX_MONEY:
            raise ConsensusError("bad-txns-vout-toolarge")
        total += out.value
        if total > MAX_MONEY:
            raise ConsensusError("bad-txns-txouttotal-toolarge")
    if len({txin.prevout for txin in tx.inputs}) != len(tx.inputs):
        raise ConsensusError("bad-txns-inputs-duplicate")  # CVE-2018-17144
    if tx.is_coinbase():
        if not 2 <= len(tx.inputs[0].script_sig) <= 100:
            raise ConsensusError("bad-cb-length")
    elif any(txin.prevout.is_null() for txin in tx.inputs):
        raise ConsensusError("bad-txns-prevout-null")


def check_block(block: Block, pow_limit: int) -> None:
    """Core's `CheckBlock` without the sigop count: header proof of work, merkle root (and mutation), size and
    weight, exactly one coinbase and it first, and every transaction's `check_transaction`."""
    if not block.header.check_proof_of_work(pow_limit):
        raise ConsensusError("high-hash")
    block.check_merkle_root()
    txs = block.transactions
    stripped = len(block.serialize(witness=False))
    too_long = max(len(txs), stripped) * WITNESS_SCALE_FACTOR > MAX_BLOCK_WEIGHT
    if not txs or too_long:
        raise ConsensusError("bad-blk-length")
    if not txs[0].is_coinbase():
        raise ConsensusError("bad-cb-missing")
    if any(tx.is_coinbase() for tx in txs[1:]):
        raise ConsensusError("bad-cb-multiple")
    for tx in txs:
        check_transaction(tx)
    # BIP 141: weight = 3 x stripped size + full size, at most MAX_BLOCK_WEIGHT (Core checks it in
    # ContextualCheckBlock; before segwit the stripped-size rule above implies it).
    if (WITNESS_SCALE_FACTOR - 1) * stripped + len(block.serialize()) > MAX_BLOCK_WEIGHT:
        raise ConsensusError("bad-blk-weight")
