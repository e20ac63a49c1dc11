"""Bitcoin Core's tx_valid.json and tx_invalid.json, checked as transaction_tests.cpp does: a valid
transaction passes with every flag but the ones it lists, and fails when any one listed flag is added back
(the list is maximal); an invalid one fails with its flags and passes when any one of them is removed (the
list is minimal). "BADTX" entries must fail the context-free transaction check."""

from __future__ import annotations

from support.btc_vectors import load, parse_asm

from peerloom.apps.btc.block import ConsensusError
from peerloom.apps.btc.checks import check_transaction
from peerloom.apps.btc.script import PrecomputedTx, ScriptError, ScriptFlags, verify_input
from peerloom.apps.btc.serialize import hash_from_hex
from peerloom.apps.btc.tx import OutPoint, Transaction, TxOut, parse_transaction

ALL_FLAGS = [f for f in ScriptFlags if f.name not in ("NONE", "MANDATORY", "STANDARD")]
EVERY = ScriptFlags(sum(ALL_FLAGS))


def _cases(name: str) -> list[tuple[Transaction, list[TxOut], str]]:
    cases = []
    for test in load(name):
        if not isinstance(test[0], list):
            continue
        prevouts = {}
        for item in test[0]:
            outpoint = OutPoint(hash_from_hex(item[0]), item[1] & 0xFFFFFFFF)
            prevouts[outpoint] = TxOut(item[3] if len(item) > 3 else 0, parse_asm(item[2]))
        tx = parse_transaction(bytes.fromhex(test[1]))
        cases.append((tx, [prevouts[txin.prevout] for txin in tx.inputs], test[2]))
    return cases


def _valid_combination(flags: ScriptFlags) -> bool:
    """What Core's VerifyScript asserts: WITNESS needs P2SH, CLEANSTACK needs WITNESS."""
    if flags & ScriptFlags.WITNESS and not flags & ScriptFlags.P2SH:
        return False
    return not (flags & ScriptFlags.CLEANSTACK and not flags & ScriptFlags.WITNESS)


def _scripts_pass(tx: Transaction, spent: list[TxOut], flags: ScriptFlags) -> bool:
    pre = PrecomputedTx(tx, spent)
    try:
        for i in range(len(tx.inputs)):
            verify_input(tx, i, spent, flags, pre)
    except ScriptError:
        return False
    return True


def test_tx_valid() -> None:
    cases = _cases("tx_valid.json")
    failures = []
    for n, (tx, spent, excluded_text) in enumerate(cases):
        check_transaction(tx)
        excluded = ScriptFlags.parse(excluded_text)
        if not _scripts_pass(tx, spent, EVERY & ~excluded):
            failures.append((n, "fails", excluded_text))
            continue
        for flag in ALL_FLAGS:
            if flag in excluded:
                more = EVERY & ~(excluded & ~flag)
                if _valid_combination(more) and _scripts_pass(tx, spent, more):
                    failures.append((n, f"passes with {flag.name}", excluded_text))
    assert len(cases) > 100
    assert not failures, f"{len(failures)} of {len(cases)}: {failures[:10]}"


def test_tx_invalid() -> None:
    cases = _cases("tx_invalid.json")
    failures = []
    badtx = 0
    for n, (tx, spent, flags_text) in enumerate(cases):
        if flags_text == "BADTX":
            badtx += 1
            try:
                check_transaction(tx)
            except ConsensusError:
                continue
            failures.append((n, "passes check_transaction"))
            continue
        check_transaction(tx)
        flags = ScriptFlags.parse(flags_text)
        if _scripts_pass(tx, spent, flags):
            failures.append((n, "passes", flags_text))
            continue
        for flag in ALL_FLAGS:
            if flag in flags:
                fewer = flags & ~flag
                if _valid_combination(fewer) and not _scripts_pass(tx, spent, fewer):
                    failures.append((n, f"still fails without {flag.name}", flags_text))
    assert len(cases) > 80 and badtx > 5
    assert not failures, f"{len(failures)} of {len(cases)}: {failures[:10]}"
