"""Consensus rules by height (Core's chainparams and `GetBlockScriptFlags`), the subsidy schedule, the BIP 34
height push, and sigop counting (Core's sigopcount_tests.cpp cases)."""

from __future__ import annotations

from peerloom.apps.btc.opcodes import witness_program
from peerloom.apps.btc.params import COIN
from peerloom.apps.btc.rules import MAINNET_DEPLOYMENTS, REGTEST_DEPLOYMENTS
from peerloom.apps.btc.sigops import legacy_sigops, transaction_sigop_cost
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut
from peerloom.apps.btc.validation import coinbase_height_script


def test_the_subsidy_halves_on_schedule() -> None:
    assert MAINNET_DEPLOYMENTS.subsidy(0) == 50 * COIN
    assert MAINNET_DEPLOYMENTS.subsidy(209_999) == 50 * COIN
    assert MAINNET_DEPLOYMENTS.subsidy(210_000) == 25 * COIN
    assert MAINNET_DEPLOYMENTS.subsidy(840_000) == 3 * COIN + COIN // 8  # 3.125
    assert MAINNET_DEPLOYMENTS.subsidy(64 * 210_000) == 0
    assert REGTEST_DEPLOYMENTS.subsidy(149) == 50 * COIN and REGTEST_DEPLOYMENTS.subsidy(150) == 25 * COIN


def test_script_flags_follow_the_mainnet_activation_heights() -> None:
    some = b"\x01" * 32
    assert MAINNET_DEPLOYMENTS.script_flags(100, some) == {"P2SH", "WITNESS"}
    assert MAINNET_DEPLOYMENTS.script_flags(170_060, MAINNET_DEPLOYMENTS.bip16_exception) == set()
    assert MAINNET_DEPLOYMENTS.script_flags(363_725, some) == {"P2SH", "WITNESS", "DERSIG"}
    assert MAINNET_DEPLOYMENTS.script_flags(481_824, some) == {
        "P2SH", "WITNESS", "DERSIG", "CHECKLOCKTIMEVERIFY", "CHECKSEQUENCEVERIFY", "NULLDUMMY"}
    assert "TAPROOT" in MAINNET_DEPLOYMENTS.script_flags(709_632, some)
    assert "TAPROOT" not in MAINNET_DEPLOYMENTS.script_flags(709_631, some)
    assert [MAINNET_DEPLOYMENTS.min_block_version(h) for h in (227_930, 227_931, 363_725, 388_381)] == [0, 2, 3, 4]
    assert "TAPROOT" in REGTEST_DEPLOYMENTS.script_flags(1, some)


def test_the_bip34_height_is_pushed_as_cscript_does() -> None:
    assert coinbase_height_script(1) == b"\x51" and coinbase_height_script(16) == b"\x60"
    assert coinbase_height_script(17) == b"\x01\x11"
    assert coinbase_height_script(128) == b"\x02\x80\x00"  # room for the sign bit
    assert coinbase_height_script(227_931) == b"\x03\x5b\x7a\x03"


def test_sigops_are_counted_as_core_counts_them() -> None:
    # sigopcount_tests.cpp GetSigOpCount: 2-of-3 multisig is 3 accurately, 20 inaccurately.
    keys = b"".join(b"\x21" + bytes([2]) * 33 for _ in range(3))
    multisig = b"\x52" + keys + b"\x53\xae"
    assert legacy_sigops(multisig, accurate=True) == 3 and legacy_sigops(multisig, accurate=False) == 20
    assert legacy_sigops(b"\xac\xad\x4c", accurate=False) == 2  # a truncated PUSHDATA1 ends the walk
    p2sh = b"\xa9\x14" + bytes(20) + b"\x87"
    p2wsh = b"\x00\x20" + bytes(32)
    assert witness_program(p2wsh) == (0, bytes(32)) and witness_program(p2sh) is None
    redeem_push = b"\x4c" + bytes([len(multisig)]) + multisig
    spend_p2sh = Transaction(1, (TxIn(OutPoint(b"\x01" * 32, 0), b"\x00" + redeem_push, 0),), (TxOut(1, b""),), 0)
    assert transaction_sigop_cost(spend_p2sh, [TxOut(1, p2sh)]) == 3 * 4
    spend_p2wsh = Transaction(1, (TxIn(OutPoint(b"\x01" * 32, 0), b"", 0, (b"", multisig)),), (TxOut(1, b""),), 0)
    assert transaction_sigop_cost(spend_p2wsh, [TxOut(1, p2wsh)]) == 3
    spend_p2wpkh = Transaction(1, (TxIn(OutPoint(b"\x01" * 32, 0), b"", 0, (b"s", b"k")),), (TxOut(1, b""),), 0)
    assert transaction_sigop_cost(spend_p2wpkh, [TxOut(1, b"\x00\x14" + bytes(20))]) == 1
    bare = Transaction(1, (TxIn(OutPoint(b"\x01" * 32, 0), b"", 0),), (TxOut(1, multisig),), 0)
    assert transaction_sigop_cost(bare, [TxOut(1, b"\x51")]) == 20 * 4
