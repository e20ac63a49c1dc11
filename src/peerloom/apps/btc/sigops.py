"""Signature-operation counting for the block sigop-cost limit (Core's `GetSigOpCount`, `GetP2SHSigOpCount`,
`CountWitnessSigOps`, `GetTransactionSigOpCost`).

Only the opcodes and pushes are walked (no execution); a truncated push ends the walk, as Core's `GetOp`
failing does. Cost = 4 x (legacy + P2SH sigops) + witness sigops, at most `MAX_BLOCK_SIGOPS_COST` per block.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .tx import Transaction, TxOut

OP_0 = 0x00
OP_PUSHDATA1, OP_PUSHDATA2, OP_PUSHDATA4 = 0x4C, 0x4D, 0x4E
OP_1, OP_16 = 0x51, 0x60
OP_CHECKSIG, OP_CHECKSIGVERIFY = 0xAC, 0xAD
OP_CHECKMULTISIG, OP_CHECKMULTISIGVERIFY = 0xAE, 0xAF
OP_HASH160, OP_EQUAL = 0xA9, 0x87
MAX_PUBKEYS_PER_MULTISIG = 20
WITNESS_SCALE_FACTOR = 4


def script_ops(script: bytes) -> Iterator[tuple[int, bytes | None]]:
    """(opcode, pushed data or None) for each operation, stopping at a push that runs past the end."""
    i, n = 0, len(script)
    while i < n:
        op = script[i]
        i += 1
        if op > OP_PUSHDATA4:
            yield op, None
            continue
        if op < OP_PUSHDATA1:
            size = op
        else:
            width = {OP_PUSHDATA1: 1, OP_PUSHDATA2: 2, OP_PUSHDATA4: 4}[op]
            if i + width > n:
                return
            size = int.from_bytes(script[i : i + width], "little")
            i += width
        if i + size > n:
            return
        yield op, script[i : i + size]
        i += size


def legacy_sigops(script: bytes, accurate: bool) -> int:
    """Core's `CScript::GetSigOpCount(fAccurate)`."""
    count = 0
    last = None
    for op, _ in script_ops(script):
        if op in (OP_CHECKSIG, OP_CHECKSIGVERIFY):
            count += 1
        elif op in (OP_CHECKMULTISIG, OP_CHECKMULTISIGVERIFY):
            count += last - OP_1 + 1 if accurate and last is not None and OP_1 <= last <= OP_16 else (
                MAX_PUBKEYS_PER_MULTISIG)
        last = op
    return count


def is_p2sh(script: bytes) -> bool:
    return len(script) == 23 and script[0] == OP_HASH160 and script[1] == 20 and script[22] == OP_EQUAL


def witness_program(script: bytes) -> tuple[int, bytes] | None:
    """(version, program) of a segwit output script: a version opcode then one 2..40-byte push (BIP 141)."""
    if not 4 <= len(script) <= 42:
        return None
    if script[0] != OP_0 and not OP_1 <= script[0] <= OP_16:
        return None
    if script[1] + 2 != len(script):
        return None
    return (0 if script[0] == OP_0 else script[0] - OP_1 + 1), script[2:]


def _last_push(script_sig: bytes) -> bytes | None:
    """The data of the last push, or None when the script has a non-push opcode (then Core counts 0)."""
    data = None
    for op, pushed in script_ops(script_sig):
        if op > OP_16:
            return None
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
