"""Signature-operation counting for the block sigop-cost limit (Core's `GetSigOpCount`, `GetP2SHSigOpCount`,
`CountWitnessSigOps`, `GetTransactionSigOpCost`).

Only the opcodes and pushes are walked (no execution, opcodes.py's `iter_ops`); a truncated push ends the
walk, as Core's `GetOp` failing does. Cost = 4 x (legacy + P2SH sigops) + witness sigops, at most
`MAX_BLOCK_SIGOPS_COST` per block.
"""

from __future__ import annotations

from collections.abc import Sequence

from .opcodes import (
    OP_1,
    OP_16,
    OP_CHECKMULTISIG,
    OP_CHECKMULTISIGVERIFY,
    OP_CHECKSIG,
    OP_CHECKSIGVERIFY,
    is_p2sh,
    is_push_only,
    iter_ops,
    witness_program,
)
from .tx import Transaction, TxOut

MAX_PUBKEYS_PER_MULTISIG = 20
WITNESS_SCALE_FACTOR = 4


def legacy_sigops(script: bytes, accurate: bool) -> int:
    """Core's `CScript::GetSigOpCount(fAccurate)`."""
    count = 0
    last = None
    for op, _, _ in iter_ops(script):
        if op in (OP_CHECKSIG, OP_CHECKSIGVERIFY):
            count += 1
        elif op in (OP_CHECKMULTISIG, OP_CHECKMULTISIGVERIFY):
            count += last - OP_1 + 1 if accurate and last is not None and OP_1 <= last <= OP_16 else (
                MAX_PUBKEYS_PER_MULTISIG)
        last = op
    return count


def _last_push(script_sig: bytes) -> bytes | None:
    """The data of the last push, or None when the script has a non-push opcode (then Core counts 0)."""
    if not is_push_only(script_sig):
        return None
    data = None
    for _, pushed, _ in iter_ops(script_sig):
        data = pushed if pushed is not None else b""
    return data


def _witness_sigops(version: int, program: bytes, witness: Sequence[bytes]) -> int:
    if version != 0:
        return 0  # taproot counts against a per-input budget inside the interpreter, not here
    if len(program) == 20:
        return 1
    if len(program) == 32 and witness:
        return legacy_sigops(witness[-1], accurate=True)
    return 0


def transaction_sigop_cost(tx: Transaction, spent: Sequence[TxOut] | None) -> int:
    """Core's `GetTransactionSigOpCost` with P2SH and witness counting on (`spent` is None for a coinbase)."""
    legacy = sum(legacy_sigops(i.script_sig, False) for i in tx.inputs)
    legacy += sum(legacy_sigops(o.script_pubkey, False) for o in tx.outputs)
    cost = legacy * WITNESS_SCALE_FACTOR
    if spent is None:
        return cost
    for txin, prev in zip(tx.inputs, spent, strict=True):
        script = prev.script_pubkey
        redeem = None
        if is_p2sh(script):
            redeem = _last_push(txin.script_sig)
            if redeem is not None:
                cost += legacy_sigops(redeem, accurate=True) * WITNESS_SCALE_FACTOR
        program = witness_program(script)
        if program is None and redeem is not None:
            program = witness_program(redeem)
        if program is not None:
            cost += _witness_sigops(program[0], program[1], txin.witness)
    return cost
