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


class P2wpkhKey:
    """A key whose P2WPKH outputs tests spend with real BIP 143 signatures (libsecp256k1 through coincurve)."""

    def __init__(self, secret: bytes) -> None:
        import coincurve

        self.key = coincurve.PrivateKey(secret)
        self.pubkey = self.key.public_key.format(compressed=True)
        self.script = b"\x00\x14" + hash160(self.pubkey)

    def sign_input(self, tx: Transaction, index: int, spent: Sequence[TxOut]) -> Transaction:
        """`tx` with input `index` (spending one of this key's outputs) signed SIGHASH_ALL."""
        from peerloom.apps.btc.sighash import PrecomputedTx, segwit_v0_sighash

        script_code = b"\x76\xa9\x14" + hash160(self.pubkey) + b"\x88\xac"
        digest = segwit_v0_sighash(script_code, PrecomputedTx(tx, list(spent)), index, spent[index].value, 1)
        sig = self.key.sign(digest, hasher=None) + b"\x01"
        inputs = list(tx.inputs)
        old = inputs[index]
        inputs[index] = TxIn(old.prevout, b"", old.sequence, (sig, self.pubkey))
        return Transaction(tx.version, tuple(inputs), tx.outputs, tx.locktime)


def hash160(data: bytes) -> bytes:
    import hashlib

    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()
