"""What `peerloom btc address|balance|send` do, below the CLI: hand out addresses, read the wallet's coins (from
the running node through its control port, else from the home's chain state: confirmed coins only), and make,
sign and submit a payment through the running node, which relays it by wtxid.

Errors are `WalletError` (or `AddressError`) with a message fit for one line.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from peerloom.state import State

from .bech32 import AddressError, script_for_address
from .chainstate import MIGRATIONS
from .control import call, read_wallet_answer
from .params import COIN, NetworkParams
from .serialize import hash_hex
from .spend import select_coins, sign_spend
from .status import running_status, stored_tip
from .wallet import CHANGE, RECEIVE, Wallet, WalletError, WalletView, confirmed_coins

MAX_MONEY = 21_000_000 * COIN


def parse_amount(text: str) -> int:
    """Satoshis of "0.5" (bitcoin, up to 8 decimals) or "15000sat"."""
    try:
        if text.endswith("sat"):
            value = int(text[:-3])
        else:
            btc = Decimal(text)
            if not btc.is_finite() or btc != btc.quantize(Decimal("1e-8")):
                raise ValueError
            value = int(btc * COIN)
    except (ValueError, InvalidOperation):
        raise WalletError(f"amount {text!r}: give bitcoin with up to 8 decimals (0.5) or satoshis (15000sat)") from None
    if not 0 < value <= MAX_MONEY:
        raise WalletError(f"amount {text!r} is not between 1 sat and 21 million bitcoin")
    return value


def new_address(home: Path, params: NetworkParams, kind: str) -> dict[str, Any]:
    """A fresh receive address of `kind` (the wallet is made on first use)."""
    wallet = Wallet.open(home, params, create=True)
    key = wallet.next_key(kind, RECEIVE)
    return {"address": wallet.address(key), "type": kind, "path": key.path, "script": key.script.hex()}


def _control_port(home: Path, params: NetworkParams) -> int | None:
    """The control port of the node running on `home`, None when none runs."""
    status = running_status(home, params)
    if status is None or not status.get("control_port"):
        return None
    return int(status["control_port"])


def wallet_view(home: Path, params: NetworkParams, wallet: Wallet) -> tuple[WalletView, bool]:
    """The wallet's coins and whether a running node gave them (with its mempool) or the stored chain state did."""
    scripts = list(wallet.owned())
    port = _control_port(home, params)
    if port is not None:
        height, coins, mempool = read_wallet_answer(call(port, {"op": "wallet", "scripts": [s.hex() for s in scripts]}))
        return WalletView.build(scripts, coins, mempool, height), True
    state = State(home / "state.sqlite")
    try:
        height = stored_tip(state, params)["height"]
        coins = confirmed_coins(state.schema("btc", MIGRATIONS), scripts)
    finally:
        state.close()
    return WalletView.build(scripts, coins, [], height), False


def balance(home: Path, params: NetworkParams) -> dict[str, Any]:
    wallet = Wallet.open(home, params)
    view, live = wallet_view(home, params, wallet)
    return {"network": params.name, "height": view.tip, "node_running": live, **view.balance()}


def send(home: Path, params: NetworkParams, address: str, amount: int, fee_rate: float,
         change_kind: str = "p2wpkh") -> dict[str, Any]:
    """Pay `amount` satoshis to `address` at `fee_rate` sat/vB through the running node; the txid and fee."""
    try:
        pay_script = script_for_address(Wallet.hrp_of(params), address)
    except AddressError as exc:
        raise WalletError(f"bad address for {params.name}: {exc}") from None
    wallet = Wallet.open(home, params)
    port = _control_port(home, params)
    if port is None:
        raise WalletError("no btc node is running on this home: start one (`peerloom btc node`) to send")
    owned = wallet.owned()
    view, _ = wallet_view(home, params, wallet)
    change = wallet.key(change_kind, CHANGE, wallet.counters[change_kind][CHANGE])
    plan = select_coins(view.spendable(), amount, fee_rate, pay_script, change.script,
                        {script: key.kind for script, key in owned.items()})
    if plan.change:
        wallet.next_key(change_kind, CHANGE)  # that change address is used now
    tx = sign_spend(plan, owned)
    reply = call(port, {"op": "send", "tx": tx.serialize().hex()})
    txid = hash_hex(tx.txid)
    if reply.get("txid") != txid:
        raise WalletError(f"the btc node answered {reply} for transaction {txid}")
    return {"txid": txid, "amount": amount, "fee": plan.fee, "change": plan.change, "inputs": len(plan.inputs),
            "vsize": (tx.weight() + 3) // 4}
