"""Signature verifications per second inside script validation against raw libsecp256k1 verification through
`coincurve`, measured in the same run.

    PYTHONPATH=src python bench/btc_script_bench.py [--count 2000] [--rounds 3]

Builds `count` signed one-input transactions of each kind — P2WPKH (ECDSA, BIP 143) and P2TR key path
(Schnorr, BIP 341) — then times `verify_input` on each (with a fresh `PrecomputedTx` per transaction, as block
validation makes one) and, as the reference, `coincurve.PublicKey.verify` / `PublicKeyXOnly.verify` on the same
signatures and digests. The best of `rounds` is kept for each. Prints one JSON line: rates per second and
`*_over_raw` (validation rate / raw rate: 1.0 would mean the interpreter costs nothing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

from coincurve import PrivateKey, PublicKey, PublicKeyXOnly

from peerloom.apps.btc import signing
from peerloom.apps.btc.script import PrecomputedTx, ScriptFlags, verify_input
from peerloom.apps.btc.sighash import segwit_v0_sighash, taproot_sighash
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut


def _spends(count: int, kind: str) -> list[tuple[Transaction, list[TxOut], tuple, bytes, bytes]]:
    """(signed tx, spent outputs, raw reference args: signature, digest, key) per transaction."""
    out = []
    for i in range(count):
        secret = hashlib.sha256(b"bench %d" % i).digest()
        pubkey = PrivateKey(secret).public_key.format(compressed=True)
        if kind == "p2wpkh":
            script = signing.p2wpkh_script(pubkey)
        else:
            script = signing.p2tr_script(signing.taproot_output_key(secret))
        spent = [TxOut(100_000 + i, script)]
        tx = Transaction(2, (TxIn(OutPoint(hashlib.sha256(b"%d" % i).digest(), 0), b"", 0xFFFFFFFD),),
                         (TxOut(90_000, signing.p2wpkh_script(pubkey)),), 0)
        pre = PrecomputedTx(tx, spent)
        if kind == "p2wpkh":
            witness = signing.sign_p2wpkh(pre, 0, secret)
            code = b"\x76\xa9\x14" + signing.hash160(pubkey) + b"\x88\xac"
            raw = (witness[0][:-1], segwit_v0_sighash(code, pre, 0, spent[0].value, 1), pubkey)
        else:
            witness = signing.sign_taproot_key_path(pre, 0, secret)
            raw = (witness[0], taproot_sighash(pre, 0, 0), script[2:])
        signed = Transaction(2, (TxIn(tx.inputs[0].prevout, b"", 0xFFFFFFFD, witness),), tx.outputs, 0)
        out.append((signed, spent, *raw))
    return out


def _rates(fns, items, rounds: int) -> list[float]:
    """Per-second rates of each of `fns` over `items`, the best of `rounds`; the functions alternate within a
    round so that a change of load on the machine hits them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            for item in items:
                fn(item)
            best[k] = min(best[k], time.perf_counter() - start)
    return [len(items) / seconds for seconds in best]


def _validate(item) -> None:
    tx, spent = item[0], item[1]
    verify_input(tx, 0, spent, ScriptFlags.STANDARD, PrecomputedTx(tx, spent))


def _raw_ecdsa(item) -> None:
    assert PublicKey(item[4]).verify(item[2], item[3], hasher=None)


def _raw_schnorr(item) -> None:
    assert PublicKeyXOnly(item[4]).verify(item[2], item[3])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result: dict[str, float | int] = {"count": args.count}
    for kind, raw in (("p2wpkh", _raw_ecdsa), ("p2tr", _raw_schnorr)):
        items = _spends(args.count, kind)
        validated, reference = _rates((_validate, raw), items, args.rounds)
        result[f"{kind}_verify_input_per_s"] = round(validated)
        result[f"{kind}_raw_coincurve_per_s"] = round(reference)
        result[f"{kind}_over_raw"] = round(validated / reference, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
