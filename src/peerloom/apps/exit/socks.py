"""SOCKS5's messages (RFC 1928), sans-I/O: the client's greeting and request, our method choice and reply.

    greeting = VER(5) NMETHODS(1) METHODS(NMETHODS)       ->  VER(5) METHOD(1)
    request  = VER(5) CMD(1) RSV(0) ATYP ADDRESS PORT     ->  VER(5) REP(1) RSV(0) ATYP BND.ADDR BND.PORT

Only "no authentication required" (0x00) is offered: the server listens on loopback for the local user. Of the
commands, CONNECT is served; BIND and UDP ASSOCIATE get "command not supported" (section 6, code 7). The address
encoding is `wire.parse_address`'s. Each parser answers None while the bytes are too few; a greeting is at most
2 + 255 bytes and a request at most 4 + 1 + 255 + 2, so a driver holds no more before it decides.
"""

from __future__ import annotations

from enum import IntEnum

from peerloom.apps.exit.wire import MAX_ADDRESS, Destination, ExitProtocolError, Reply, encode_address, parse_address

SOCKS_VERSION = 5
NO_AUTH = 0x00
NO_ACCEPTABLE_METHOD = 0xFF
MAX_GREETING = 2 + 255
MAX_SOCKS_REQUEST = 3 + MAX_ADDRESS + 2
_UNSPECIFIED = Destination("0.0.0.0", 0)  # BND.ADDR when there is nothing better to say


class Command(IntEnum):
    CONNECT = 1
    BIND = 2
    UDP_ASSOCIATE = 3


def parse_greeting(data: bytes | memoryview) -> tuple[bytes, int] | None:
    """The methods the client offers and the greeting's size; None while incomplete."""
    if not data:
        return None
    if data[0] != SOCKS_VERSION:
        raise ExitProtocolError(f"SOCKS version {data[0]}: only SOCKS5 is served")
    if len(data) < 2:
        return None
    count = data[1]
    if count == 0:
        raise ExitProtocolError("a SOCKS5 greeting offers no method")
    if len(data) < 2 + count:
        return None
    return bytes(data[2:2 + count]), 2 + count


def choose_method(methods: bytes) -> bytes:
    """Our answer to the greeting: no authentication if offered, else "no acceptable method" (then we close)."""
    return bytes((SOCKS_VERSION, NO_AUTH if NO_AUTH in methods else NO_ACCEPTABLE_METHOD))


def parse_socks_request(data: bytes | memoryview) -> tuple[int, Destination, int] | None:
    """The command byte, the destination and the request's size; None while incomplete. An unknown command is
    returned as it is, for the reply "command not supported"."""
    if len(data) < 3:
        if data and data[0] != SOCKS_VERSION:
            raise ExitProtocolError(f"SOCKS version {data[0]} in a request")
        return None
    if data[0] != SOCKS_VERSION or data[2] != 0:
        raise ExitProtocolError("malformed SOCKS5 request header")
    parsed = parse_address(data, 3)
    if parsed is None:
        return None
    dest, end = parsed
    return data[1], dest, end


def encode_socks_reply(code: Reply, bound: Destination | None = None) -> bytes:
    """VER REP RSV ATYP BND.ADDR BND.PORT; the bound address of the exit's side is not known here: 0.0.0.0."""
    return bytes((SOCKS_VERSION, code, 0)) + encode_address(bound or _UNSPECIFIED)
