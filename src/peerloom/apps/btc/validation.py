"""Contextual block validation and block connection, sans-I/O: what Core's `ContextualCheckBlock` and
`ConnectBlock` check once a block's place in the chain and the coins it spends are known.

`connect_block` takes the block, its `BlockContext` (height, the median time past of its parent, the rules in
force) and a `CoinSource`; it returns a `BlockDelta` — the coins spent (the undo data), the coins created, the
fees, and one `ScriptJob` per non-coinbase transaction for a script checker — or raises `ConsensusError` with
Core's reject reason. Nothing is written here: the chain state applies a delta in one database transaction,
after the script checks pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .block import Block, ConsensusError
from .checks import MAX_MONEY
from .coins import Coin, CoinSource, created_coins
from .rules import COINBASE_MATURITY, LOCKTIME_THRESHOLD, MAX_BLOCK_SIGOPS_COST, Deployments
from .sigops import transaction_sigop_cost
from .tx import OutPoint, Transaction, TxOut

SEQUENCE_FINAL = 0xFFFFFFFF
SEQUENCE_DISABLE_FLAG = 1 << 31
SEQUENCE_TYPE_FLAG = 1 << 22
SEQUENCE_MASK = 0x0000FFFF
SEQUENCE_GRANULARITY = 9  # time-based relative locks count units of 512 seconds (BIP 68)


@dataclass(frozen=True)
class BlockContext:
    """Where a block sits: its height and hash, its parent's median time past, and `mtp_at(h)`, the median time
    past of the block at height `h` (< height) on the block's own branch (for BIP 68 time locks)."""

    height: int
    block_hash: bytes
    prev_mtp: int
    mtp_at: Callable[[int], int]
    deployments: Deployments

    @property
    def csv_active(self) -> bool:
        return self.height >= self.deployments.csv


@dataclass(frozen=True)
class ScriptJob:
    """The scripts of one transaction to verify: every input against the outputs it spends."""

    tx: Transaction
    spent: tuple[TxOut, ...]
    flags: frozenset[str]


@dataclass
class BlockDelta:
    """What connecting a block changes: `spent` (undo data, in order), `created` (outputs still unspent at the
    end of the block), the block's fees and its script jobs."""

    spent: list[tuple[OutPoint, Coin]] = field(default_factory=list)
    created: dict[OutPoint, Coin] = field(default_factory=dict)
    fees: int = 0
    script_jobs: list[ScriptJob] = field(default_factory=list)


def is_final(tx: Transaction, height: int, cutoff_time: int) -> bool:
    """Core's `IsFinalTx`: the locktime has passed (a height or a time), or every input opts out with a final
    sequence."""
    if tx.locktime == 0:
        return True
    limit = height if tx.locktime < LOCKTIME_THRESHOLD else cutoff_time
    if tx.locktime < limit:
        return True
    return all(txin.sequence == SEQUENCE_FINAL for txin in tx.inputs)


def sequence_locks_met(tx: Transaction, coins: list[Coin], ctx: BlockContext) -> bool:
    """BIP 68 relative lock-times (Core's `CalculateSequenceLocks` + `EvaluateSequenceLocks`)."""
    if tx.version < 2 or not ctx.csv_active:
        return True
    min_height = min_time = -1
    for txin, coin in zip(tx.inputs, coins, strict=True):
        if txin.sequence & SEQUENCE_DISABLE_FLAG:
            continue
        if txin.sequence & SEQUENCE_TYPE_FLAG:
            coin_time = ctx.mtp_at(max(coin.height - 1, 0))
            min_time = max(min_time, coin_time + ((txin.sequence & SEQUENCE_MASK) << SEQUENCE_GRANULARITY) - 1)
        else:
            min_height = max(min_height, coin.height + (txin.sequence & SEQUENCE_MASK) - 1)
    return min_height < ctx.height and min_time < ctx.prev_mtp


def coinbase_height_script(height: int) -> bytes:
    """`CScript() << height`: how BIP 34 puts the height first in the coinbase's scriptSig."""
    if height == 0:
        return b"\x00"
    if 1 <= height <= 16:
        return bytes((0x50 + height,))
    size = (height.bit_length() + 8) // 8  # a CScriptNum: little-endian, with room for the sign bit
    return bytes((size,)) + height.to_bytes(size, "little")


def contextual_check_block(block: Block, ctx: BlockContext) -> None:
    """Core's `ContextualCheckBlockHeader` version rule and `ContextualCheckBlock`: retired versions, final
    transactions (BIP 113: against the parent's median time past once CSV is active), the BIP 34 height in the
    coinbase, and the witness commitment or, before segwit, no witness data at all."""
    rules = ctx.deployments
    if block.header.version < rules.min_block_version(ctx.height):
        raise ConsensusError("bad-version")
    cutoff = ctx.prev_mtp if ctx.csv_active else block.header.time
    if not all(is_final(tx, ctx.height, cutoff) for tx in block.transactions):
        raise ConsensusError("bad-txns-nonfinal")
    if ctx.height >= rules.bip34:
        expected = coinbase_height_script(ctx.height)
        if not block.transactions[0].inputs[0].script_sig.startswith(expected):
            raise ConsensusError("bad-cb-height")
    if ctx.height >= rules.segwit:
        block.check_witness_commitment()
    elif any(tx.has_witness for tx in block.transactions):
        raise ConsensusError("unexpected-witness")


def connect_block(block: Block, ctx: BlockContext, source: CoinSource) -> BlockDelta:
    """Core's `ConnectBlock` without the script checks (returned as jobs): BIP 30, inputs present and mature,
    amounts in range, sequence locks, the sigop cost, and the coinbase paying at most subsidy + fees."""
    contextual_check_block(block, ctx)
    txs = block.transactions
    own = {tx.txid for tx in txs}
    wanted = {txin.prevout for tx in txs[1:] for txin in tx.inputs if txin.prevout.txid not in own}
    bip30 = (ctx.height, ctx.block_hash) not in ctx.deployments.bip30_exceptions
    if bip30:
        wanted |= {OutPoint(tx.txid, i) for tx in txs for i in range(len(tx.outputs))}
    base = dict(source.fetch_coins(wanted))
    if bip30 and any(OutPoint(tx.txid, i) in base for tx in txs for i in range(len(tx.outputs))):
        raise ConsensusError("bad-txns-BIP30")
    delta = BlockDelta()
    flags = ctx.deployments.script_flags(ctx.height, ctx.block_hash)
    sigops = 0
    for tx in txs:
        if tx.is_coinbase():
            sigops += transaction_sigop_cost(tx, None)
        else:
            coins = [_spend(txin.prevout, base, delta) for txin in tx.inputs]
            delta.fees += _check_inputs(tx, coins, ctx)
            if not sequence_locks_met(tx, coins, ctx):
                raise ConsensusError("bad-txns-nonfinal")
            spent_outputs = tuple(coin.output for coin in coins)
            sigops += transaction_sigop_cost(tx, spent_outputs)
            delta.script_jobs.append(ScriptJob(tx, spent_outputs, flags))
        if sigops > MAX_BLOCK_SIGOPS_COST:
            raise ConsensusError("bad-blk-sigops")
        delta.created.update(created_coins(tx, ctx.height))
    if delta.fees > MAX_MONEY:
        raise ConsensusError("bad-txns-accumulated-fee-outofrange")
    coinbase_value = sum(out.value for out in txs[0].outputs)
    if coinbase_value > ctx.deployments.subsidy(ctx.height) + delta.fees:
        raise ConsensusError("bad-cb-amount")
    return delta


def _spend(outpoint: OutPoint, base: dict[OutPoint, Coin], delta: BlockDelta) -> Coin:
    """Take the coin at `outpoint`: created earlier in this block, or from the UTXO set (recorded as undo)."""
    coin = delta.created.pop(outpoint, None)
    if coin is not None:
        return coin
    coin = base.pop(outpoint, None)
    if coin is None:
        raise ConsensusError("bad-txns-inputs-missingorspent")
    delta.spent.append((outpoint, coin))
    return coin


def _check_inputs(tx: Transaction, coins: list[Coin], ctx: BlockContext) -> int:
    """Core's `Consensus::CheckTxInputs`: mature coinbase coins, values in range, inputs cover outputs; the fee."""
    value_in = 0
    for coin in coins:
        if coin.coinbase and ctx.height - coin.height < COINBASE_MATURITY:
            raise ConsensusError("bad-txns-premature-spend-of-coinbase")
        value_in += coin.value
        if not 0 <= coin.value <= MAX_MONEY or value_in > MAX_MONEY:
            raise ConsensusError("bad-txns-inputvalues-outofrange")
    value_out = sum(out.value for out in tx.outputs)
    if value_in < value_out:
        raise ConsensusError("bad-txns-in-belowout")
    return value_in - value_out
