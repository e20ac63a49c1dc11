"""atheris fuzz target for peerloom's Bitcoin script layer: script execution under any flags (legacy, P2SH,
segwit v0 and taproot spends built around the input), the operation walker and its rewrites (FindAndDelete,
code separator removal), the signature-encoding checks and lax DER parser, and legacy signature hashing.

Run: `python tests/fuzz/fuzz_btc_script.py [corpus dir] [-max_total_time=N]`. The first input byte picks the
target, the rest is its input. Verification may raise only `ScriptError`; the walkers must re-join what they
split; a strictly DER-encoded signature must also parse laxly.
"""

from __future__ import annotations

import hashlib

import harness

from peerloom.apps.btc import opcodes, secp
from peerloom.apps.btc.interpreter import find_and_delete
from peerloom.apps.btc.script import ScriptError, ScriptFlags, verify_input
from peerloom.apps.btc.serialize import BtcError
from peerloom.apps.btc.sighash import legacy_sighash, remove_codeseparators
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut, parse_transaction

_GENERATOR = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
_ALL_FLAGS = int(ScriptFlags.STANDARD | ScriptFlags.SIGPUSHONLY)


def _chunks(data: bytes, count: int) -> list[bytes]:
    """`count` byte strings cut from `data`, each prefixed by a one-byte length (what is left goes last)."""
    out = []
    pos = 0
    for _ in range(count - 1):
        n = data[pos] if pos < len(data) else 0
        out.append(data[pos + 1 : pos + 1 + n])
        pos += 1 + n
    out.append(data[pos:])
    return out


def _spend(script_sig: bytes, script_pubkey: bytes, witness: tuple[bytes, ...], flags: int, version: int) -> None:
    credit = Transaction(1, (TxIn(OutPoint(bytes(32), 0xFFFFFFFF), b"\x00\x00", 0xFFFFFFFF),),
                         (TxOut(1000, script_pubkey),), 0)
    spend = Transaction(version, (TxIn(OutPoint(credit.txid, 0), script_sig, 0xFFFF, witness),),
                        (TxOut(1000, b""),), 500)
    verify_input(spend, 0, [credit.outputs[0]], flags)


def _flags(data: bytes) -> int:
    """Flags from 3 bytes, made a combination Core accepts (WITNESS needs P2SH, CLEANSTACK needs WITNESS)."""
    flags = int.from_bytes(data[:3].ljust(3, b"\x00"), "little") & _ALL_FLAGS
    if flags & ScriptFlags.CLEANSTACK:
        flags |= ScriptFlags.WITNESS
    if flags & ScriptFlags.WITNESS:
        flags |= ScriptFlags.P2SH
    return flags


def _execute(data: bytes) -> None:
    """A scriptSig and scriptPubKey from the input, spent directly, as P2SH and as P2WSH."""
    if len(data) < 4:
        return
    flags = _flags(data[:3])
    kind = data[3] % 3
    script_sig, script_pubkey = _chunks(data[4:], 2)
    if kind == 0:
        _spend(script_sig, script_pubkey, (), flags, 2)
    elif kind == 1:
        p2sh = b"\xa9\x14" + hashlib.new("ripemd160", hashlib.sha256(script_pubkey).digest()).digest() + b"\x87"
        _spend(script_sig + opcodes.push_data(script_pubkey[:520]), p2sh, (), flags, 2)
    else:
        witness = (*_chunks(script_sig, 3), script_pubkey)
        _spend(b"", b"\x00\x20" + hashlib.sha256(script_pubkey).digest(), witness, flags, 2)


def _taproot(data: bytes) -> None:
    """A witness of up to 6 items against a v1 program (key path, script path, annex, control block)."""
    if len(data) < 36:
        return
    flags = _flags(data[:3]) | ScriptFlags.TAPROOT | ScriptFlags.WITNESS | ScriptFlags.P2SH
    program = data[3:35]
    witness = tuple(_chunks(data[36:], data[35] % 6 + 1))
    _spend(b"", b"\x51\x20" + program, witness, flags, 2)


def _walk(data: bytes) -> None:
    ops = list(opcodes.iter_ops(data))
    end = ops[-1][2] if ops else 0
    assert end <= len(data)
    stripped = remove_codeseparators(data)
    assert len(stripped) <= len(data)
    needle, script = _chunks(data, 2)
    deleted, found = find_and_delete(script, needle)
    assert len(deleted) == len(script) - found * len(needle)
    assert opcodes.is_push_only(data) == all(op <= opcodes.OP_16 for op, _, _ in ops) or end < len(data)


def _signature(data: bytes) -> None:
    if secp.is_valid_der_encoding(data):
        assert secp.parse_der_lax(data[:-1]) is not None
        secp.is_low_s(data)
    secp.ecdsa_verify(data, bytes(32), _GENERATOR)
    secp.schnorr_verify(data[:64].ljust(64, b"\x00"), bytes(32), data[-32:].rjust(32, b"\x00"))


def _sighash(data: bytes) -> None:
    if len(data) < 5:
        return
    hash_type = int.from_bytes(data[:4], "little", signed=True)
    script, raw = _chunks(data[4:], 2)
    tx = parse_transaction(raw)
    digest = legacy_sighash(script, tx, data[4] % (len(tx.inputs) + 1), hash_type)
    assert len(digest) == 32


TestOneInput = harness.Pick(
    (_execute, ScriptError), (_taproot, ScriptError), (_walk, ()), (_signature, ()), (_sighash, BtcError)
)


def seeds() -> list[bytes]:
    """Valid inputs for every target, to start a corpus from."""
    p2pkh_like = bytes.fromhex("76a914") + bytes(20) + bytes.fromhex("88ac")
    sig = bytes.fromhex(
        "3044022079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
        "02200b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829" + "01"
    )
    tx = Transaction(1, (TxIn(OutPoint(bytes(32), 0), b"", 0xFFFFFFFF),), (TxOut(1, b"\x51"),), 0).serialize()
    return [
        b"\x00" + b"\x01\x0a\x00\x00" + bytes([len(sig) + 1]) + opcodes.push_data(sig) + p2pkh_like,
        b"\x00" + b"\x01\x00\x00\x01" + b"\x00" + b"\x51\x63\x51\x67\x00\x68",
        b"\x00" + b"\x01\x08\x00\x02" + b"\x00" + b"\x51",
        b"\x01" + b"\x00\x00\x00" + bytes(32) + b"\x01" + b"\x40" + bytes(64),
        b"\x01" + b"\x00\x00\x00" + bytes(32) + b"\x02" + b"\x01\x51" + b"\x21\xc0" + bytes(32),
        b"\x02" + b"\x02" + b"\xab\x51" + b"\x51\xab\x02\xab\x51\x4c\x05",
        b"\x03" + sig,
        b"\x04" + b"\x03\x00\x00\x00" + b"\x02\xab\x51" + tx,
    ]


if __name__ == "__main__":
    harness.main(TestOneInput)
