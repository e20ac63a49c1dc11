"""Bitcoin Core's script_tests.json: every case, with its expected error (tests/data/btc/README.md names the
source); and, as script_tests.cpp's DoTest does, each again under random extra flags: a valid script stays
valid with flags taken away, an invalid one stays invalid with flags added."""

from __future__ import annotations

import random

import pytest
from support.btc_vectors import crediting_tx, load, script_test_case, spending_tx

from peerloom.apps.btc.script import ScriptError, ScriptFlags, verify_input

CASES = [case for case in (script_test_case(t) for t in load("script_tests.json")) if case is not None]


def run_script_case(script_sig, script_pubkey, witness, flags, amount) -> str:
    if flags & ScriptFlags.CLEANSTACK:
        flags |= ScriptFlags.P2SH | ScriptFlags.WITNESS  # as script_tests.cpp's DoTest does
    credit = crediting_tx(script_pubkey, amount)
    spend = spending_tx(script_sig, witness, credit)
    try:
        verify_input(spend, 0, [credit.outputs[0]], flags)
    except ScriptError as exc:
        return exc.code
    return "OK"


def test_every_script_test_case_gives_the_expected_result() -> None:
    failures = []
    for i, (script_sig, script_pubkey, witness, flags, expected, amount) in enumerate(CASES):
        got = run_script_case(script_sig, script_pubkey, witness, flags, amount)
        if got != expected:
            failures.append((i, expected, got, script_sig.hex(), script_pubkey.hex()))
    assert len(CASES) > 1200
    assert not failures, f"{len(failures)} of {len(CASES)} failed; first: {failures[:10]}"


def test_results_are_monotonic_in_the_flags() -> None:
    rng = random.Random(16)
    failures = []
    for i, (script_sig, script_pubkey, witness, flags, expected, amount) in enumerate(CASES):
        valid = expected == "OK"
        for _ in range(4):
            extra = ScriptFlags(rng.getrandbits(21))
            combined = flags & ~extra if valid else flags | extra
            if combined & ScriptFlags.CLEANSTACK and ~combined & (ScriptFlags.P2SH | ScriptFlags.WITNESS):
                continue
            if combined & ScriptFlags.WITNESS and ~combined & ScriptFlags.P2SH:
                continue
            if (run_script_case(script_sig, script_pubkey, witness, combined, amount) == "OK") != valid:
                failures.append((i, expected, combined))
    assert not failures, f"{len(failures)}: {failures[:10]}"


@pytest.mark.parametrize("flags", [ScriptFlags.NONE, ScriptFlags.MANDATORY, ScriptFlags.STANDARD])
def test_flags_round_trip_through_core_names(flags: ScriptFlags) -> None:
    names = ",".join(f.name for f in ScriptFlags if f in flags and f.name not in ("MANDATORY", "STANDARD", "NONE"))
    assert ScriptFlags.parse(names) == flags
