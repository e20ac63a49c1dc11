"""Script opcodes and the primitives on serialized scripts: stepping over one operation, the script number
encoding (`CScriptNum`), minimal pushes and the standard script templates (P2SH, witness programs).

All of it follows Bitcoin Core's `script/script.{h,cpp}`; a truncated push ends iteration (`ScriptIter` yields
nothing more and records the failure) exactly where Core's `GetOp` returns false.
"""

from __future__ import annotations

from .script_flags import ScriptError

OP_0 = 0x00
OP_PUSHDATA1 = 0x4C
OP_PUSHDATA2 = 0x4D
OP_PUSHDATA4 = 0x4E
OP_1NEGATE = 0x4F
OP_RESERVED = 0x50
OP_1 = 0x51
OP_16 = 0x60
OP_NOP = 0x61
OP_VER = 0x62
OP_IF = 0x63
OP_NOTIF = 0x64
OP_VERIF = 0x65
OP_VERNOTIF = 0x66
OP_ELSE = 0x67
OP_ENDIF = 0x68
OP_VERIFY = 0x69
OP_RETURN = 0x6A
OP_TOALTSTACK = 0x6B
OP_FROMALTSTACK = 0x6C
OP_2DROP = 0x6D
OP_2DUP = 0x6E
OP_3DUP = 0x6F
OP_2OVER = 0x70
OP_2ROT = 0x71
OP_2SWAP = 0x72
OP_IFDUP = 0x73
OP_DEPTH = 0x74
OP_DROP = 0x75
OP_DUP = 0x76
OP_NIP = 0x77
OP_OVER = 0x78
OP_PICK = 0x79
OP_ROLL = 0x7A
OP_ROT = 0x7B
OP_SWAP = 0x7C
OP_TUCK = 0x7D
OP_CAT = 0x7E
OP_SUBSTR = 0x7F
OP_LEFT = 0x80
OP_RIGHT = 0x81
OP_SIZE = 0x82
OP_INVERT = 0x83
OP_AND = 0x84
OP_OR = 0x85
OP_XOR = 0x86
OP_EQUAL = 0x87
OP_EQUALVERIFY = 0x88
OP_RESERVED1 = 0x89
OP_RESERVED2 = 0x8A
OP_1ADD = 0x8B
OP_1SUB = 0x8C
OP_2MUL = 0x8D
OP_2DIV = 0x8E
OP_NEGATE = 0x8F
OP_ABS = 0x90
OP_NOT = 0x91
OP_0NOTEQUAL = 0x92
OP_ADD = 0x93
OP_SUB = 0x94
OP_MUL = 0x95
OP_DIV = 0x96
OP_MOD = 0x97
OP_LSHIFT = 0x98
OP_RSHIFT = 0x99
OP_BOOLAND = 0x9A
OP_BOOLOR = 0x9B
OP_NUMEQUAL = 0x9C
OP_NUMEQUALVERIFY = 0x9D
OP_NUMNOTEQUAL = 0x9E
OP_LESSTHAN = 0x9F
OP_GREATERTHAN = 0xA0
OP_LESSTHANOREQUAL = 0xA1
OP_GREATERTHANOREQUAL = 0xA2
OP_MIN = 0xA3
OP_MAX = 0xA4
OP_WITHIN = 0xA5
OP_RIPEMD160 = 0xA6
OP_SHA1 = 0xA7
OP_SHA256 = 0xA8
OP_HASH160 = 0xA9
OP_HASH256 = 0xAA
OP_CODESEPARATOR = 0xAB
OP_CHECKSIG = 0xAC
OP_CHECKSIGVERIFY = 0xAD
OP_CHECKMULTISIG = 0xAE
OP_CHECKMULTISIGVERIFY = 0xAF
OP_NOP1 = 0xB0
OP_CHECKLOCKTIMEVERIFY = 0xB1
OP_CHECKSEQUENCEVERIFY = 0xB2
OP_NOP4 = 0xB3
OP_NOP10 = 0xB9
OP_CHECKSIGADD = 0xBA
OP_INVALIDOPCODE = 0xFF

MAX_SCRIPT_ELEMENT_SIZE = 520
MAX_OPS_PER_SCRIPT = 201
MAX_PUBKEYS_PER_MULTISIG = 20
MAX_SCRIPT_SIZE = 10_000
MAX_STACK_SIZE = 1000

# BIP 342: opcodes that make a tapscript succeed unconditionally (reserved for soft forks).
OP_SUCCESS = frozenset(
    [80, 98, *range(126, 130), *range(131, 135), *range(137, 139), *range(141, 143), *range(149, 154),
     *range(187, 255)]
)
# Disabled since 2010 (CVE-2010-5137 and friends): they fail even in an unexecuted branch.
DISABLED = frozenset(
    [OP_CAT, OP_SUBSTR, OP_LEFT, OP_RIGHT, OP_INVERT, OP_AND, OP_OR, OP_XOR, OP_2MUL, OP_2DIV, OP_MUL, OP_DIV,
     OP_MOD, OP_LSHIFT, OP_RSHIFT]
)


def get_op(script: bytes, pc: int) -> tuple[int, bytes | None, int]:
    """The operation at `pc`: (opcode, pushed data or None, position after it). A truncated push raises
    `ScriptError("BAD_OPCODE")` (Core's GetOp returning false); `pc` must be below len(script)."""
    opcode = script[pc]
    pc += 1
    if opcode > OP_PUSHDATA4:
        return opcode, None, pc
    if opcode < OP_PUSHDATA1:
        size = opcode
    elif opcode == OP_PUSHDATA1:
        if pc + 1 > len(script):
            raise ScriptError("BAD_OPCODE", "truncated PUSHDATA1")
        size = script[pc]
        pc += 1
    elif opcode == OP_PUSHDATA2:
        if pc + 2 > len(script):
            raise ScriptError("BAD_OPCODE", "truncated PUSHDATA2")
        size = int.from_bytes(script[pc : pc + 2], "little")
        pc += 2
    else:
        if pc + 4 > len(script):
            raise ScriptError("BAD_OPCODE", "truncated PUSHDATA4")
        size = int.from_bytes(script[pc : pc + 4], "little")
        pc += 4
    end = pc + size
    if end > len(script):
        raise ScriptError("BAD_OPCODE", "push past the end of the script")
    return opcode, script[pc:end], end


def iter_ops(script: bytes):
    """(opcode, data, position after) for each operation up to the end or the first truncated push (which
    ends the iteration silently, as a `while (GetOp(...))` loop in Core does)."""
    pc = 0
    n = len(script)
    while pc < n:
        try:
            op = get_op(script, pc)
        except ScriptError:
            return
        yield op
        pc = op[2]


def is_push_only(script: bytes) -> bool:
    """Core's IsPushOnly: every operation is a push or OP_1NEGATE..OP_16 (OP_RESERVED included); a truncated
    push makes it false."""
    pc = 0
    n = len(script)
    while pc < n:
        try:
            opcode, _, pc = get_op(script, pc)
        except ScriptError:
            return False
        if opcode > OP_16:
            return False
    return True


def is_p2sh(script: bytes) -> bool:
    """BIP 16's template: OP_HASH160 <20 bytes> OP_EQUAL."""
    return len(script) == 23 and script[0] == OP_HASH160 and script[1] == 0x14 and script[22] == OP_EQUAL


def witness_program(script: bytes) -> tuple[int, bytes] | None:
    """(version, program) if `script` is a BIP 141 witness program: a version opcode then one 2–40 byte push."""
    n = len(script)
    if n < 4 or n > 42:
        return None
    first = script[0]
    if first != OP_0 and not OP_1 <= first <= OP_16:
        return None
    if script[1] + 2 != n:
        return None
    return (0 if first == OP_0 else first - OP_1 + 1), script[2:]


def push_data(data: bytes) -> bytes:
    """The serialization of `CScript() << data` (the shortest push opcode; no OP_N substitution)."""
    n = len(data)
    if n < OP_PUSHDATA1:
        return bytes((n,)) + data
    if n <= 0xFF:
        return bytes((OP_PUSHDATA1, n)) + data
    if n <= 0xFFFF:
        return bytes((OP_PUSHDATA2,)) + n.to_bytes(2, "little") + data
    return bytes((OP_PUSHDATA4,)) + n.to_bytes(4, "little") + data


def check_minimal_push(data: bytes, opcode: int) -> bool:
    """Core's CheckMinimalPush: `data` was pushed with the shortest possible operation."""
    n = len(data)
    if n == 0:
        return opcode == OP_0
    if n == 1 and 1 <= data[0] <= 16:
        return False  # OP_1..OP_16 was required
    if n == 1 and data[0] == 0x81:
        return False  # OP_1NEGATE was required
    if n <= 75:
        return opcode == n
    if n <= 255:
        return opcode == OP_PUSHDATA1
    if n <= 65535:
        return opcode == OP_PUSHDATA2
    return True


def num_decode(data: bytes, require_minimal: bool, max_size: int = 4) -> int:
    """A script number (little-endian magnitude, sign in the top bit of the last byte). Too long, or not
    minimal when required, is Core's scriptnum_error (SCRIPTNUM)."""
    n = len(data)
    if n > max_size:
        raise ScriptError("SCRIPTNUM", "script number overflow")
    if n == 0:
        return 0
    last = data[-1]
    if require_minimal and last & 0x7F == 0 and (n <= 1 or data[-2] & 0x80 == 0):
        raise ScriptError("SCRIPTNUM", "non-minimally encoded script number")
    if last & 0x80:
        return -int.from_bytes(data[:-1] + bytes((last & 0x7F,)), "little")
    return int.from_bytes(data, "little")


def num_encode(value: int) -> bytes:
    """The minimal script number encoding of `value` (0 is the empty string)."""
    if value == 0:
        return b""
    magnitude = abs(value)
    out = bytearray(magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little"))
    if out[-1] & 0x80:
        out.append(0x80 if value < 0 else 0)
    elif value < 0:
        out[-1] |= 0x80
    return bytes(out)


def cast_to_bool(data: bytes) -> bool:
    """False for any encoding of zero, including negative zero (0x80 as the last byte)."""
    if not data:
        return False
    if data[:-1].strip(b"\x00"):
        return True  # a non-zero byte before the last
    return data[-1] & 0x7F != 0
