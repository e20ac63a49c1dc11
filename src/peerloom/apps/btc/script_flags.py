"""Script verification flags and the one error script verification raises.

The flag names and bit positions are Bitcoin Core's (`script/interpreter.h`), so the test vectors' flag strings
("P2SH,WITNESS,…") map one to one. `ScriptError.code` is Core's `ScriptError` name without the
`SCRIPT_ERR_` prefix ("EVAL_FALSE", "SIG_DER", …), as the vectors' expected results spell it.
"""

from __future__ import annotations

import enum

from .serialize import BtcError


class ScriptFlags(enum.IntFlag):
    NONE = 0
    P2SH = 1 << 0
    STRICTENC = 1 << 1
    DERSIG = 1 << 2
    LOW_S = 1 << 3
    NULLDUMMY = 1 << 4
    SIGPUSHONLY = 1 << 5
    MINIMALDATA = 1 << 6
    DISCOURAGE_UPGRADABLE_NOPS = 1 << 7
    CLEANSTACK = 1 << 8
    CHECKLOCKTIMEVERIFY = 1 << 9
    CHECKSEQUENCEVERIFY = 1 << 10
    WITNESS = 1 << 11
    DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM = 1 << 12
    MINIMALIF = 1 << 13
    NULLFAIL = 1 << 14
    WITNESS_PUBKEYTYPE = 1 << 15
    CONST_SCRIPTCODE = 1 << 16
    TAPROOT = 1 << 17
    DISCOURAGE_UPGRADABLE_TAPROOT_VERSION = 1 << 18
    DISCOURAGE_OP_SUCCESS = 1 << 19
    DISCOURAGE_UPGRADABLE_PUBKEYTYPE = 1 << 20
    # Consensus (Core's MANDATORY_SCRIPT_VERIFY_FLAGS): every block since taproot's activation obeys these.
    MANDATORY = P2SH | DERSIG | NULLDUMMY | CHECKLOCKTIMEVERIFY | CHECKSEQUENCEVERIFY | WITNESS | TAPROOT
    # Relay policy (Core's STANDARD_SCRIPT_VERIFY_FLAGS, policy/policy.h).
    STANDARD = (
        MANDATORY | STRICTENC | MINIMALDATA | DISCOURAGE_UPGRADABLE_NOPS | CLEANSTACK | MINIMALIF | NULLFAIL
        | LOW_S | DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM | WITNESS_PUBKEYTYPE | CONST_SCRIPTCODE
        | DISCOURAGE_UPGRADABLE_TAPROOT_VERSION | DISCOURAGE_OP_SUCCESS | DISCOURAGE_UPGRADABLE_PUBKEYTYPE
    )

    @classmethod
    def parse(cls, text: str) -> ScriptFlags:
        """Flags from Core's comma-separated names ("P2SH,STRICTENC"); "" and "NONE" are no flags."""
        flags = cls.NONE
        for name in filter(None, (part.strip() for part in text.split(","))):
            try:
                flags |= cls[name]
            except KeyError:
                raise ValueError(f"unknown script flag {name!r}") from None
        return flags


class ScriptError(BtcError):
    """A script (or its signatures, witness or spend conditions) fails verification."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        detail = self.args[0][len(self.code) + 2 :] if self.args[0] != self.code else ""
        return (ScriptError, (self.code, detail))
