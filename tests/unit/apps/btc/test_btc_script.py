"""verify_input on spends signed here with libsecp256k1 (P2PKH, P2WPKH, P2SH-P2WPKH, taproot key path with
every hash type), their failures, pickling for worker processes, and a property test: no script, witness or
flag set makes the interpreter fail with anything but ScriptError."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle

import pytest
from coincurve import PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.btc_vectors import crediting_tx, parse_asm, spending_tx

from peerloom.apps.btc import opcodes
from peerloom.apps.btc.checker import ExecData, TxChecker
from peerloom.apps.btc.interpreter import eval_script
from peerloom.apps.btc.opcodes import push_data
from peerloom.apps.btc.script import PrecomputedTx, ScriptError, ScriptFlags, verify_input
from peerloom.apps.btc.sighash import legacy_sighash
from peerloom.apps.btc.signing import (
    hash160,
    p2tr_script,
    p2wpkh_script,
    sign_p2wpkh,
    sign_taproot_key_path,
    taproot_output_key,
)
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut

SECRET = hashlib.sha256(b"peerloom script test").digest()
PUBKEY = PrivateKey(SECRET).public_key.format(compressed=True)


def _tx(n_inputs: int = 2) -> Transaction:
    inputs = tuple(TxIn(OutPoint(hashlib.sha256(bytes([i])).digest(), i), b"", 0xFFFFFFFD) for i in range(n_inputs))
    return Transaction(2, inputs, (TxOut(40_000, p2wpkh_script(PUBKEY)), TxOut(1_000, b"\x6a")), 0)


def _with_input(tx: Transaction, index: int, **changes) -> Transaction:
    inputs = list(tx.inputs)
    inputs[index] = dataclasses.replace(inputs[index], **changes)
    return dataclasses.replace(tx, inputs=tuple(inputs))


def _code(flags: ScriptFlags, tx: Transaction, spent: list[TxOut], index: int = 0) -> str:
    try:
        verify_input(tx, index, spent, flags)
    except ScriptError as exc:
        return exc.code
    return "OK"


def test_p2wpkh_spend_verifies_and_a_changed_amount_does_not() -> None:
    spent = [TxOut(50_000, p2wpkh_script(PUBKEY)), TxOut(7, b"\x51")]
    tx = _tx()
    signed = _with_input(tx, 0, witness=sign_p2wpkh(PrecomputedTx(tx, spent), 0, SECRET))
    assert _code(ScriptFlags.STANDARD, signed, spent) == "OK"
    other_amount = [TxOut(50_001, spent[0].script_pubkey), spent[1]]  # BIP 143 signs the amount
    assert _code(ScriptFlags.MANDATORY, signed, other_amount) == "EVAL_FALSE"
    assert _code(ScriptFlags.STANDARD, signed, other_amount) == "NULLFAIL"
    no_witness = _with_input(signed, 0, witness=())
    assert _code(ScriptFlags.MANDATORY, no_witness, spent) == "WITNESS_PROGRAM_MISMATCH"
    # Before segwit (no WITNESS flag) the program is anyone-can-spend, as a pre-2017 node sees it.
    assert _code(ScriptFlags.P2SH, no_witness, spent) == "OK"


def test_p2sh_wrapped_p2wpkh() -> None:
    redeem = p2wpkh_script(PUBKEY)
    spent = [TxOut(50_000, b"\xa9\x14" + hash160(redeem) + b"\x87"), TxOut(7, b"\x51")]
    tx = _tx()
    witness = sign_p2wpkh(PrecomputedTx(tx, spent), 0, SECRET)
    signed = _with_input(tx, 0, script_sig=push_data(redeem), witness=witness)
    assert _code(ScriptFlags.STANDARD, signed, spent) == "OK"
    padded = _with_input(signed, 0, script_sig=b"\x00" + push_data(redeem))
    assert _code(ScriptFlags.MANDATORY, padded, spent) == "WITNESS_MALLEATED_P2SH"


def test_legacy_p2pkh_with_strict_der_and_low_s() -> None:
    spent = [TxOut(1, b"\x76\xa9\x14" + hash160(PUBKEY) + b"\x88\xac"), TxOut(7, b"\x51")]
    tx = _tx()
    digest = legacy_sighash(spent[0].script_pubkey, tx, 0, 1)
    sig = PrivateKey(SECRET).sign(digest, hasher=None) + b"\x01"
    signed = _with_input(tx, 0, script_sig=push_data(sig) + push_data(PUBKEY))
    assert _code(ScriptFlags.STANDARD, signed, spent) == "OK"
    wrong_key = _with_input(tx, 0, script_sig=push_data(sig) + push_data(PrivateKey().public_key.format()))
    assert _code(ScriptFlags.MANDATORY, wrong_key, spent) == "EQUALVERIFY"


@pytest.mark.parametrize("hash_type", [0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83])
def test_taproot_key_path_every_hash_type(hash_type: int) -> None:
    spent = [TxOut(60_000, p2tr_script(taproot_output_key(SECRET))), TxOut(7, b"\x51")]
    tx = _tx()
    signed = _with_input(tx, 0, witness=sign_taproot_key_path(PrecomputedTx(tx, spent), 0, SECRET, hash_type))
    assert _code(ScriptFlags.STANDARD, signed, spent) == "OK"
    if not hash_type & 0x80:  # without ANYONECANPAY every spent amount is signed
        other = [spent[0], TxOut(8, b"\x51")]
        assert _code(ScriptFlags.MANDATORY, signed, other) == "SCHNORR_SIG"
    annexed = _with_input(signed, 0, witness=(*signed.inputs[0].witness, b"\x50"))  # the annex is signed too
    assert _code(ScriptFlags.MANDATORY, annexed, spent) == "SCHNORR_SIG"


def test_taproot_rules_need_the_taproot_flag() -> None:
    spent = [TxOut(60_000, p2tr_script(taproot_output_key(SECRET))), TxOut(7, b"\x51")]
    bogus = _with_input(_tx(), 0, witness=(bytes(64),))
    assert _code(ScriptFlags.MANDATORY, bogus, spent) == "SCHNORR_SIG"
    assert _code(ScriptFlags.MANDATORY & ~ScriptFlags.TAPROOT, bogus, spent) == "OK"


def test_errors_and_inputs_pickle_for_worker_processes() -> None:
    spent = [TxOut(50_000, p2wpkh_script(PUBKEY)), TxOut(7, b"\x51")]
    tx = _tx()
    pre = PrecomputedTx(tx, spent)
    assert pre.hash_outputs  # a filled cache is dropped on pickling and rebuilt where needed
    tx2, spent2, pre2, flags2 = pickle.loads(pickle.dumps((tx, spent, pre, ScriptFlags.STANDARD)))
    assert tx2 == tx and spent2 == spent and flags2 is ScriptFlags.STANDARD
    assert pre2.hash_outputs == pre.hash_outputs
    err = pickle.loads(pickle.dumps(ScriptError("SIG_DER", "bad")))
    assert err.code == "SIG_DER" and str(err) == "SIG_DER: bad"
    err = pickle.loads(pickle.dumps(ScriptError("EVAL_FALSE")))
    assert err.code == "EVAL_FALSE" and str(err) == "EVAL_FALSE"


_TOKENS = st.one_of(
    st.integers(0, 0xFF).map(lambda op: bytes((op,))),
    st.binary(max_size=80).map(push_data),
    st.sampled_from([b"\x4c\x10", b"\x4d\xff\xff", b"\x4e\x01\x00\x00\x00", push_data(bytes(521))]),
    st.sampled_from([bytes((opcodes.OP_IF,)), bytes((opcodes.OP_ELSE,)), bytes((opcodes.OP_ENDIF,)),
                     bytes((opcodes.OP_CHECKMULTISIG,)), bytes((opcodes.OP_CHECKSIG,)), bytes((opcodes.OP_PICK,)),
                     bytes((opcodes.OP_ROLL,)), bytes((opcodes.OP_CODESEPARATOR,))]),
)
_SCRIPTS = st.lists(_TOKENS, max_size=40).map(b"".join)
_FLAGS = st.integers(0, int(ScriptFlags.STANDARD | ScriptFlags.SIGPUSHONLY)).map(
    lambda f: ScriptFlags(f | ScriptFlags.P2SH | ScriptFlags.WITNESS if f & ScriptFlags.CLEANSTACK else f)
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script_sig=_SCRIPTS,
    script=_SCRIPTS,
    witness=st.lists(st.binary(max_size=70), max_size=5),
    kind=st.sampled_from(["bare", "p2sh", "p2wsh", "p2tr"]),
    flags=_FLAGS,
)
def test_no_script_crashes_the_interpreter(script_sig, script, witness, kind, flags) -> None:
    witness = tuple(witness)
    if kind == "bare":
        script_pubkey = script
    elif kind == "p2sh":
        script_pubkey = b"\xa9\x14" + hash160(script) + b"\x87"
        script_sig += push_data(script[:520])
    elif kind == "p2wsh":
        script_pubkey = b"\x00\x20" + hashlib.sha256(script).digest()
        witness = (*witness, script)
    else:
        script_pubkey = p2tr_script(hashlib.sha256(script).digest())
        witness = (*witness, script, b"\xc0" + bytes(32))
    spent = [TxOut(1000, script_pubkey)]
    tx = Transaction(2, (TxIn(OutPoint(bytes(31) + b"\x01", 0), script_sig, 5, witness),), (TxOut(1, b""),), 9)
    try:
        verify_input(tx, 0, spent, flags)
    except ScriptError as exc:
        assert exc.code.isupper()


def _generic_p2wpkh(tx: Transaction, spent: list[TxOut], flags: ScriptFlags) -> str:
    """The P2WPKH spend run through the generic interpreter, as Core runs it (the reference for the fast path)."""
    sig, pubkey = tx.inputs[0].witness
    program = spent[0].script_pubkey[2:]
    stack = [sig, pubkey]
    try:
        if max(len(sig), len(pubkey)) > 520:
            raise ScriptError("PUSH_SIZE")
        checker = TxChecker(PrecomputedTx(tx, spent), 0)
        eval_script(stack, b"\x76\xa9\x14" + program + b"\x88\xac", int(flags), checker, 1, ExecData())
        if len(stack) != 1:
            raise ScriptError("CLEANSTACK")
        if not stack[-1] or stack[-1] == b"\x80":
            raise ScriptError("EVAL_FALSE")
    except ScriptError as exc:
        return exc.code
    return "OK"


_SIG_VARIANTS = st.sampled_from(["valid", "high_s", "hashtype", "empty", "junk", "short"])
_KEY_VARIANTS = st.sampled_from(["right", "uncompressed", "other", "junk"])


@settings(max_examples=80, deadline=None)
@given(sig_kind=_SIG_VARIANTS, key_kind=_KEY_VARIANTS, flags=_FLAGS, junk=st.binary(max_size=75))
def test_p2wpkh_fast_path_matches_the_generic_interpreter(sig_kind, key_kind, flags, junk) -> None:
    spent = [TxOut(50_000, p2wpkh_script(PUBKEY)), TxOut(7, b"\x51")]
    tx = _tx()
    sig, pubkey = sign_p2wpkh(PrecomputedTx(tx, spent), 0, SECRET)
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    if sig_kind == "high_s":
        r_len = sig[3]
        s = order - int.from_bytes(sig[6 + r_len : -1], "big")
        s_bytes = s.to_bytes(33, "big").lstrip(b"\x00")
        s_bytes = b"\x00" + s_bytes if s_bytes[0] & 0x80 else s_bytes
        body = sig[2 : 4 + r_len] + bytes((2, len(s_bytes))) + s_bytes
        sig = bytes((0x30, len(body))) + body + b"\x01"
    elif sig_kind == "hashtype":
        sig = sig[:-1] + b"\x05"
    elif sig_kind == "empty":
        sig = b""
    elif sig_kind == "junk":
        sig = junk
    elif sig_kind == "short":
        sig = sig[:-3] + sig[-1:]
    if key_kind == "uncompressed":
        pubkey = PrivateKey(SECRET).public_key.format(compressed=False)
        spent = [TxOut(50_000, b"\x00\x14" + hash160(pubkey)), spent[1]]
    elif key_kind == "other":
        pubkey = PrivateKey(hashlib.sha256(b"x").digest()).public_key.format()
    elif key_kind == "junk":
        pubkey = junk
        spent = [TxOut(50_000, b"\x00\x14" + hash160(pubkey)), spent[1]]
    signed = _with_input(tx, 0, witness=(sig, pubkey))
    flags |= ScriptFlags.P2SH | ScriptFlags.WITNESS
    assert _code(flags, signed, spent) == _generic_p2wpkh(signed, spent, flags)


@pytest.mark.parametrize(
    ("script", "flags", "expected"),
    [
        ("1 NOP2", ScriptFlags.DISCOURAGE_UPGRADABLE_NOPS, "OK"),  # CLTV off: a NOP Core does not discourage
        ("1 NOP3", ScriptFlags.DISCOURAGE_UPGRADABLE_NOPS, "OK"),
        ("1 NOP4", ScriptFlags.DISCOURAGE_UPGRADABLE_NOPS, "DISCOURAGE_UPGRADABLE_NOPS"),
        ("1 NOP4", ScriptFlags.NONE, "OK"),
        ("0 CHECKLOCKTIMEVERIFY", ScriptFlags.CHECKLOCKTIMEVERIFY, "UNSATISFIED_LOCKTIME"),  # input is final
        ("-1 CHECKSEQUENCEVERIFY", ScriptFlags.CHECKSEQUENCEVERIFY, "NEGATIVE_LOCKTIME"),
        ("0x05 0x0000008000 CHECKSEQUENCEVERIFY", ScriptFlags.CHECKSEQUENCEVERIFY, "OK"),  # disable bit: a NOP
    ],
)
def test_lock_time_opcodes_and_upgradable_nops(script: str, flags: ScriptFlags, expected: str) -> None:
    credit = crediting_tx(parse_asm(script), 0)
    assert _code(flags, spending_tx(b"", (), credit), [credit.outputs[0]]) == expected
