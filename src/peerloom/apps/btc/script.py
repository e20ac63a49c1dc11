"""Verifying that a transaction input may spend its output (Bitcoin Core's VerifyScript): the scriptSig and
scriptPubKey, P2SH (BIP 16), witness programs — segwit v0 (BIP 141/143) and taproot key and script paths
(BIP 340/341/342) — and the policy flags around them.

`verify_input(tx, index, spent_outputs, flags, precomputed)` is the entry point: it raises `ScriptError`
(with Core's error name in `.code`) or returns None. It does no I/O and keeps no state, and its arguments and
errors pickle, so block validation can run it in worker processes.
"""

from __future__ import annotations

import hashlib

from .checker import (
    SIGVERSION_BASE,
    SIGVERSION_TAPROOT,
    SIGVERSION_TAPSCRIPT,
    SIGVERSION_WITNESS_V0,
    ExecData,
    TxChecker,
)
from .interpreter import eval_p2wpkh, eval_script
from .opcodes import (
    MAX_SCRIPT_ELEMENT_SIZE,
    MAX_STACK_SIZE,
    OP_SUCCESS,
    cast_to_bool,
    get_op,
    is_p2sh,
    is_push_only,
    push_data,
    witness_program,
)
from .script_flags import ScriptError, ScriptFlags
from .secp import tagged_hash_prefix, taproot_tweak
from .serialize import compact_size, var_bytes
from .sighash import PrecomputedTx
from .tx import Transaction, TxOut

__all__ = ["PrecomputedTx", "ScriptError", "ScriptFlags", "tapleaf_hash", "verify_input", "verify_script"]

ANNEX_TAG = 0x50
TAPROOT_LEAF_MASK = 0xFE
TAPROOT_LEAF_TAPSCRIPT = 0xC0
TAPROOT_CONTROL_BASE_SIZE = 33
TAPROOT_CONTROL_NODE_SIZE = 32
TAPROOT_CONTROL_MAX_NODE_COUNT = 128
VALIDATION_WEIGHT_OFFSET = 50

_F_P2SH = int(ScriptFlags.P2SH)
_F_SIGPUSHONLY = int(ScriptFlags.SIGPUSHONLY)
_F_WITNESS = int(ScriptFlags.WITNESS)
_F_CLEANSTACK = int(ScriptFlags.CLEANSTACK)
_F_TAPROOT = int(ScriptFlags.TAPROOT)
_F_DISCOURAGE_WITNESS = int(ScriptFlags.DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM)
_F_DISCOURAGE_TAPROOT_VERSION = int(ScriptFlags.DISCOURAGE_UPGRADABLE_TAPROOT_VERSION)
_F_DISCOURAGE_OP_SUCCESS = int(ScriptFlags.DISCOURAGE_OP_SUCCESS)

_TAP_LEAF = tagged_hash_prefix("TapLeaf")
_TAP_BRANCH = tagged_hash_prefix("TapBranch")


def verify_input(
    tx: Transaction,
    index: int,
    spent_outputs: list[TxOut] | tuple[TxOut, ...],
    flags: ScriptFlags | int,
    precomputed: PrecomputedTx | None = None,
) -> None:
    """Verify input `index` of `tx`, whose inputs spend `spent_outputs` (one per input, in order; BIP 341
    signs them all). Pass one `PrecomputedTx` for all inputs of a transaction to share its hashes."""
    if precomputed is None:
        precomputed = PrecomputedTx(tx, spent_outputs)
    if not 0 <= index < len(tx.inputs):
        raise ValueError(f"input {index} of a {len(tx.inputs)}-input transaction")
    txin = tx.inputs[index]
    checker = TxChecker(precomputed, index)
    verify_script(txin.script_sig, spent_outputs[index].script_pubkey, txin.witness, int(flags), checker)


def verify_script(
    script_sig: bytes, script_pubkey: bytes, witness: tuple[bytes, ...], flags: int, checker: TxChecker
) -> None:
    """Core's VerifyScript."""
    if flags & _F_SIGPUSHONLY and not is_push_only(script_sig):
        raise ScriptError("SIG_PUSHONLY")
    execdata = ExecData()
    stack: list[bytes] = []
    if script_sig:  # empty in every segwit spend: nothing to run
        eval_script(stack, script_sig, flags, checker, SIGVERSION_BASE, execdata)
    stack_copy = list(stack) if flags & _F_P2SH else None
    eval_script(stack, script_pubkey, flags, checker, SIGVERSION_BASE, execdata)
    if not stack or not cast_to_bool(stack[-1]):
        raise ScriptError("EVAL_FALSE")
    had_witness = False
    if flags & _F_WITNESS:
        program = witness_program(script_pubkey)
        if program is not None:
            had_witness = True
            if script_sig:
                raise ScriptError("WITNESS_MALLEATED")
            _verify_witness_program(witness, program[0], program[1], flags, checker, is_p2sh=False)
            del stack[1:]  # keeps CLEANSTACK from looking at the (empty) legacy stack
    if flags & _F_P2SH and is_p2sh(script_pubkey):
        if not is_push_only(script_sig):
            raise ScriptError("SIG_PUSHONLY")
        stack = stack_copy
        # scriptSig ran without error and the P2SH template needs at least the redeem script on the stack.
        redeem = stack.pop()
        eval_script(stack, redeem, flags, checker, SIGVERSION_BASE, execdata)
        if not stack or not cast_to_bool(stack[-1]):
            raise ScriptError("EVAL_FALSE")
        if flags & _F_WITNESS:
            program = witness_program(redeem)
            if program is not None:
                had_witness = True
                if script_sig != push_data(redeem):
                    raise ScriptError("WITNESS_MALLEATED_P2SH")
                _verify_witness_program(witness, program[0], program[1], flags, checker, is_p2sh=True)
                del stack[1:]
    # Core requires P2SH and WITNESS along with CLEANSTACK (it asserts); so do the vectors.
    if flags & _F_CLEANSTACK and len(stack) != 1:
        raise ScriptError("CLEANSTACK")
    if flags & _F_WITNESS and not had_witness and witness:
        raise ScriptError("WITNESS_UNEXPECTED")


def tapleaf_hash(leaf_version: int, script: bytes) -> bytes:
    """BIP 341's leaf hash: TaggedHash("TapLeaf", version || compact_size(len) || script)."""
    h = _TAP_LEAF.copy()
    h.update(bytes((leaf_version,)) + var_bytes(script))
    return h.digest()


def _witness_serialized_size(witness: tuple[bytes, ...]) -> int:
    return len(compact_size(len(witness))) + sum(len(compact_size(len(item))) + len(item) for item in witness)


def _verify_witness_program(
    witness: tuple[bytes, ...], version: int, program: bytes, flags: int, checker: TxChecker, is_p2sh: bool
) -> None:
    stack = list(witness)
    if version == 0:
        if len(program) == 32:
            if not stack:
                raise ScriptError("WITNESS_PROGRAM_WITNESS_EMPTY")
            script = stack.pop()
            if hashlib.sha256(script).digest() != program:
                raise ScriptError("WITNESS_PROGRAM_MISMATCH")
        elif len(program) == 20:
            if len(stack) != 2:
                raise ScriptError("WITNESS_PROGRAM_MISMATCH")
            if len(stack[0]) > MAX_SCRIPT_ELEMENT_SIZE or len(stack[1]) > MAX_SCRIPT_ELEMENT_SIZE:
                raise ScriptError("PUSH_SIZE")
            eval_p2wpkh(stack[0], stack[1], program, flags, checker)
            return
        else:
            raise ScriptError("WITNESS_PROGRAM_WRONG_LENGTH")
        _execute_witness_script(stack, script, flags, SIGVERSION_WITNESS_V0, checker, ExecData())
        return
    if version == 1 and len(program) == 32 and not is_p2sh:
        if not flags & _F_TAPROOT:
            return
        _verify_taproot(witness, stack, program, flags, checker)
        return
    if flags & _F_DISCOURAGE_WITNESS:
        raise ScriptError("DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM")
    # Other versions (and P2SH-wrapped v1) stay anyone-can-spend for future soft forks.


def _verify_taproot(
    witness: tuple[bytes, ...], stack: list[bytes], program: bytes, flags: int, checker: TxChecker
) -> None:
    if not stack:
        raise ScriptError("WITNESS_PROGRAM_WITNESS_EMPTY")
    execdata = ExecData()
    if len(stack) >= 2 and stack[-1] and stack[-1][0] == ANNEX_TAG:
        execdata.annex_hash = hashlib.sha256(var_bytes(stack.pop())).digest()
    if len(stack) == 1:
        checker.check_schnorr(stack[0], program, SIGVERSION_TAPROOT, execdata)  # key path
        return
    control = stack.pop()
    script = stack.pop()
    path_bytes = len(control) - TAPROOT_CONTROL_BASE_SIZE
    if (
        path_bytes < 0
        or path_bytes > TAPROOT_CONTROL_NODE_SIZE * TAPROOT_CONTROL_MAX_NODE_COUNT
        or path_bytes % TAPROOT_CONTROL_NODE_SIZE
    ):
        raise ScriptError("TAPROOT_WRONG_CONTROL_SIZE")
    leaf_version = control[0] & TAPROOT_LEAF_MASK
    execdata.tapleaf_hash = tapleaf_hash(leaf_version, script)
    if not _verify_taproot_commitment(control, program, execdata.tapleaf_hash):
        raise ScriptError("WITNESS_PROGRAM_MISMATCH")
    if leaf_version == TAPROOT_LEAF_TAPSCRIPT:
        execdata.validation_weight_left = _witness_serialized_size(witness) + VALIDATION_WEIGHT_OFFSET
        _execute_witness_script(stack, script, flags, SIGVERSION_TAPSCRIPT, checker, execdata)
        return
    if flags & _F_DISCOURAGE_TAPROOT_VERSION:
        raise ScriptError("DISCOURAGE_UPGRADABLE_TAPROOT_VERSION")


def _verify_taproot_commitment(control: bytes, program: bytes, leaf: bytes) -> bool:
    k = leaf
    for pos in range(TAPROOT_CONTROL_BASE_SIZE, len(control), TAPROOT_CONTROL_NODE_SIZE):
        node = control[pos : pos + TAPROOT_CONTROL_NODE_SIZE]
        h = _TAP_BRANCH.copy()
        h.update(k + node if k < node else node + k)
        k = h.digest()
    tweaked = taproot_tweak(control[1:33], k)
    return tweaked is not None and tweaked[0] == program and tweaked[1] == control[0] & 1


def _execute_witness_script(
    stack: list[bytes], script: bytes, flags: int, sigversion: int, checker: TxChecker, execdata: ExecData
) -> None:
    if sigversion == SIGVERSION_TAPSCRIPT:
        # BIP 342: any OP_SUCCESSx makes the script succeed, checked before anything else (even a bad push
        # after it is never reached).
        pc = 0
        n = len(script)
        while pc < n:
            opcode, _, pc = get_op(script, pc)
            if opcode in OP_SUCCESS:
                if flags & _F_DISCOURAGE_OP_SUCCESS:
                    raise ScriptError("DISCOURAGE_OP_SUCCESS")
                return
        if len(stack) > MAX_STACK_SIZE:
            raise ScriptError("STACK_SIZE")
    if any(len(item) > MAX_SCRIPT_ELEMENT_SIZE for item in stack):
        raise ScriptError("PUSH_SIZE")
    eval_script(stack, script, flags, checker, sigversion, execdata)
    if len(stack) != 1:
        raise ScriptError("CLEANSTACK")
    if not cast_to_bool(stack[-1]):
        raise ScriptError("EVAL_FALSE")
