"""atheris fuzz target for the exit's parsers: the exit request and reply, and SOCKS5's greeting and request.

Run: `python tests/fuzz/fuzz_exit.py [corpus dir] [-atheris_runs=N]`. The first input byte picks the parser. Only
ExitProtocolError may escape; a parsed request must encode back to the bytes it was parsed from.
"""

from __future__ import annotations

import harness

from peerloom.apps.exit.socks import MAX_GREETING, MAX_SOCKS_REQUEST, parse_greeting, parse_socks_request
from peerloom.apps.exit.wire import (
    MAX_REQUEST,
    Destination,
    ExitProtocolError,
    encode_request,
    parse_reply,
    parse_request,
)


def _request(data: bytes) -> None:
    parsed = parse_request(data)
    if parsed is not None:
        dest, size = parsed
        assert size <= MAX_REQUEST and isinstance(dest, Destination)
        assert encode_request(dest) == data[:size]


def _reply(data: bytes) -> None:
    parse_reply(data)


def _greeting(data: bytes) -> None:
    parsed = parse_greeting(data)
    if parsed is not None:
        assert parsed[1] <= MAX_GREETING


def _socks_request(data: bytes) -> None:
    parsed = parse_socks_request(data)
    if parsed is not None:
        assert parsed[2] <= MAX_SOCKS_REQUEST and 0 < parsed[1].port < 65536


def seeds() -> list[bytes]:
    return [
        b"\x00" + encode_request(Destination("example.org", 443)),
        b"\x00" + encode_request(Destination("2001:db8::1", 80)),
        b"\x01\x01\x00",
        b"\x02\x05\x02\x00\x02",
        b"\x03\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90",
    ]


TestOneInput = harness.Pick(_request, _reply, _greeting, _socks_request, allowed=ExitProtocolError)


if __name__ == "__main__":
    harness.main(TestOneInput)
