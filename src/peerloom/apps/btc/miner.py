"""Block assembly and a CPU miner, for regtest (where the target lets about every second hash through), so
peerloom can be a chain's origin: a coinbase with the BIP 34 height, the subsidy plus fees, and the BIP 141
witness commitment (Core's `BlockAssembler::CreateNewBlock` and `GenerateCoinbaseCommitment`)."""

from __future__ import annotations

from collections.abc import Sequence

from .block import WITNESS_COMMITMENT_HEADER, Block, BlockHeader, merkle_root
from .serialize import sha256d
from .tx import NULL_HASH, NULL_INDEX, OutPoint, Transaction, TxIn, TxOut
from .validation import coinbase_height_script

WITNESS_RESERVED_VALUE = bytes(32)
BLOCK_VERSION = 0x20000000  # BIP 9 top bits, no deployment signalled


class MiningError(Exception):
    """No nonce meets the target (only plausible off regtest)."""


def coinbase_transaction(height: int, script_pubkey: bytes, value: int, witness_root: bytes | None,
                         tag: bytes = b"peerloom") -> Transaction:
    """The coinbase of a block at `height` paying `value` to `script_pubkey`; with `witness_root`, it carries the
    reserved value and an OP_RETURN commitment to sha256d(witness root || reserved value)."""
    script_sig = coinbase_height_script(height) + bytes((len(tag),)) + tag
    outputs = [TxOut(value, script_pubkey)]
    witness: tuple[bytes, ...] = ()
    if witness_root is not None:
        commitment = sha256d(witness_root + WITNESS_RESERVED_VALUE)
        outputs.append(TxOut(0, WITNESS_COMMITMENT_HEADER + commitment))
        witness = (WITNESS_RESERVED_VALUE,)
    txin = TxIn(OutPoint(NULL_HASH, NULL_INDEX), script_sig, 0xFFFFFFFF, witness)
    return Transaction(2, (txin,), tuple(outputs), 0)


def assemble_block(prev_hash: bytes, height: int, time: int, bits: int, transactions: Sequence[Transaction],
                   script_pubkey: bytes, reward: int, segwit: bool = True) -> Block:
    """An unsolved block (nonce 0) on `prev_hash` with `transactions` after a coinbase paying `reward`
    (the subsidy plus the transactions' fees: the caller knows both)."""
    witness_root = None
    if segwit:
        witness_root, _ = merkle_root([bytes(32)] + [tx.wtxid for tx in transactions])
    coinbase = coinbase_transaction(height, script_pubkey, reward, witness_root)
    txs = (coinbase, *transactions)
    root, _ = merkle_root([tx.txid for tx in txs])
    return Block(BlockHeader(BLOCK_VERSION, prev_hash, root, time, bits, 0), txs)


def solve(block: Block, target: int, max_tries: int = 1 << 24) -> Block:
    """`block` with the first nonce whose header hash meets `target`."""
    header = block.header
    prefix = header.serialize()[:76]
    for nonce in range(max_tries):
        if int.from_bytes(sha256d(prefix + nonce.to_bytes(4, "little")), "little") <= target:
            solved = BlockHeader(header.version, header.prev_hash, header.merkle_root, header.time, header.bits,
                                 nonce)
            return Block(solved, block.transactions)
    raise MiningError(f"no nonce in {max_tries} tries meets the target")
