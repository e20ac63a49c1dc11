"""The transaction side of script verification (Core's GenericTransactionSignatureChecker): the signature
checks OP_CHECKSIG and friends make against one input of one transaction, and the lock-time and sequence
checks of OP_CHECKLOCKTIMEVERIFY (BIP 65) and OP_CHECKSEQUENCEVERIFY (BIP 112)."""

from __future__ import annotations

from dataclasses import dataclass

from .script_flags import ScriptError
from .secp import ecdsa_verify, schnorr_verify
from .sighash import PrecomputedTx, legacy_sighash, segwit_v0_sighash, taproot_sighash

SIGVERSION_BASE = 0
SIGVERSION_WITNESS_V0 = 1
SIGVERSION_TAPROOT = 2
SIGVERSION_TAPSCRIPT = 3

LOCKTIME_THRESHOLD = 500_000_000
SEQUENCE_FINAL = 0xFFFFFFFF
SEQUENCE_LOCKTIME_DISABLE_FLAG = 1 << 31
SEQUENCE_LOCKTIME_TYPE_FLAG = 1 << 22
SEQUENCE_LOCKTIME_MASK = 0x0000FFFF


@dataclass
class ExecData:
    """Per-input taproot execution state (Core's ScriptExecutionData)."""

    annex_hash: bytes | None = None
    tapleaf_hash: bytes | None = None
    codeseparator_pos: int = 0xFFFFFFFF
    validation_weight_left: int = 0


class TxChecker:
    """Checks signatures, lock times and sequences for input `index` of `pre.tx`, which spends `amount`."""

    __slots__ = ("amount", "index", "pre", "tx")

    def __init__(self, pre: PrecomputedTx, index: int) -> None:
        self.pre = pre
        self.tx = pre.tx
        self.index = index
        self.amount = pre.spent_outputs[index].value

    def check_ecdsa(self, sig: bytes, pubkey: bytes, script_code: bytes, sigversion: int) -> bool:
        """Whether `sig` (DER + hash-type byte) signs this input with `pubkey` under `script_code`."""
        if not sig:
            return False
        hash_type = sig[-1]
        if sigversion == SIGVERSION_WITNESS_V0:
            digest = segwit_v0_sighash(script_code, self.pre, self.index, self.amount, hash_type)
        else:
            digest = legacy_sighash(script_code, self.tx, self.index, hash_type)
        return ecdsa_verify(sig[:-1], digest, pubkey)

    def check_schnorr(self, sig: bytes, pubkey: bytes, sigversion: int, execdata: ExecData) -> None:
        """BIP 340/341/342 signature check; raises the ScriptError Core reports (a failed Schnorr signature
        always fails the script: no NULLFAIL dance)."""
        if len(sig) == 64:
            hash_type = 0
        elif len(sig) == 65:
            hash_type = sig[64]
            if hash_type == 0:
                raise ScriptError("SCHNORR_SIG_HASHTYPE", "explicit SIGHASH_DEFAULT")
            sig = sig[:64]
        else:
            raise ScriptError("SCHNORR_SIG_SIZE", f"{len(sig)}-byte Schnorr signature")
        if sigversion == SIGVERSION_TAPSCRIPT:
            digest = taproot_sighash(
                self.pre, self.index, hash_type, execdata.annex_hash, execdata.tapleaf_hash,
                execdata.codeseparator_pos,
            )
        else:
            digest = taproot_sighash(self.pre, self.index, hash_type, execdata.annex_hash)
        if digest is None:
            raise ScriptError("SCHNORR_SIG_HASHTYPE", f"hash type {hash_type:#x}")
        if not schnorr_verify(sig, digest, pubkey):
            raise ScriptError("SCHNORR_SIG", "invalid Schnorr signature")

    def check_locktime(self, locktime: int) -> bool:
        tx_locktime = self.tx.locktime
        if (tx_locktime < LOCKTIME_THRESHOLD) != (locktime < LOCKTIME_THRESHOLD):
            return False  # a height against a time, or the reverse
        if locktime > tx_locktime:
            return False
        # A final sequence would let the spender bypass the lock time (nLockTime is then not enforced).
        return self.tx.inputs[self.index].sequence != SEQUENCE_FINAL

    def check_sequence(self, sequence: int) -> bool:
        tx_sequence = self.tx.inputs[self.index].sequence
        if self.tx.version & 0xFFFFFFFF < 2:
            return False  # BIP 68 sequence locks apply from version 2
        if tx_sequence & SEQUENCE_LOCKTIME_DISABLE_FLAG:
            return False
        mask = SEQUENCE_LOCKTIME_TYPE_FLAG | SEQUENCE_LOCKTIME_MASK
        tx_masked = tx_sequence & mask
        masked = sequence & mask
        if (tx_masked < SEQUENCE_LOCKTIME_TYPE_FLAG) != (masked < SEQUENCE_LOCKTIME_TYPE_FLAG):
            return False
        return masked <= tx_masked
