"""Signature hashes and Schnorr against published vectors: Core's sighash.json (legacy algorithm, incl.
OP_CODESEPARATOR removal and the SIGHASH_SINGLE bug), BIP 341's wallet vectors (intermediate hashes, the
signature message hash, tweaked keys, and the signed key-path spends verified by `verify_input`) and BIP 340's
verification vectors run through libsecp256k1."""

from __future__ import annotations

import csv
import dataclasses

import pytest
from support.btc_vectors import DATA, load

from peerloom.apps.btc.script import PrecomputedTx, ScriptError, ScriptFlags, tapleaf_hash, verify_input
from peerloom.apps.btc.secp import schnorr_verify, taproot_tweak
from peerloom.apps.btc.serialize import hash_from_hex
from peerloom.apps.btc.sighash import legacy_sighash, taproot_sighash
from peerloom.apps.btc.tx import TxOut, parse_transaction

BIP341 = load("bip341_wallet_vectors.json")


def test_sighash_json() -> None:
    cases = [t for t in load("sighash.json") if len(t) == 5]
    wrong = []
    for raw, script, index, hash_type, expected in cases:
        tx = parse_transaction(bytes.fromhex(raw))
        if legacy_sighash(bytes.fromhex(script), tx, index, hash_type) != hash_from_hex(expected):
            wrong.append(expected)
    assert len(cases) == 500
    assert not wrong


def _spend_case(case: dict) -> tuple:
    tx = parse_transaction(bytes.fromhex(case["given"]["rawUnsignedTx"]))
    spent = [TxOut(u["amountSats"], bytes.fromhex(u["scriptPubKey"])) for u in case["given"]["utxosSpent"]]
    return tx, spent


@pytest.mark.parametrize("case", BIP341["keyPathSpending"])
def test_bip341_key_path_sighashes_and_spends(case: dict) -> None:
    tx, spent = _spend_case(case)
    pre = PrecomputedTx(tx, spent)
    hashes = case["intermediary"]
    assert pre.sha_amounts.hex() == hashes["hashAmounts"]
    assert pre.sha_outputs.hex() == hashes["hashOutputs"]
    assert pre.sha_prevouts.hex() == hashes["hashPrevouts"]
    assert pre.sha_scriptpubkeys.hex() == hashes["hashScriptPubkeys"]
    assert pre.sha_sequences.hex() == hashes["hashSequences"]
    inputs = list(tx.inputs)
    for spend in case["inputSpending"]:
        given, inter = spend["given"], spend["intermediary"]
        index = given["txinIndex"]
        assert taproot_sighash(pre, index, given["hashType"]).hex() == inter["sigHash"]
        root = bytes.fromhex(given["merkleRoot"]) if given["merkleRoot"] else b""
        output_key, _ = taproot_tweak(bytes.fromhex(inter["internalPubkey"]), root)
        assert spent[index].script_pubkey == b"\x51\x20" + output_key
        witness = tuple(bytes.fromhex(w) for w in spend["expected"]["witness"])
        inputs[index] = dataclasses.replace(inputs[index], witness=witness)
    signed = dataclasses.replace(tx, inputs=tuple(inputs))
    signed_pre = PrecomputedTx(signed, spent)
    for spend in case["inputSpending"]:
        index = spend["given"]["txinIndex"]
        verify_input(signed, index, spent, ScriptFlags.STANDARD, signed_pre)
        # One flipped bit in the signature must fail the spend.
        sig = bytearray(signed.inputs[index].witness[0])
        sig[5] ^= 1
        bad_inputs = list(signed.inputs)
        bad_inputs[index] = dataclasses.replace(bad_inputs[index], witness=(bytes(sig),))
        bad = dataclasses.replace(signed, inputs=tuple(bad_inputs))
        with pytest.raises(ScriptError) as err:
            verify_input(bad, index, spent, ScriptFlags.MANDATORY)
        assert err.value.code == "SCHNORR_SIG"


def _leaves(tree) -> list[dict]:
    if tree is None:
        return []
    if isinstance(tree, dict):
        return [tree]
    return [leaf for branch in tree for leaf in _leaves(branch)]


@pytest.mark.parametrize("case", BIP341["scriptPubKey"])
def test_bip341_output_keys_and_leaf_hashes(case: dict) -> None:
    given, inter = case["given"], case["intermediary"]
    leaves = _leaves(given["scriptTree"])
    got = [tapleaf_hash(leaf["leafVersion"], bytes.fromhex(leaf["script"])).hex() for leaf in leaves]
    assert got == inter.get("leafHashes", [])
    root = bytes.fromhex(inter["merkleRoot"]) if inter["merkleRoot"] else b""
    output_key, parity = taproot_tweak(bytes.fromhex(given["internalPubkey"]), root)
    assert output_key.hex() == inter["tweakedPubkey"]
    assert case["expected"]["scriptPubKey"] == "5120" + output_key.hex()
    for control in case["expected"].get("scriptPathControlBlocks", []):
        assert int(control[:2], 16) & 1 == parity


def test_bip340_verification_vectors() -> None:
    with open(DATA / "bip340_vectors.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        ok = schnorr_verify(
            bytes.fromhex(row["signature"]), bytes.fromhex(row["message"]), bytes.fromhex(row["public key"])
        )
        assert ok == (row["verification result"] == "TRUE"), row["index"]
    assert len(rows) >= 15
