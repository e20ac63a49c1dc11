"""The wallet: its file (0600, atomic, reloaded with the same keys), balances with coinbase maturity and the
mempool, coin selection (largest first, change, dust), and spends of P2WPKH and P2TR key-path coins that our own
mempool policy and block validation (taproot active on regtest) accept — and refuse once tampered with."""

from __future__ import annotations

import math
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.btc_chain import NOW, OP_TRUE, Tip, mine_block

from peerloom.apps.btc.blockfiles import BlockFiles
from peerloom.apps.btc.chainstate import MIGRATIONS, ChainState
from peerloom.apps.btc.coins import Coin
from peerloom.apps.btc.mempool import Mempool, MempoolReject, dust_threshold
from peerloom.apps.btc.params import COIN, MAINNET, REGTEST
from peerloom.apps.btc.scriptcheck import InlineScriptChecker
from peerloom.apps.btc.spend import select_coins, sign_spend
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut
from peerloom.apps.btc.validation import ScriptJob
from peerloom.apps.btc.wallet import (
    CHANGE,
    LOOKAHEAD,
    RECEIVE,
    Wallet,
    WalletCoin,
    WalletError,
    WalletView,
    confirmed_coins,
    relevant_transactions,
    wallet_path,
)
from peerloom.state import State

PAY = b"\x00\x14" + bytes(range(20))  # someone else's P2WPKH output


def test_wallet_file_is_private_atomic_and_reloads_the_same_keys(tmp_path: Path) -> None:
    with pytest.raises(WalletError, match="no regtest wallet"):
        Wallet.open(tmp_path, REGTEST)
    wallet = Wallet.open(tmp_path, REGTEST, create=True)
    first = wallet.next_key("p2wpkh", RECEIVE)
    taproot = wallet.next_key("p2tr", RECEIVE)
    path = wallet_path(tmp_path, REGTEST)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    assert first.path == "m/84'/1'/0'/0/0" and taproot.path == "m/86'/1'/0'/0/0"
    assert wallet.address(first).startswith("bcrt1q") and wallet.address(taproot).startswith("bcrt1p")
    again = Wallet.open(tmp_path, REGTEST)
    assert again.next_key("p2wpkh", RECEIVE) == wallet.key("p2wpkh", RECEIVE, 1) != first
    assert len(again.owned()) == 2 * 2 * LOOKAHEAD + 3  # two p2wpkh and one p2tr address handed out
    assert first.script in again.owned() and taproot.script in again.owned()
    with pytest.raises(WalletError, match="unknown address type"):
        again.next_key("p2pkh", RECEIVE)


def test_a_damaged_or_foreign_wallet_file_is_one_clear_error(tmp_path: Path) -> None:
    Wallet.open(tmp_path, REGTEST, create=True)
    mainnet_path = wallet_path(tmp_path, MAINNET)
    mainnet_path.parent.mkdir(parents=True)
    mainnet_path.write_bytes(wallet_path(tmp_path, REGTEST).read_bytes())
    with pytest.raises(WalletError, match="a wallet for 'regtest', not mainnet"):
        Wallet.open(tmp_path, MAINNET)
    wallet_path(tmp_path, REGTEST).write_text('{"network": "regtest", "seed": "zz"}')
    with pytest.raises(WalletError, match="damaged wallet file"):
        Wallet.open(tmp_path, REGTEST)


def _coin(n: int, value: int, script: bytes, height: int = 1, coinbase: bool = False) -> tuple[OutPoint, Coin]:
    return OutPoint(bytes([n]) * 32, 0), Coin(value, script, height, coinbase)


def test_balance_counts_maturity_and_the_mempool() -> None:
    mine, other = b"\x00\x14" + bytes(20), PAY
    young = _coin(1, 50 * COIN, mine, height=150, coinbase=True)
    old = _coin(2, 50 * COIN, mine, height=100, coinbase=True)
    plain = _coin(3, 7000, mine, height=249)
    theirs = _coin(4, 9000, other)
    spend_old = Transaction(2, (TxIn(old[0], b"", 0),), (TxOut(10 * COIN, other), TxOut(40 * COIN - 500, mine)), 0)
    view = WalletView.build([mine], [young, old, plain, theirs], [spend_old], tip=248)
    # tip 248: the next block is 249; the coinbase of 150 needs 100 confirmations, the one of 100 has them
    assert view.balance() == {"confirmed": 7000, "immature": 50 * COIN, "unconfirmed": 40 * COIN - 500,
                              "total": 90 * COIN - 500 + 7000}
    assert {wc.coin.value for wc in view.spendable()} == {7000, 40 * COIN - 500}
    unrelated = Transaction(2, (TxIn(theirs[0], b"", 0),), (TxOut(8000, other),), 0)
    child = Transaction(2, (TxIn(OutPoint(spend_old.txid, 0), b"", 0),), (TxOut(9 * COIN, other),), 0)
    assert relevant_transactions([unrelated, spend_old, child], [mine], [old[0]]) == [spend_old, child]


def _wc(n: int, value: int, script: bytes) -> WalletCoin:
    op, coin = _coin(n, value, script)
    return WalletCoin(op, coin, True)


def test_coin_selection_largest_first_with_change_and_dust_rules() -> None:
    a, b = b"\x00\x14" + bytes(20), b"\x51\x20" + bytes(32)
    kinds = {a: "p2wpkh", b: "p2tr"}
    coins = [_wc(1, 10_000, a), _wc(2, 50_000, b), _wc(3, 30_000, a)]
    plan = select_coins(coins, 60_000, 2.0, PAY, a, kinds)
    assert [wc.coin.value for wc in plan.inputs] == [50_000, 30_000]
    assert plan.outputs[0] == TxOut(60_000, PAY) and plan.outputs[1] == TxOut(plan.change, a)
    assert plan.change == 80_000 - 60_000 - plan.fee and plan.fee > 0
    # A remainder too small for a change output goes to the fee.
    exact = select_coins(coins, 49_700, 2.0, PAY, a, kinds)
    assert exact.change == 0 and len(exact.outputs) == 1 and exact.fee == 300
    with pytest.raises(WalletError, match="insufficient funds: 90000 sat plus the fee needed, 90000 sat spendable"):
        select_coins(coins, 90_000, 2.0, PAY, a, kinds)
    with pytest.raises(WalletError, match="dust"):
        select_coins(coins, 200, 2.0, PAY, a, kinds)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[ChainState]:
    state = State(tmp_path / "state.sqlite")
    yield ChainState(REGTEST, state.schema("btc", MIGRATIONS), BlockFiles(tmp_path / "blocks"), InlineScriptChecker())
    state.close()


def test_p2wpkh_and_taproot_spends_pass_our_mempool_and_block_validation(tmp_path: Path, chain: ChainState) -> None:
    wallet = Wallet.open(tmp_path, REGTEST, create=True)
    segwit, taproot = wallet.next_key("p2wpkh", RECEIVE), wallet.next_key("p2tr", RECEIVE)
    tip = Tip.genesis()
    for script in (segwit.script, taproot.script, *[OP_TRUE] * 100):
        block, tip = mine_block(tip, script=script)
        chain.add_block(block, NOW)
    owned = wallet.owned()
    view = WalletView.build(owned, confirmed_coins(chain.schema, owned), [], chain.height)
    assert view.balance()["confirmed"] == 100 * COIN and len(view.spendable()) == 2

    change = wallet.next_key("p2tr", CHANGE)
    plan = select_coins(view.spendable(), 60 * COIN, 3.0, PAY, change.script, {s: k.kind for s, k in owned.items()})
    assert {wc.coin.script_pubkey for wc in plan.inputs} == {segwit.script, taproot.script}
    tx = sign_spend(plan, owned)
    assert tx.weight() <= 4 * (plan.fee // 3)  # the fee pays at least 3 sat/vB of the signed size

    # Tampered: our interpreter refuses a flipped bit in either signature.
    for index in range(2):
        inputs = list(tx.inputs)
        sig = bytearray(inputs[index].witness[0])
        sig[10] ^= 1
        inputs[index] = TxIn(inputs[index].prevout, b"", inputs[index].sequence,
                             (bytes(sig), *inputs[index].witness[1:]))
        bad = Transaction(tx.version, tuple(inputs), tx.outputs, tx.locktime)
        with pytest.raises(MempoolReject, match="mandatory-script-verify"):
            _accept(Mempool(), bad, chain)

    pool = Mempool()
    assert _accept(pool, tx, chain) == [tx]
    pending = WalletView.build(owned | {change.script: change}, confirmed_coins(chain.schema, owned),
                               relevant_transactions([tx], owned, [wc.outpoint for wc in view.coins]), chain.height)
    assert pending.balance()["confirmed"] == 0 and pending.balance()["unconfirmed"] == plan.change

    block, tip = mine_block(tip, [tx], fees=plan.fee)
    result = chain.add_block(block, NOW)
    assert result.connected == [block] and chain.height == 103
    owned = wallet.owned()
    after = WalletView.build(owned, confirmed_coins(chain.schema, owned), [], chain.height)
    assert after.balance() == {"confirmed": plan.change, "immature": 0, "unconfirmed": 0, "total": plan.change}
    assert chain.fetch_coins([OutPoint(tx.txid, 0)])[OutPoint(tx.txid, 0)].value == 60 * COIN


def _accept(pool: Mempool, tx: Transaction, chain: ChainState) -> list[Transaction]:
    checker = InlineScriptChecker()

    def verify(job: ScriptJob) -> None:
        checker.check([job])

    return pool.accept(tx, chain, chain.height, chain.headers.median_time_past(chain.tip), NOW, verify)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.integers(1000, 10 * COIN), min_size=1, max_size=6), kinds=st.lists(st.booleans(), min_size=6,
       max_size=6), amount=st.integers(294, 20 * COIN), fee_rate=st.floats(1.0, 50.0))
def test_a_signed_spend_balances_and_pays_at_least_its_fee_rate(values: list[int], kinds: list[bool], amount: int,
                                                                fee_rate: float) -> None:
    keys = [Wallet(Path("unused"), REGTEST, bytes(32), {"p2wpkh": [0, 0], "p2tr": [0, 0]}).key(
        "p2tr" if taproot else "p2wpkh", RECEIVE, i) for i, taproot in enumerate(kinds)]
    owned = {k.script: k for k in keys}
    coins = [_wc(i + 1, value, keys[i].script) for i, value in enumerate(values)]
    try:
        plan = select_coins(coins, amount, fee_rate, PAY, keys[-1].script, {s: k.kind for s, k in owned.items()})
    except WalletError as exc:
        # refused only when all the coins cannot pay the amount and the fee of spending them all (vbytes: 11 of
        # overhead, two outputs of at most 43, inputs of at most 69)
        assert "insufficient funds" in str(exc)
        assert sum(values) < amount + math.ceil(fee_rate * (11 + 2 * 43 + 69 * len(values)))
        return
    tx = sign_spend(plan, owned)
    spent = sum(wc.coin.value for wc in plan.inputs)
    assert spent == sum(o.value for o in tx.outputs) + plan.fee and tx.outputs[0] == TxOut(amount, PAY)
    assert plan.fee >= fee_rate * ((tx.weight() + 3) // 4)
    assert all(o.value >= dust_threshold(o) for o in tx.outputs)
