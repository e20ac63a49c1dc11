"""Signature hashes: the original (legacy) algorithm with its quirks, BIP 143 (segwit v0) and BIP 341
(taproot, with BIP 342's tapscript extension), and `PrecomputedTx`, the per-transaction hashes they share.

Legacy hashing keeps Core's behaviour bit for bit: OP_CODESEPARATORs are removed from the script code, an
input index past the outputs under SIGHASH_SINGLE signs the number 1 (the "SIGHASH_SINGLE bug"), and the
hash type is the signature's last byte serialized as a signed 32-bit integer.
"""

from __future__ import annotations

import hashlib

from .opcodes import OP_CODESEPARATOR, get_op
from .script_flags import ScriptError
from .secp import tagged_hash_prefix
from .serialize import compact_size, sha256d, var_bytes
from .tx import Transaction, TxOut

SIGHASH_ALL = 1
SIGHASH_NONE = 2
SIGHASH_SINGLE = 3
SIGHASH_ANYONECANPAY = 0x80
SIGHASH_DEFAULT = 0  # taproot only: ALL, with a 64-byte signature
ONE = (1).to_bytes(32, "little")  # what a SIGHASH_SINGLE signature without a matching output signs

_TAP_SIGHASH = tagged_hash_prefix("TapSighash")


class _lazy:
    """A value computed on first access and then stored on the instance (which shadows this non-data
    descriptor). functools.cached_property does the same but takes a lock on every first access in Python
    3.11, which cost more than the hashes here."""

    def __init__(self, compute) -> None:
        self.compute = compute
        self.name = compute.__name__

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.compute(obj)
        return value


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _outpoint(txin) -> bytes:
    return txin.prevout.txid + txin.prevout.index.to_bytes(4, "little")


def serialize_output(out: TxOut) -> bytes:
    return out.value.to_bytes(8, "little", signed=True) + var_bytes(out.script_pubkey)


class PrecomputedTx:
    """Hashes over a whole transaction that every input's signature hash reuses (Core's
    PrecomputedTransactionData): the single-SHA-256 forms BIP 341 uses, and BIP 143's double forms built on
    them. Each is computed on first use, so a legacy-only transaction pays for none of them."""

    def __init__(self, tx: Transaction, spent_outputs: list[TxOut] | tuple[TxOut, ...]) -> None:
        if len(spent_outputs) != len(tx.inputs):
            raise ValueError(f"{len(spent_outputs)} spent outputs for {len(tx.inputs)} inputs")
        self.tx = tx
        self.spent_outputs = tuple(spent_outputs)

    @_lazy
    def sha_prevouts(self) -> bytes:
        return _sha256(b"".join(_outpoint(txin) for txin in self.tx.inputs))

    @_lazy
    def sha_sequences(self) -> bytes:
        return _sha256(b"".join(txin.sequence.to_bytes(4, "little") for txin in self.tx.inputs))

    @_lazy
    def sha_outputs(self) -> bytes:
        return _sha256(b"".join(serialize_output(out) for out in self.tx.outputs))

    @_lazy
    def sha_amounts(self) -> bytes:
        return _sha256(b"".join(out.value.to_bytes(8, "little", signed=True) for out in self.spent_outputs))

    @_lazy
    def sha_scriptpubkeys(self) -> bytes:
        return _sha256(b"".join(var_bytes(out.script_pubkey) for out in self.spent_outputs))

    @_lazy
    def hash_prevouts(self) -> bytes:
        return _sha256(self.sha_prevouts)

    @_lazy
    def hash_sequence(self) -> bytes:
        return _sha256(self.sha_sequences)

    @_lazy
    def hash_outputs(self) -> bytes:
        return _sha256(self.sha_outputs)

    def __getstate__(self) -> dict:
        return {"tx": self.tx, "spent_outputs": self.spent_outputs}  # caches are rebuilt where needed

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def remove_codeseparators(script: bytes) -> bytes:
    """The script without its OP_CODESEPARATOR operations (at operation boundaries, up to a truncated push)."""
    if OP_CODESEPARATOR not in script:
        return script
    out = []
    start = pc = 0
    n = len(script)
    try:
        while pc < n:
            opcode, _, nxt = get_op(script, pc)
            if opcode == OP_CODESEPARATOR:
                out.append(script[start:pc])
                start = nxt
            pc = nxt
    except ScriptError:
        pass
    out.append(script[start:])
    return b"".join(out)


def legacy_sighash(script_code: bytes, tx: Transaction, index: int, hash_type: int) -> bytes:
    """The original signature hash (Core's SignatureHash for SigVersion::BASE); `hash_type` is the int32
    stored in the preimage (the signature's last byte in script)."""
    if index >= len(tx.inputs):
        return ONE
    base = hash_type & 0x1F
    if base == SIGHASH_SINGLE and index >= len(tx.outputs):
        return ONE
    anyone = hash_type & SIGHASH_ANYONECANPAY
    zero_sequences = base in (SIGHASH_SINGLE, SIGHASH_NONE)
    code = var_bytes(remove_codeseparators(script_code))
    parts = [tx.version.to_bytes(4, "little", signed=True)]
    chosen = [index] if anyone else range(len(tx.inputs))
    parts.append(compact_size(len(chosen)))
    for i in chosen:
        txin = tx.inputs[i]
        parts.append(_outpoint(txin))
        if i == index:
            parts += (code, txin.sequence.to_bytes(4, "little"))
        else:
            parts += (b"\x00", b"\x00\x00\x00\x00" if zero_sequences else txin.sequence.to_bytes(4, "little"))
    if base == SIGHASH_NONE:
        parts.append(b"\x00")
    elif base == SIGHASH_SINGLE:
        parts.append(compact_size(index + 1))
        parts += [b"\xff" * 8 + b"\x00"] * index  # CTxOut(): value -1, empty script
        parts.append(serialize_output(tx.outputs[index]))
    else:
        parts.append(compact_size(len(tx.outputs)))
        parts += (serialize_output(out) for out in tx.outputs)
    parts.append(tx.locktime.to_bytes(4, "little"))
    parts.append((hash_type & 0xFFFFFFFF).to_bytes(4, "little"))
    return sha256d(b"".join(parts))


def segwit_v0_sighash(
    script_code: bytes, pre: PrecomputedTx, index: int, amount: int, hash_type: int
) -> bytes:
    """BIP 143's signature hash for witness v0 programs."""
    tx = pre.tx
    base = hash_type & 0x1F
    anyone = hash_type & SIGHASH_ANYONECANPAY
    zero = bytes(32)
    hash_prevouts = zero if anyone else pre.hash_prevouts
    hash_sequence = zero if anyone or base in (SIGHASH_SINGLE, SIGHASH_NONE) else pre.hash_sequence
    if base not in (SIGHASH_SINGLE, SIGHASH_NONE):
        hash_outputs = pre.hash_outputs
    elif base == SIGHASH_SINGLE and index < len(tx.outputs):
        hash_outputs = sha256d(serialize_output(tx.outputs[index]))
    else:
        hash_outputs = zero
    txin = tx.inputs[index]
    preimage = b"".join((
        tx.version.to_bytes(4, "little", signed=True), hash_prevouts, hash_sequence, _outpoint(txin),
        var_bytes(script_code), amount.to_bytes(8, "little", signed=True), txin.sequence.to_bytes(4, "little"),
        hash_outputs, tx.locktime.to_bytes(4, "little"), (hash_type & 0xFFFFFFFF).to_bytes(4, "little"),
    ))
    return sha256d(preimage)


def taproot_sighash(
    pre: PrecomputedTx,
    index: int,
    hash_type: int,
    annex_hash: bytes | None = None,
    tapleaf_hash: bytes | None = None,
    codeseparator_pos: int = 0xFFFFFFFF,
) -> bytes | None:
    """BIP 341's signature message hashed with the TapSighash tag; a tapscript spend (BIP 342) passes its
    leaf hash and the position of the last executed OP_CODESEPARATOR. None for an undefined hash type, or
    SIGHASH_SINGLE without a matching output."""
    if not (hash_type <= 3 or 0x81 <= hash_type <= 0x83):
        return None
    tx = pre.tx
    output_type = SIGHASH_ALL if hash_type == SIGHASH_DEFAULT else hash_type & 3
    anyone = hash_type & SIGHASH_ANYONECANPAY
    parts = [
        b"\x00", bytes((hash_type,)), tx.version.to_bytes(4, "little", signed=True),
        tx.locktime.to_bytes(4, "little"),
    ]
    if not anyone:
        parts += (pre.sha_prevouts, pre.sha_amounts, pre.sha_scriptpubkeys, pre.sha_sequences)
    if output_type == SIGHASH_ALL:
        parts.append(pre.sha_outputs)
    ext_flag = 0 if tapleaf_hash is None else 1
    parts.append(bytes(((ext_flag << 1) | (annex_hash is not None),)))
    if anyone:
        txin = tx.inputs[index]
        parts += (_outpoint(txin), serialize_output(pre.spent_outputs[index]), txin.sequence.to_bytes(4, "little"))
    else:
        parts.append(index.to_bytes(4, "little"))
    if annex_hash is not None:
        parts.append(annex_hash)
    if output_type == SIGHASH_SINGLE:
        if index >= len(tx.outputs):
            return None
        parts.append(_sha256(serialize_output(tx.outputs[index])))
    if tapleaf_hash is not None:
        parts += (tapleaf_hash, b"\x00", codeseparator_pos.to_bytes(4, "little"))
    h = _TAP_SIGHASH.copy()
    h.update(b"".join(parts))
    return h.digest()
