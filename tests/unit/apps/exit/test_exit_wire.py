"""The exit protocol's and SOCKS5's messages: round trips, incremental parsing, bounds and typed errors."""

from __future__ import annotations

import ipaddress

import pytest

from peerloom.apps.exit.socks import (
    MAX_SOCKS_REQUEST,
    NO_ACCEPTABLE_METHOD,
    NO_AUTH,
    Command,
    choose_method,
    encode_socks_reply,
    parse_greeting,
    parse_socks_request,
)
from peerloom.apps.exit.wire import (
    MAX_REQUEST,
    Destination,
    ExitProtocolError,
    Reply,
    encode_reply,
    encode_request,
    parse_reply,
    parse_request,
)

DESTINATIONS = [Destination("93.184.216.34", 80), Destination("2001:db8::7", 443), Destination("example.org", 8080),
                Destination("a" * 255, 1), Destination("x_y-z.example", 65535)]


@pytest.mark.parametrize("dest", DESTINATIONS, ids=str)
def test_a_request_round_trips_and_is_incomplete_until_its_last_byte(dest: Destination) -> None:
    data = encode_request(dest) + b"payload"
    size = len(data) - len(b"payload")
    assert size <= MAX_REQUEST
    for cut in range(size):
        assert parse_request(data[:cut]) is None
    assert parse_request(data) == (dest, size)


def test_the_longest_request_is_max_request_bytes() -> None:
    assert len(encode_request(Destination("a" * 255, 80))) == MAX_REQUEST


@pytest.mark.parametrize("data", [
    b"\x02\x01\x7f\x00\x00\x01\x00\x50",  # another version
    b"\x01\x02\x00",  # unknown address type
    b"\x01\x03\x00\x00\x50",  # empty name
    b"\x01\x03\x03a\x00b\x00\x50",  # a NUL in the name
    b"\x01\x03\x03a b\x00\x50",  # a space
    b"\x01\x01\x01\x02\x03\x04\x00\x00",  # port 0
])
def test_malformed_requests_raise_the_typed_error(data: bytes) -> None:
    with pytest.raises(ExitProtocolError):
        parse_request(data)


def test_names_and_ports_we_would_not_send_are_refused_before_sending() -> None:
    with pytest.raises(ExitProtocolError):
        encode_request(Destination("b" * 256, 80))
    with pytest.raises(ValueError):
        encode_request(Destination("example.org", 0))
    with pytest.raises(UnicodeError):
        encode_request(Destination("exämple.org", 80))


@pytest.mark.parametrize("code", list(Reply))
def test_replies_round_trip(code: Reply) -> None:
    assert parse_reply(encode_reply(code)) is code


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01\x00\x00", b"\x02\x00", b"\x01\x09"])
def test_malformed_replies_raise_the_typed_error(data: bytes) -> None:
    with pytest.raises(ExitProtocolError):
        parse_reply(data)


def test_socks_greeting_offers_and_our_choice() -> None:
    assert parse_greeting(b"\x05") is None
    assert parse_greeting(b"\x05\x02\x00") is None
    assert parse_greeting(b"\x05\x02\x02\x00rest") == (b"\x02\x00", 4)
    assert choose_method(b"\x02\x00") == bytes((5, NO_AUTH))
    assert choose_method(b"\x02") == bytes((5, NO_ACCEPTABLE_METHOD))  # username/password only: we decline
    for bad in (b"\x04\x01\x00", b"\x05\x00"):
        with pytest.raises(ExitProtocolError):
            parse_greeting(bad)


@pytest.mark.parametrize("dest", DESTINATIONS, ids=str)
def test_socks_requests_parse_incrementally(dest: Destination) -> None:
    wire = encode_request(dest)[1:]  # the exit request's address part is SOCKS5's DST.ADDR DST.PORT
    data = b"\x05\x01\x00" + wire
    assert len(data) <= MAX_SOCKS_REQUEST
    for cut in range(len(data)):
        assert parse_socks_request(data[:cut]) is None
    assert parse_socks_request(data + b"GET /") == (Command.CONNECT, dest, len(data))


def test_socks_request_keeps_an_unknown_command_for_its_reply_and_refuses_a_bad_header() -> None:
    assert parse_socks_request(b"\x05\x09\x00\x01\x01\x02\x03\x04\x00\x50")[0] == 9  # type: ignore[index]
    for bad in (b"\x04\x01\x00", b"\x05\x01\x01\x01\x01\x02\x03\x04\x00\x50"):
        with pytest.raises(ExitProtocolError):
            parse_socks_request(bad)


def test_socks_reply_layout() -> None:
    assert encode_socks_reply(Reply.NOT_ALLOWED) == b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00"
    reply = encode_socks_reply(Reply.SUCCEEDED, Destination("::1", 1080))
    assert reply[:4] == b"\x05\x00\x00\x04" and ipaddress.ip_address(reply[4:20]) == ipaddress.ip_address("::1")
