"""The exit protocol's messages (sans-I/O): a bounded request naming a destination, a one-byte reply code, then raw
bytes both ways on the stream.

    request  = VERSION(1) ADDRESS PORT(2, big-endian)
    reply    = VERSION(1) CODE(1)
    ADDRESS  = 0x01 IPv4(4) | 0x03 LEN(1) NAME(LEN) | 0x04 IPv6(16)

The address is SOCKS5's own encoding (RFC 1928, section 5) and the codes are SOCKS5's reply codes (section 6), so
the SOCKS server in front of a stream passes both through without translating them. `parse_address` serves both
protocols. Every parser takes the bytes received so far and answers None while they are too few; a request is at
most MAX_REQUEST bytes, so a driver never holds more than that before it decides.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum

from peerloom.errors import ProtocolError

EXIT_PROTOCOL = "/peerloom/exit/1.0.0"
VERSION = 1
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 1, 3, 4
MAX_DOMAIN = 255
MAX_ADDRESS = 1 + 1 + MAX_DOMAIN
MAX_REQUEST = 1 + MAX_ADDRESS + 2
REPLY_SIZE = 2
# a host name's bytes: letters, digits, '-', '.', '_' (seen in real DNS names); nothing else reaches the resolver
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


class ExitProtocolError(ProtocolError):
    """Bytes that are not a well-formed exit request or reply, or SOCKS5 message (the one error of this package's
    parsers: the stream or SOCKS client that sent them is dropped)."""


class Reply(IntEnum):
    """SOCKS5 reply codes (RFC 1928, section 6), used as they are by the exit protocol."""

    SUCCEEDED = 0
    GENERAL_FAILURE = 1
    NOT_ALLOWED = 2  # "connection not allowed by ruleset": the exit's policy refused the destination
    NETWORK_UNREACHABLE = 3
    HOST_UNREACHABLE = 4  # also: the name did not resolve
    CONNECTION_REFUSED = 5
    TTL_EXPIRED = 6  # also: the exit's connect timed out
    COMMAND_NOT_SUPPORTED = 7
    ADDRESS_NOT_SUPPORTED = 8


@dataclass(frozen=True)
class Destination:
    """Where a connection goes: an IP address literal or a host name, and a port (1-65535)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def encode_address(dest: Destination) -> bytes:
    """`dest` as ATYP, address and port (SOCKS5's DST.ADDR DST.PORT)."""
    if not 0 <= dest.port < 65536:
        raise ValueError(f"port out of range: {dest.port}")
    try:
        ip = ipaddress.ip_address(dest.host)
    except ValueError:
        name = dest.host.encode("ascii", "strict")
        _check_name(name)
        return bytes((ATYP_DOMAIN, len(name))) + name + struct.pack(">H", dest.port)
    atyp = ATYP_IPV4 if ip.version == 4 else ATYP_IPV6
    return bytes((atyp,)) + ip.packed + struct.pack(">H", dest.port)


def _check_name(name: bytes) -> None:
    if not name or len(name) > MAX_DOMAIN or not _NAME_BYTES.issuperset(name):
        raise ExitProtocolError("a host name is 1-255 bytes of letters, digits, '-', '.' and '_'")


def parse_address(data: bytes | memoryview, offset: int = 0) -> tuple[Destination, int] | None:
    """The ATYP/address/port at `offset` and the offset just past it; None while `data` is too short for it."""
    view = memoryview(data)
    if len(view) <= offset:
        return None
    atyp = view[offset]
    if atyp == ATYP_IPV4:
        size, start = 4, offset + 1
    elif atyp == ATYP_IPV6:
        size, start = 16, offset + 1
    elif atyp == ATYP_DOMAIN:
        if len(view) <= offset + 1:
            return None
        size, start = view[offset + 1], offset + 2  # one byte: at most 255, bounded before anything is read
        if size == 0:
            raise ExitProtocolError("empty host name")
    else:
        raise ExitProtocolError(f"unknown address type {atyp}")
    end = start + size + 2
    if len(view) < end:
        return None
    raw = bytes(view[start:start + size])
    if atyp == ATYP_DOMAIN:
        _check_name(raw)
        host = raw.decode("ascii")
    else:
        host = str(ipaddress.ip_address(raw))
    port = int.from_bytes(view[end - 2:end], "big")
    if port == 0:
        raise ExitProtocolError("port 0 is not a destination")
    return Destination(host, port), end


def encode_request(dest: Destination) -> bytes:
    if dest.port == 0:
        raise ValueError("port 0 is not a destination")
    return bytes((VERSION,)) + encode_address(dest)


def parse_request(data: bytes | memoryview) -> tuple[Destination, int] | None:
    """A request from the start of `data` and its size; None while incomplete (it never needs over MAX_REQUEST)."""
    if not data:
        return None
    if data[0] != VERSION:
        raise ExitProtocolError(f"exit protocol version {data[0]} (we speak {VERSION})")
    return parse_address(data, 1)


def encode_reply(code: Reply) -> bytes:
    return bytes((VERSION, code))


def parse_reply(data: bytes) -> Reply:
    """The exit's answer: exactly REPLY_SIZE bytes."""
    if len(data) != REPLY_SIZE or data[0] != VERSION:
        raise ExitProtocolError("malformed exit reply")
    try:
        return Reply(data[1])
    except ValueError:
        raise ExitProtocolError(f"unknown exit reply code {data[1]}") from None
