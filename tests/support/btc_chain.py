"""Regtest chains built in tests: blocks mined with peerloom's miner on any parent, paying bare `OP_TRUE`
outputs (spent with an empty scriptSig, so a chain of real transactions needs no keys), and a dump of a chain
state's tables for "nothing was written" checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from peerloom.apps.btc.block import Block
from peerloom.apps.btc.chainstate import ChainState
from peerloom.apps.btc.miner import assemble_block, solve
from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.rules import REGTEST_DEPLOYMENTS
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut

OP_TRUE = b"\x51"
NOW = REGTEST.genesis.header.time + 10_000_000


@dataclass(frozen=True)
class Tip:
    """Where the next block goes: the parent's hash, height and time."""

    hash: bytes
    height: int
    time: int

    @classmethod
    def genesis(cls) -> Tip:
        return cls(REGTEST.genesis_hash, 0, REGTEST.genesis.header.time)


def mine_block(tip: Tip, txs: Sequence[Transaction] = (), fees: int = 0, extra_reward: int = 0,
               script: bytes = OP_TRUE, time_step: int = 600) -> tuple[Block, Tip]:
    """A solved block on `tip` paying subsidy + `fees` (+ `extra_reward`, to make it invalid) to `script`."""
    height = tip.height + 1
    reward = REGTEST_DEPLOYMENTS.subsidy(height) + fees + extra_reward
    block = assemble_block(tip.hash, height, tip.time + time_step, 0x207FFFFF, txs, script, reward)
    block = solve(block, REGTEST.pow_limit)
    return block, Tip(block.hash, height, block.header.time)


def spend(prevouts: Sequence[tuple[OutPoint, int]], n_out: int = 2, fee: int = 1000, version: int = 2,
          locktime: int = 0, sequence: int = 0xFFFFFFFE, script: bytes = OP_TRUE) -> Transaction:
    """A transaction spending `OP_TRUE` coins (outpoint, value) into `n_out` equal `script` outputs."""
    total = sum(v for _, v in prevouts) - fee
    share = total // n_out
    outs = tuple(TxOut(share if i else total - share * (n_out - 1), script) for i in range(n_out))
    ins = tuple(TxIn(op, b"", sequence) for op, _ in prevouts)
    return Transaction(version, ins, outs, locktime)


def coinbase_out(block: Block) -> tuple[OutPoint, int]:
    cb = block.transactions[0]
    return OutPoint(cb.txid, 0), cb.outputs[0].value


def dump(chain: ChainState) -> list[tuple]:
    """Every row of the chain state's tables (for before/after comparisons)."""
    rows: list[tuple] = []
    for table in ("btc_meta", "btc_blocks", "btc_coins", "btc_undo"):
        rows += [(table, *r) for r in chain_schema_rows(chain, table)]
    return rows


def chain_schema_rows(chain: ChainState, table: str) -> list[tuple]:
    return [tuple(r) for r in chain.schema.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
