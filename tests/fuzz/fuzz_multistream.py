"""atheris fuzz target for multistream-select: the listener, and dialers in each mode, fed arbitrary bytes.

Run: `python tests/fuzz/fuzz_multistream.py [corpus dir] [-atheris_runs=N]`. The first input byte picks the
side; everything after it is fed in two pieces. Only MultistreamError may escape.
"""

from __future__ import annotations

import sys

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


_SIDES = (_listener, _predicate_listener, _dialer, _list_dialer, _lazy_dialer)
_FINISHED = (DialerState.DONE, DialerState.LISTED, ListenerState.DONE)


def fuzz_one_input(data: bytes) -> None:
    """One fuzz case: the first byte picks the side, the rest is what the remote sends."""
    if not data:
        return
    side = _SIDES[data[0] % len(_SIDES)]()
    body = data[1:]
    middle = len(body) // 2
    try:
        for piece in (body[:middle], body[middle:]):
            if side.state in _FINISHED:
                assert isinstance(side.leftover(), bytes)
                return
            assert isinstance(side.receive(piece), bytes)
    except MultistreamError:
        pass


def main() -> None:
    import atheris  # imported here so that collecting or importing this module never needs atheris

    atheris.instrument_all()  # coverage feedback from the (already imported) peerloom code
    atheris.Setup(sys.argv, fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
