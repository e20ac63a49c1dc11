"""Unspent outputs (coins) and the undo data of a connected block, as the chain state stores them.

A coin is an output with the height of the block that created it and whether that was a coinbase (for
maturity). A block's undo data is the list of coins its inputs spent, in spending order: disconnecting the
block removes the outputs it created and puts those coins back (Core's `CBlockUndo`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .serialize import Reader, compact_size, var_bytes
from .tx import OutPoint, Transaction, TxOut

MAX_SCRIPT_SIZE = 10_000
OP_RETURN = 0x6A


@dataclass(frozen=True)
class Coin:
    value: int
    script_pubkey: bytes
    height: int
    coinbase: bool

    @property
    def output(self) -> TxOut:
        return TxOut(self.value, self.script_pubkey)


class CoinSource(Protocol):
    """Where connecting a block looks up the coins its inputs spend."""

    def fetch_coins(self, outpoints: Iterable[OutPoint]) -> Mapping[OutPoint, Coin]:
        """The unspent coins among `outpoints` (missing ones are simply absent)."""
        ...


def is_unspendable(script: bytes) -> bool:
    """Outputs never added to the UTXO set (Core's `CScript::IsUnspendable`)."""
    return (len(script) > 0 and script[0] == OP_RETURN) or len(script) > MAX_SCRIPT_SIZE


def created_coins(tx: Transaction, height: int) -> Iterable[tuple[OutPoint, Coin]]:
    """The spendable outputs of `tx` as coins at `height` (Core's `AddCoins`)."""
    coinbase = tx.is_coinbase()
    txid = tx.txid
    for index, out in enumerate(tx.outputs):
        if not is_unspendable(out.script_pubkey):
            yield OutPoint(txid, index), Coin(out.value, out.script_pubkey, height, coinbase)


def encode_undo(spent: Iterable[tuple[OutPoint, Coin]]) -> bytes:
    items = list(spent)
    parts = [compact_size(len(items))]
    for outpoint, coin in items:
        parts += (
            outpoint.txid,
            outpoint.index.to_bytes(4, "little"),
            coin.value.to_bytes(8, "little", signed=True),
            var_bytes(coin.script_pubkey),
            (coin.height << 1 | coin.coinbase).to_bytes(5, "little"),
        )
    return b"".join(parts)


def decode_undo(data: bytes) -> list[tuple[OutPoint, Coin]]:
    """The inverse of `encode_undo`; a `BtcError` for damaged data."""
    reader = Reader(data)
    items = []
    for _ in range(reader.count(50)):
        outpoint = OutPoint(reader.bytes(32), reader.u32())
        value = reader.i64()
        script = reader.var_bytes()
        code = int.from_bytes(reader.bytes(5), "little")
        items.append((outpoint, Coin(value, script, code >> 1, bool(code & 1))))
    reader.end()
    return items

