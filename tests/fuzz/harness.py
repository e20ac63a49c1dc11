"""The part every atheris target in tests/fuzz shares: several parsers in one fuzz binary, picked by the input's first
byte, with only the errors each may raise let through; and the atheris entry point.

A target module defines `TestOneInput` (usually a `Pick` of its parsers), optionally `seeds()` (valid inputs to
start a corpus from), and ends with `if __name__ == "__main__": harness.main(TestOneInput)`. It is run as a
script (`python tests/fuzz/fuzz_x.py`, so this folder is on sys.path), and tests/unit/test_fuzz_targets.py runs
every target without atheris.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Target = Callable[[bytes], None]
Errors = type[Exception] | tuple[type[Exception], ...]


class Pick:
    """`TestOneInput` for several targets: the first byte picks one (modulo their number), the rest is its input.

    A target given alone may raise the `allowed` errors (the typed errors of the code under test); one given as
    `(target, errors)` may raise only its own. Anything else escapes, and atheris reports it as a crash.
    """

    def __init__(self, *targets: Target | tuple[Target, Errors], allowed: Errors = ()) -> None:
        self.targets = tuple(t if isinstance(t, tuple) else (t, allowed) for t in targets)

    def __len__(self) -> int:
        return len(self.targets)

    def __call__(self, data: bytes) -> None:
        if not data:
            return
        target, allowed = self.targets[data[0] % len(self.targets)]
        try:
            target(data[1:])
        except allowed:
            pass


def main(test_one_input: Target) -> None:
    """Fuzz `test_one_input` under atheris, with the command line's corpus folders and libFuzzer options."""
    import atheris  # imported here so that collecting or importing a target never needs atheris

    atheris.instrument_all()  # coverage feedback from the (already imported) peerloom code
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
