"""Making a payment: coin selection (largest first, with change), the transaction, and its signatures.

    plan = select_coins(view.spendable(), amount, fee_rate, pay_script, change_script)
    tx = sign_spend(plan, keys_by_script)

Sizes are estimated in weight units before signing, for the worst case of each input (a 72-byte DER ECDSA
signature; a 64-byte Schnorr one), so the fee paid is never below `fee_rate` times the signed size. Outputs
below Core's dust threshold are refused (the payment) or dropped into the fee (the change).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .mempool import dust_threshold
from .sighash import PrecomputedTx
from .signing import sign_p2wpkh, sign_taproot_key_path
from .tx import Transaction, TxIn, TxOut
from .wallet import OwnedKey, WalletCoin, WalletError

TX_OVERHEAD_WEIGHT = 4 * (4 + 1 + 1 + 4) + 2  # version, input and output counts, locktime; segwit marker+flag
INPUT_WEIGHT = {
    "p2wpkh": 4 * (32 + 4 + 1 + 4) + 1 + 1 + 73 + 1 + 33,  # outpoint, empty scriptSig, sequence; 2-item witness
    "p2tr": 4 * (32 + 4 + 1 + 4) + 1 + 1 + 64,  # one 64-byte Schnorr signature (SIGHASH_DEFAULT)
}
SEQUENCE = 0xFFFFFFFD  # final for locktime, signals replaceability (BIP 125)
DEFAULT_FEE_RATE = 2.0  # sat/vB: twice Core's minimum relay fee


@dataclass(frozen=True)
class SpendPlan:
    inputs: tuple[WalletCoin, ...]
    outputs: tuple[TxOut, ...]
    fee: int
    change: int  # 0: no change output


def output_weight(script: bytes) -> int:
    return 4 * (8 + 1 + len(script))


def _fee(weight: int, fee_rate: float) -> int:
    return math.ceil(math.ceil(weight / 4) * fee_rate)


def select_coins(coins: Sequence[WalletCoin], amount: int, fee_rate: float, pay_script: bytes,
                 change_script: bytes, kind_of: Mapping[bytes, str]) -> SpendPlan:
    """Largest coins first until they pay `amount` and the fee; change back to `change_script` unless it would
    be dust. `kind_of` maps each coin's script to its key kind (for its signed size)."""
    if amount <= 0:
        raise WalletError("the amount must be positive")
    payment = TxOut(amount, pay_script)
    if amount < dust_threshold(payment):
        raise WalletError(f"{amount} sat is dust for that address (at least {dust_threshold(payment)} sat)")
    base = TX_OVERHEAD_WEIGHT + output_weight(pay_script)
    chosen: list[WalletCoin] = []
    total = weight = 0
    for wc in sorted(coins, key=lambda c: (-c.coin.value, c.outpoint.txid, c.outpoint.index)):
        chosen.append(wc)
        total += wc.coin.value
        weight += INPUT_WEIGHT[kind_of[wc.coin.script_pubkey]]
        fee_with_change = _fee(base + weight + output_weight(change_script), fee_rate)
        change = total - amount - fee_with_change
        if change > 0 and change >= dust_threshold(TxOut(change, change_script)):
            return SpendPlan(tuple(chosen), (payment, TxOut(change, change_script)), fee_with_change, change)
        if total - amount >= _fee(base + weight, fee_rate):
            return SpendPlan(tuple(chosen), (payment,), total - amount, 0)
    available = sum(wc.coin.value for wc in coins)
    raise WalletError(f"insufficient funds: {amount} sat plus the fee needed, {available} sat spendable")


def sign_spend(plan: SpendPlan, keys: Mapping[bytes, OwnedKey], locktime: int = 0) -> Transaction:
    """The signed transaction of `plan`: every input signed with the key of the script it spends."""
    inputs = tuple(TxIn(wc.outpoint, b"", SEQUENCE) for wc in plan.inputs)
    unsigned = Transaction(2, inputs, plan.outputs, locktime)
    pre = PrecomputedTx(unsigned, [wc.coin.output for wc in plan.inputs])
    signed = []
    for index, (txin, wc) in enumerate(zip(inputs, plan.inputs, strict=True)):
        key = keys[wc.coin.script_pubkey]
        witness = (sign_p2wpkh(pre, index, key.secret) if key.kind == "p2wpkh"
                   else sign_taproot_key_path(pre, index, key.secret))
        signed.append(TxIn(txin.prevout, b"", txin.sequence, tuple(witness)))
    return Transaction(2, tuple(signed), plan.outputs, locktime)
