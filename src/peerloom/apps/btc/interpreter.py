"""Script execution (Bitcoin Core's EvalScript, script/interpreter.cpp): every opcode of legacy, segwit v0
and tapscript (BIP 342) execution, with the limits the interpreter enforces — 520-byte elements, 201
non-push operations and 10,000-byte scripts (not in tapscript), 1,000 items on the stack and altstack, and
tapscript's signature validation weight budget.

The stack is a Python list of `bytes`, top last. Every failure raises `ScriptError` with Core's error name.
"""

from __future__ import annotations

import hashlib

from . import opcodes as op
from .checker import SIGVERSION_BASE, SIGVERSION_TAPSCRIPT, SIGVERSION_WITNESS_V0, ExecData, TxChecker
from .opcodes import (
    DISABLED,
    MAX_OPS_PER_SCRIPT,
    MAX_SCRIPT_ELEMENT_SIZE,
    MAX_SCRIPT_SIZE,
    MAX_STACK_SIZE,
    cast_to_bool,
    check_minimal_push,
    get_op,
    num_decode,
    num_encode,
    push_data,
)
from .script_flags import ScriptError, ScriptFlags
from .secp import (
    is_compressed_or_uncompressed_pubkey,
    is_compressed_pubkey,
    is_low_s,
    is_valid_der_encoding,
)

VALIDATION_WEIGHT_PER_SIGOP_PASSED = 50

_P2SH = int(ScriptFlags.P2SH)
_STRICTENC = int(ScriptFlags.STRICTENC)
_DERSIG = int(ScriptFlags.DERSIG)
_LOW_S = int(ScriptFlags.LOW_S)
_NULLDUMMY = int(ScriptFlags.NULLDUMMY)
_MINIMALDATA = int(ScriptFlags.MINIMALDATA)
_DISCOURAGE_NOPS = int(ScriptFlags.DISCOURAGE_UPGRADABLE_NOPS)
_CLTV = int(ScriptFlags.CHECKLOCKTIMEVERIFY)
_CSV = int(ScriptFlags.CHECKSEQUENCEVERIFY)
_MINIMALIF = int(ScriptFlags.MINIMALIF)
_NULLFAIL = int(ScriptFlags.NULLFAIL)
_WITNESS_PUBKEYTYPE = int(ScriptFlags.WITNESS_PUBKEYTYPE)
_CONST_SCRIPTCODE = int(ScriptFlags.CONST_SCRIPTCODE)
_DISCOURAGE_PUBKEYTYPE = int(ScriptFlags.DISCOURAGE_UPGRADABLE_PUBKEYTYPE)
_TRUE = b"\x01"
_FALSE = b""

_UNARY = frozenset([op.OP_1ADD, op.OP_1SUB, op.OP_NEGATE, op.OP_ABS, op.OP_NOT, op.OP_0NOTEQUAL])
_BINARY = frozenset(range(op.OP_ADD, op.OP_MAX + 1)) - DISABLED
_UPGRADABLE_NOPS = frozenset([op.OP_NOP1, *range(op.OP_NOP4, op.OP_NOP10 + 1)])
_HASHES = {
    op.OP_SHA256: lambda b: hashlib.sha256(b).digest(),
    op.OP_HASH160: lambda b: hashlib.new("ripemd160", hashlib.sha256(b).digest()).digest(),
    op.OP_HASH256: lambda b: hashlib.sha256(hashlib.sha256(b).digest()).digest(),
    op.OP_RIPEMD160: lambda b: hashlib.new("ripemd160", b).digest(),
    op.OP_SHA1: lambda b: hashlib.sha1(b).digest(),
}


def find_and_delete(script: bytes, needle: bytes) -> tuple[bytes, int]:
    """Core's FindAndDelete: remove every occurrence of `needle` that starts at an operation boundary."""
    if not needle or needle not in script:
        return script, 0
    out = []
    found = 0
    n = len(script)
    k = len(needle)
    pc = 0
    kept_from = 0
    while True:
        out.append(script[kept_from:pc])
        while n - pc >= k and script.startswith(needle, pc):
            pc += k
            found += 1
        kept_from = pc
        if pc >= n:
            break
        try:
            pc = get_op(script, pc)[2]
        except ScriptError:
            break
    if not found:
        return script, 0
    out.append(script[kept_from:])
    return b"".join(out), found


def check_signature_encoding(sig: bytes, flags: int) -> None:
    """Policy (and BIP 66 consensus) rules on an ECDSA signature's encoding; an empty one always passes."""
    if not sig:
        return
    if flags & (_DERSIG | _LOW_S | _STRICTENC) and not is_valid_der_encoding(sig):
        raise ScriptError("SIG_DER")
    if flags & _LOW_S and not is_low_s(sig):
        raise ScriptError("SIG_HIGH_S")
    if flags & _STRICTENC and not 1 <= (sig[-1] & ~0x80) <= 3:
        raise ScriptError("SIG_HASHTYPE")


def check_pubkey_encoding(pubkey: bytes, flags: int, sigversion: int) -> None:
    if flags & _STRICTENC and not is_compressed_or_uncompressed_pubkey(pubkey):
        raise ScriptError("PUBKEYTYPE")
    if flags & _WITNESS_PUBKEYTYPE and sigversion == SIGVERSION_WITNESS_V0 and not is_compressed_pubkey(pubkey):
        raise ScriptError("WITNESS_PUBKEYTYPE")


def _script_code(script: bytes, begin: int, sig: bytes, flags: int, sigversion: int) -> bytes:
    """The signed script: from the last OP_CODESEPARATOR; legacy signatures are first FindAndDelete'd."""
    code = script[begin:] if begin else script
    if sigversion == SIGVERSION_BASE:
        code, found = find_and_delete(code, push_data(sig))
        if found and flags & _CONST_SCRIPTCODE:
            raise ScriptError("SIG_FINDANDDELETE")
    return code


def _eval_checksig(
    sig: bytes, pubkey: bytes, script: bytes, begin: int, flags: int, checker: TxChecker, sigversion: int,
    execdata: ExecData,
) -> bool:
    if sigversion == SIGVERSION_TAPSCRIPT:
        success = bool(sig)
        if success:
            # BIP 342: each signature check spends 50 of the budget the witness size bought.
            execdata.validation_weight_left -= VALIDATION_WEIGHT_PER_SIGOP_PASSED
            if execdata.validation_weight_left < 0:
                raise ScriptError("TAPSCRIPT_VALIDATION_WEIGHT")
        if not pubkey:
            raise ScriptError("TAPSCRIPT_EMPTY_PUBKEY")
        if len(pubkey) == 32:
            if success:
                checker.check_schnorr(sig, pubkey, sigversion, execdata)
        elif flags & _DISCOURAGE_PUBKEYTYPE:
            raise ScriptError("DISCOURAGE_UPGRADABLE_PUBKEYTYPE")
        return success
    code = _script_code(script, begin, sig, flags, sigversion)
    check_signature_encoding(sig, flags)
    check_pubkey_encoding(pubkey, flags, sigversion)
    success = checker.check_ecdsa(sig, pubkey, code, sigversion)
    if not success and flags & _NULLFAIL and sig:
        raise ScriptError("NULLFAIL")
    return success


def eval_p2wpkh(sig: bytes, pubkey: bytes, program: bytes, flags: int, checker: TxChecker) -> None:
    """What `DUP HASH160 <program> EQUALVERIFY CHECKSIG` on the witness [sig, pubkey] does under witness v0
    rules (BIP 141's P2WPKH), with the same checks and errors in the same order, minus the generic
    interpreter loop: the most common spend today takes this path."""
    if hashlib.new("ripemd160", hashlib.sha256(pubkey).digest()).digest() != program:
        raise ScriptError("EQUALVERIFY")
    script = b"\x76\xa9\x14" + program + b"\x88\xac"
    if not _eval_checksig(sig, pubkey, script, 0, int(flags), checker, SIGVERSION_WITNESS_V0, ExecData()):
        raise ScriptError("EVAL_FALSE")  # CHECKSIG left false, which the witness script's result must not be


def _need(stack: list, n: int) -> None:
    if len(stack) < n:
        raise ScriptError("INVALID_STACK_OPERATION")


def eval_script(
    stack: list[bytes], script: bytes, flags: int, checker: TxChecker, sigversion: int, execdata: ExecData
) -> None:
    """Run `script` on `stack` (modified in place); raises ScriptError on failure."""
    if sigversion != SIGVERSION_TAPSCRIPT and len(script) > MAX_SCRIPT_SIZE:
        raise ScriptError("SCRIPT_SIZE")
    flags = int(flags)
    minimal = bool(flags & _MINIMALDATA)
    legacy_limits = sigversion != SIGVERSION_TAPSCRIPT
    vf_exec: list[bool] = []
    false_count = 0  # entries of vf_exec that are False: executing iff it is 0
    altstack: list[bytes] = []
    op_count = 0
    begin_code = 0
    n = len(script)
    pc = 0
    opcode_pos = -1  # BIP 342 counts operations, not bytes, for the code separator position
    execdata.codeseparator_pos = 0xFFFFFFFF
    while pc < n:
        opcode_pos += 1
        opcode, data, pc = get_op(script, pc)
        executing = false_count == 0
        if data is not None:
            if len(data) > MAX_SCRIPT_ELEMENT_SIZE:
                raise ScriptError("PUSH_SIZE")
            if executing:
                if minimal and not check_minimal_push(data, opcode):
                    raise ScriptError("MINIMALDATA")
                stack.append(data)
                if len(stack) + len(altstack) > MAX_STACK_SIZE:
                    raise ScriptError("STACK_SIZE")
            continue
        if legacy_limits and opcode > op.OP_16:
            op_count += 1
            if op_count > MAX_OPS_PER_SCRIPT:
                raise ScriptError("OP_COUNT")
        if opcode in DISABLED:
            raise ScriptError("DISABLED_OPCODE")
        if opcode == op.OP_CODESEPARATOR and sigversion == SIGVERSION_BASE and flags & _CONST_SCRIPTCODE:
            raise ScriptError("OP_CODESEPARATOR")
        if not executing and not op.OP_IF <= opcode <= op.OP_ENDIF:
            continue

        if opcode == op.OP_1NEGATE or op.OP_1 <= opcode <= op.OP_16:
            stack.append(num_encode(opcode - (op.OP_1 - 1)))
        elif opcode == op.OP_DUP:
            _need(stack, 1)
            stack.append(stack[-1])
        elif opcode in _HASHES:
            _need(stack, 1)
            stack[-1] = _HASHES[opcode](stack[-1])
        elif opcode == op.OP_EQUAL or opcode == op.OP_EQUALVERIFY:
            _need(stack, 2)
            equal = stack.pop() == stack.pop()
            if opcode == op.OP_EQUALVERIFY:
                if not equal:
                    raise ScriptError("EQUALVERIFY")
            else:
                stack.append(_TRUE if equal else _FALSE)
        elif opcode == op.OP_CHECKSIG or opcode == op.OP_CHECKSIGVERIFY:
            _need(stack, 2)
            ok = _eval_checksig(
                stack[-2], stack[-1], script, begin_code, flags, checker, sigversion, execdata
            )
            del stack[-2:]
            if opcode == op.OP_CHECKSIGVERIFY:
                if not ok:
                    raise ScriptError("CHECKSIGVERIFY")
            else:
                stack.append(_TRUE if ok else _FALSE)
        elif opcode == op.OP_CHECKSIGADD:
            if sigversion != SIGVERSION_TAPSCRIPT:
                raise ScriptError("BAD_OPCODE")
            _need(stack, 3)
            num = num_decode(stack[-2], minimal)
            ok = _eval_checksig(
                stack[-3], stack[-1], script, begin_code, flags, checker, sigversion, execdata
            )
            del stack[-3:]
            stack.append(num_encode(num + ok))
        elif opcode == op.OP_CHECKMULTISIG or opcode == op.OP_CHECKMULTISIGVERIFY:
            if sigversion == SIGVERSION_TAPSCRIPT:
                raise ScriptError("TAPSCRIPT_CHECKMULTISIG")
            op_count = _checkmultisig(
                stack, script, begin_code, flags, checker, sigversion, execdata, op_count, minimal
            )
            if opcode == op.OP_CHECKMULTISIGVERIFY and not cast_to_bool(stack.pop()):
                raise ScriptError("CHECKMULTISIGVERIFY")
        elif op.OP_IF <= opcode <= op.OP_NOTIF:
            value = False
            if executing:
                _need(stack, 1)
                top = stack[-1]
                # BIP 342 makes the minimal OP_IF argument consensus in tapscript; in v0 it is policy.
                minimal_if = sigversion == SIGVERSION_TAPSCRIPT or (
                    sigversion == SIGVERSION_WITNESS_V0 and flags & _MINIMALIF
                )
                if minimal_if and (len(top) > 1 or (len(top) == 1 and top[0] != 1)):
                    raise ScriptError("TAPSCRIPT_MINIMALIF" if sigversion == SIGVERSION_TAPSCRIPT else "MINIMALIF")
                value = cast_to_bool(top)
                if opcode == op.OP_NOTIF:
                    value = not value
                stack.pop()
            vf_exec.append(value)
            false_count += not value
        elif opcode == op.OP_ELSE:
            if not vf_exec:
                raise ScriptError("UNBALANCED_CONDITIONAL")
            false_count += 1 if vf_exec[-1] else -1
            vf_exec[-1] = not vf_exec[-1]
        elif opcode == op.OP_ENDIF:
            if not vf_exec:
                raise ScriptError("UNBALANCED_CONDITIONAL")
            false_count -= not vf_exec.pop()
        elif opcode == op.OP_VERIFY:
            _need(stack, 1)
            if not cast_to_bool(stack[-1]):
                raise ScriptError("VERIFY")
            stack.pop()
        elif opcode in _UNARY or opcode in _BINARY or opcode == op.OP_WITHIN:
            _arithmetic(stack, opcode, minimal)
        elif opcode == op.OP_CHECKLOCKTIMEVERIFY or opcode == op.OP_CHECKSEQUENCEVERIFY:
            is_cltv = opcode == op.OP_CHECKLOCKTIMEVERIFY
            if flags & (_CLTV if is_cltv else _CSV):  # without the flag: NOP2/NOP3, not discouraged (as Core)
                _need(stack, 1)
                lock = num_decode(stack[-1], minimal, 5)  # 5 bytes: lock times past 2038 fit
                if lock < 0:
                    raise ScriptError("NEGATIVE_LOCKTIME")
                if is_cltv:
                    satisfied = checker.check_locktime(lock)
                else:  # BIP 112: with the disable flag set the operation is a NOP
                    satisfied = bool(lock & (1 << 31)) or checker.check_sequence(lock)
                if not satisfied:
                    raise ScriptError("UNSATISFIED_LOCKTIME")
        elif opcode == op.OP_NOP:
            pass
        elif opcode in _UPGRADABLE_NOPS:
            if flags & _DISCOURAGE_NOPS:
                raise ScriptError("DISCOURAGE_UPGRADABLE_NOPS")
        elif opcode == op.OP_CODESEPARATOR:
            begin_code = pc
            execdata.codeseparator_pos = opcode_pos
        elif opcode == op.OP_RETURN:
            raise ScriptError("OP_RETURN")
        else:
            _stack_op(stack, altstack, opcode, minimal)
        if len(stack) + len(altstack) > MAX_STACK_SIZE:
            raise ScriptError("STACK_SIZE")
    if vf_exec:
        raise ScriptError("UNBALANCED_CONDITIONAL")


def _stack_op(stack: list[bytes], altstack: list[bytes], opcode: int, minimal: bool) -> None:
    if opcode == op.OP_TOALTSTACK:
        _need(stack, 1)
        altstack.append(stack.pop())
    elif opcode == op.OP_FROMALTSTACK:
        if not altstack:
            raise ScriptError("INVALID_ALTSTACK_OPERATION")
        stack.append(altstack.pop())
    elif opcode == op.OP_2DROP:
        _need(stack, 2)
        del stack[-2:]
    elif opcode == op.OP_2DUP:
        _need(stack, 2)
        stack.extend(stack[-2:])
    elif opcode == op.OP_3DUP:
        _need(stack, 3)
        stack.extend(stack[-3:])
    elif opcode == op.OP_2OVER:
        _need(stack, 4)
        stack.extend(stack[-4:-2])
    elif opcode == op.OP_2ROT:
        _need(stack, 6)
        moved = stack[-6:-4]
        del stack[-6:-4]
        stack.extend(moved)
    elif opcode == op.OP_2SWAP:
        _need(stack, 4)
        stack[-4:] = stack[-2:] + stack[-4:-2]
    elif opcode == op.OP_IFDUP:
        _need(stack, 1)
        if cast_to_bool(stack[-1]):
            stack.append(stack[-1])
    elif opcode == op.OP_DEPTH:
        stack.append(num_encode(len(stack)))
    elif opcode == op.OP_DROP:
        _need(stack, 1)
        stack.pop()
    elif opcode == op.OP_NIP:
        _need(stack, 2)
        del stack[-2]
    elif opcode == op.OP_OVER:
        _need(stack, 2)
        stack.append(stack[-2])
    elif opcode == op.OP_PICK or opcode == op.OP_ROLL:
        _need(stack, 2)
        depth = num_decode(stack[-1], minimal)
        stack.pop()
        if depth < 0 or depth >= len(stack):
            raise ScriptError("INVALID_STACK_OPERATION")
        item = stack[-depth - 1]
        if opcode == op.OP_ROLL:
            del stack[-depth - 1]
        stack.append(item)
    elif opcode == op.OP_ROT:
        _need(stack, 3)
        stack.append(stack.pop(-3))
    elif opcode == op.OP_SWAP:
        _need(stack, 2)
        stack[-2], stack[-1] = stack[-1], stack[-2]
    elif opcode == op.OP_TUCK:
        _need(stack, 2)
        stack.insert(-2, stack[-1])
    elif opcode == op.OP_SIZE:
        _need(stack, 1)
        stack.append(num_encode(len(stack[-1])))
    else:
        raise ScriptError("BAD_OPCODE", f"opcode {opcode:#x}")


def _arithmetic(stack: list[bytes], opcode: int, minimal: bool) -> None:
    if opcode == op.OP_WITHIN:
        _need(stack, 3)
        x, lo, hi = (num_decode(item, minimal) for item in stack[-3:])
        del stack[-3:]
        stack.append(_TRUE if lo <= x < hi else _FALSE)
        return
    if opcode in _UNARY:
        _need(stack, 1)
        a = num_decode(stack[-1], minimal)
        if opcode == op.OP_1ADD:
            r = a + 1
        elif opcode == op.OP_1SUB:
            r = a - 1
        elif opcode == op.OP_NEGATE:
            r = -a
        elif opcode == op.OP_ABS:
            r = abs(a)
        elif opcode == op.OP_NOT:
            r = int(a == 0)
        else:
            r = int(a != 0)
        stack[-1] = num_encode(r)
        return
    _need(stack, 2)
    a = num_decode(stack[-2], minimal)
    b = num_decode(stack[-1], minimal)
    del stack[-2:]
    if opcode == op.OP_ADD:
        r = a + b
    elif opcode == op.OP_SUB:
        r = a - b
    elif opcode == op.OP_BOOLAND:
        r = int(a != 0 and b != 0)
    elif opcode == op.OP_BOOLOR:
        r = int(a != 0 or b != 0)
    elif opcode == op.OP_NUMEQUAL or opcode == op.OP_NUMEQUALVERIFY:
        r = int(a == b)
    elif opcode == op.OP_NUMNOTEQUAL:
        r = int(a != b)
    elif opcode == op.OP_LESSTHAN:
        r = int(a < b)
    elif opcode == op.OP_GREATERTHAN:
        r = int(a > b)
    elif opcode == op.OP_LESSTHANOREQUAL:
        r = int(a <= b)
    elif opcode == op.OP_GREATERTHANOREQUAL:
        r = int(a >= b)
    elif opcode == op.OP_MIN:
        r = min(a, b)
    else:
        r = max(a, b)
    if opcode == op.OP_NUMEQUALVERIFY:
        if not r:
            raise ScriptError("NUMEQUALVERIFY")
        return
    stack.append(num_encode(r))


def _checkmultisig(
    stack: list[bytes], script: bytes, begin: int, flags: int, checker: TxChecker, sigversion: int,
    execdata: ExecData, op_count: int, minimal: bool,
) -> int:
    """OP_CHECKMULTISIG: leaves its boolean on the stack; returns the updated operation count."""
    i = 1
    _need(stack, i)
    keys = num_decode(stack[-i], minimal)
    if keys < 0 or keys > op.MAX_PUBKEYS_PER_MULTISIG:
        raise ScriptError("PUBKEY_COUNT")
    op_count += keys
    if op_count > MAX_OPS_PER_SCRIPT:
        raise ScriptError("OP_COUNT")
    i += 1
    ikey = i
    ikey2 = keys + 2  # where the cleanup stops checking NULLFAIL (only signatures must be empty)
    i += keys
    _need(stack, i)
    sigs = num_decode(stack[-i], minimal)
    if sigs < 0 or sigs > keys:
        raise ScriptError("SIG_COUNT")
    i += 1
    isig = i
    i += sigs
    _need(stack, i)
    code = script[begin:] if begin else script
    if sigversion == SIGVERSION_BASE:
        for k in range(sigs):
            code, found = find_and_delete(code, push_data(stack[-isig - k]))
            if found and flags & _CONST_SCRIPTCODE:
                raise ScriptError("SIG_FINDANDDELETE")
    success = True
    while success and sigs > 0:
        sig = stack[-isig]
        pubkey = stack[-ikey]
        check_signature_encoding(sig, flags)
        check_pubkey_encoding(pubkey, flags, sigversion)
        if checker.check_ecdsa(sig, pubkey, code, sigversion):
            isig += 1
            sigs -= 1
        ikey += 1
        keys -= 1
        if sigs > keys:
            success = False  # more signatures left than keys: cannot succeed
    while i > 1:
        i -= 1
        if not success and flags & _NULLFAIL and ikey2 == 0 and stack[-1]:
            raise ScriptError("NULLFAIL")
        if ikey2 > 0:
            ikey2 -= 1
        stack.pop()
    # The extra item consumed by a historical off-by-one; BIP 147 requires it to be empty.
    _need(stack, 1)
    if flags & _NULLDUMMY and stack[-1]:
        raise ScriptError("SIG_NULLDUMMY")
    stack.pop()
    stack.append(_TRUE if success else _FALSE)
    return op_count
