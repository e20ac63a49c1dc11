"""atheris fuzz target for multistream-select: the listener, and dialers in each mode, fed arbitrary bytes.

Run: `python tests/fuzz/fuzz_multistream.py [corpus dir] [-atheris_runs=N]`. The first input byte picks the
side; everything after it is fed in two pieces. Only MultistreamError may escape.
"""

from __future__ import annotations

from collections.abc import Callable

import harness

from peerloom.net.multistream import Dialer, DialerState, Listener, ListenerState, MultistreamError

_PROTOCOLS = ["/noise", "/yamux/1.0.0", "/ipfs/id/1.0.0"]


def _listener() -> Listener:
    return Listener(_PROTOCOLS[:2])


def _predicate_listener() -> Listener:
    return Listener(lambda protocol: protocol.endswith("/1.0.0"), max_attempts=4)


def _dialer() -> Dialer:
    dialer = Dialer(_PROTOCOLS)
    dialer.initiate()
    return dialer


def _list_dialer() -> Dialer:
    dialer = Dialer(_PROTOCOLS, list_first=True, pipeline=False)
    dialer.initiate()
    return dialer


def _lazy_dialer() -> Dialer:
    dialer = Dialer(_PROTOCOLS[:1], lazy=True)
    dialer.initiate()
    return dialer


_FINISHED = (DialerState.DONE, DialerState.LISTED, ListenerState.DONE)


def _against(side: Callable[[], Dialer | Listener]) -> Callable[[bytes], None]:
    """A target: a fresh `side` fed what the remote sends, in two pieces."""

    def run(body: bytes) -> None:
        machine = side()
        middle = len(body) // 2
        for piece in (body[:middle], body[middle:]):
            if machine.state in _FINISHED:
                assert isinstance(machine.leftover(), bytes)
                return
            assert isinstance(machine.receive(piece), bytes)

    return run


TestOneInput = harness.Pick(
    *map(_against, (_listener, _predicate_listener, _dialer, _list_dialer, _lazy_dialer)), allowed=MultistreamError
)


if __name__ == "__main__":
    harness.main(TestOneInput)
