"""Multiaddr: self-describing network addresses, in text (`/ip4/1.2.3.4/tcp/4001`) and binary form.

Written from multiformats/multiaddr (README "Specification", protocols.csv). The binary form is a run of
(protocol code as an unsigned varint, value): fixed-size values are raw, variable-size ones carry a varint
length first. Only the protocols peerloom dials or announces are known; any other is refused, because a
multiaddr cannot be parsed past a component whose value size is unknown.

p2p values are PeerIds, so this module sits just above identity.py rather than beside the other codecs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from peerloom.codec.varint import VarintError, decode_varint, encode_varint
from peerloom.errors import ProtocolError
from peerloom.identity import PeerId, PeerIdError

MAX_MULTIADDR_BYTES = 1024
# The text of any binary multiaddr within MAX_MULTIADDR_BYTES must parse back: the widest spelling is
# /p2p-circuit, 12 characters for 2 bytes, so text may take 6 characters per byte.
MAX_MULTIADDR_TEXT = 6 * MAX_MULTIADDR_BYTES
MAX_DNS_NAME_BYTES = 255
_VARIABLE = -1


class MultiaddrError(ProtocolError):
    """Text or bytes that are not a valid multiaddr of the known protocols, or an address of the wrong shape."""


def _ip4_to_bytes(text: str) -> bytes:
    try:
        return ipaddress.IPv4Address(text).packed  # dotted quad only; leading zeros are refused
    except ValueError:
        raise MultiaddrError(f"invalid IPv4 address {text!r}") from None


def _ip6_to_bytes(text: str) -> bytes:
    if "%" in text:  # a zone belongs in its own /ip6zone component, which is not supported
        raise MultiaddrError(f"IPv6 address with a zone {text!r}")
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        raise MultiaddrError(f"invalid IPv6 address {text!r}") from None


def _port_to_bytes(text: str) -> bytes:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 0xFFFF:
        raise MultiaddrError(f"invalid port {text!r}")
    return int(text).to_bytes(2, "big")


def _check_dns_name(raw: bytes) -> str:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MultiaddrError("DNS name is not UTF-8") from None
    if not name or len(raw) > MAX_DNS_NAME_BYTES or "/" in name or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in name):
        raise MultiaddrError(f"invalid DNS name {name!r}")
    return name


def _dns_to_bytes(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    _check_dns_name(raw)
    return raw


def _peer_id_to_bytes(text: str) -> bytes:
    try:
        return PeerId.from_string(text).to_bytes()
    except PeerIdError as exc:
        raise MultiaddrError(f"invalid p2p value: {exc}") from None


def _peer_id_to_text(raw: bytes) -> str:
    try:
        return PeerId(raw).to_base58()
    except PeerIdError as exc:
        raise MultiaddrError(f"invalid p2p value: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Protocol:
    """One row of protocols.csv; size is in bytes, or _VARIABLE for a length-prefixed value."""

    code: int
    name: str
    size: int
    to_bytes: Callable[[str], bytes] | None = None
    to_text: Callable[[bytes], str] | None = None


_PROTOCOLS = (
    _Protocol(4, "ip4", 4, _ip4_to_bytes, lambda raw: str(ipaddress.IPv4Address(raw))),
    _Protocol(6, "tcp", 2, _port_to_bytes, lambda raw: str(int.from_bytes(raw, "big"))),
    _Protocol(273, "udp", 2, _port_to_bytes, lambda raw: str(int.from_bytes(raw, "big"))),
    _Protocol(41, "ip6", 16, _ip6_to_bytes, lambda raw: str(ipaddress.IPv6Address(raw))),
    _Protocol(53, "dns", _VARIABLE, _dns_to_bytes, _check_dns_name),
    _Protocol(54, "dns4", _VARIABLE, _dns_to_bytes, _check_dns_name),
    _Protocol(55, "dns6", _VARIABLE, _dns_to_bytes, _check_dns_name),
    _Protocol(56, "dnsaddr", _VARIABLE, _dns_to_bytes, _check_dns_name),
    _Protocol(421, "p2p", _VARIABLE, _peer_id_to_bytes, _peer_id_to_text),
    _Protocol(460, "quic", 0),
    _Protocol(461, "quic-v1", 0),
    _Protocol(477, "ws", 0),
    _Protocol(478, "wss", 0),
    _Protocol(290, "p2p-circuit", 0),
)
_BY_CODE = {protocol.code: protocol for protocol in _PROTOCOLS}
_BY_NAME = {protocol.name: protocol for protocol in _PROTOCOLS} | {"ipfs": _BY_CODE[421]}  # old name of p2p
_HOSTS = frozenset(("ip4", "ip6", "dns", "dns4", "dns6"))

_Component = tuple[_Protocol, bytes]


def _value_text(protocol: _Protocol, raw: bytes) -> str | None:
    return protocol.to_text(raw) if protocol.to_text is not None else None


def _parse_text(text: str) -> tuple[_Component, ...]:
    if len(text) > MAX_MULTIADDR_TEXT:
        raise MultiaddrError(f"multiaddr text longer than {MAX_MULTIADDR_TEXT} characters")
    if not text.startswith("/"):
        raise MultiaddrError(f"a multiaddr must start with '/': {text!r}")
    parts = text[1:].split("/")
    if parts[-1] == "":  # one trailing slash is tolerated, as go- and js-multiaddr do
        parts.pop()
    if not parts:
        raise MultiaddrError("empty multiaddr")
    components: list[_Component] = []
    index = 0
    while index < len(parts):
        name = parts[index]
        protocol = _BY_NAME.get(name)
        if protocol is None:
            raise MultiaddrError(f"unknown multiaddr protocol {name!r}")
        index += 1
        if protocol.to_bytes is None:
            components.append((protocol, b""))
            continue
        if index == len(parts):
            raise MultiaddrError(f"multiaddr protocol {name!r} needs a value")
        components.append((protocol, protocol.to_bytes(parts[index])))
        index += 1
    return tuple(components)


def _parse_bytes(data: bytes) -> tuple[_Component, ...]:
    if not data:
        raise MultiaddrError("empty multiaddr")
    components: list[_Component] = []
    pos = 0
    try:
        while pos < len(data):
            code, pos = decode_varint(data, pos)
            protocol = _BY_CODE.get(code)
            if protocol is None:
                raise MultiaddrError(f"unknown multiaddr protocol code {code}")
            size = protocol.size
            if size == _VARIABLE:
                size, pos = decode_varint(data, pos)
            if size > len(data) - pos:
                raise MultiaddrError(f"truncated multiaddr {protocol.name} value")
            raw = data[pos : pos + size]
            pos += size
            if protocol.to_text is not None:
                protocol.to_text(raw)  # validates: a DNS name, a PeerId
            components.append((protocol, raw))
    except VarintError as exc:
        raise MultiaddrError(f"malformed multiaddr: {exc}") from None
    return tuple(components)


class Multiaddr:
    """An immutable, hashable multiaddr; equal when the binary forms are equal.

    `Multiaddr("/ip4/127.0.0.1/tcp/4001")` parses text, `Multiaddr.from_bytes(...)` the binary form;
    `str()` and `bytes()` give both back in canonical form.
    """

    __slots__ = ("_bytes", "_components")

    _bytes: bytes
    _components: tuple[_Component, ...]

    def __init__(self, text: str) -> None:
        self._set(_parse_text(text))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Multiaddr:
        """Parse the binary form; MultiaddrError for anything but a complete, valid multiaddr."""
        if len(data) > MAX_MULTIADDR_BYTES:
            raise MultiaddrError(f"multiaddr longer than {MAX_MULTIADDR_BYTES} bytes")
        addr = object.__new__(cls)
        addr._set(_parse_bytes(bytes(data)))
        return addr

    @classmethod
    def _from_components(cls, components: tuple[_Component, ...]) -> Multiaddr:
        addr = object.__new__(cls)
        addr._set(components)
        return addr

    def _set(self, components: tuple[_Component, ...]) -> None:
        encoded = bytearray()
        for protocol, raw in components:
            encoded += encode_varint(protocol.code)
            if protocol.size == _VARIABLE:
                encoded += encode_varint(len(raw))
            encoded += raw
        if len(encoded) > MAX_MULTIADDR_BYTES:
            raise MultiaddrError(f"multiaddr longer than {MAX_MULTIADDR_BYTES} bytes")
        object.__setattr__(self, "_components", components)
        object.__setattr__(self, "_bytes", bytes(encoded))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Multiaddr is immutable")

    def __reduce__(self) -> tuple[Callable[[bytes], Multiaddr], tuple[bytes]]:
        return Multiaddr.from_bytes, (self._bytes,)

    def to_bytes(self) -> bytes:
        return self._bytes

    def __bytes__(self) -> bytes:
        return self._bytes

    def __str__(self) -> str:
        parts = []
        for protocol, raw in self._components:
            parts.append(protocol.name)
            value = _value_text(protocol, raw)
            if value is not None:
                parts.append(value)
        return "/" + "/".join(parts)

    def __repr__(self) -> str:
        return f"Multiaddr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Multiaddr) and self._bytes == other._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)

    @property
    def components(self) -> tuple[tuple[str, str | None], ...]:
        """(protocol name, value text or None for valueless protocols) of each component, in order."""
        return tuple((protocol.name, _value_text(protocol, raw)) for protocol, raw in self._components)

    def value_for(self, name: str) -> str | None:
        """Text value of the first component of protocol `name` ("" for a valueless one), None if absent."""
        wanted = _BY_NAME.get(name)
        if wanted is None:
            raise MultiaddrError(f"unknown multiaddr protocol {name!r}")
        for protocol, raw in self._components:
            if protocol is wanted:
                return _value_text(protocol, raw) or ""
        return None

    @property
    def peer_id(self) -> PeerId | None:
        """The PeerId of a trailing /p2p component (the peer this address reaches), else None.

        In `/…/p2p/RELAY/p2p-circuit/p2p/TARGET` it is TARGET; a relay's id in the middle is not the peer's.
        """
        if self._components and self._components[-1][0].name == "p2p":
            return PeerId(self._components[-1][1])
        return None

    def without_p2p(self) -> Multiaddr:
        """This address without its trailing /p2p component (the transport address to dial)."""
        if self.peer_id is None:
            return self
        if len(self._components) == 1:
            raise MultiaddrError("a multiaddr of only /p2p has no transport address")
        return self._from_components(self._components[:-1])

    def encapsulate(self, other: Multiaddr | str) -> Multiaddr:
        """This address followed by other (for example `/ip4/…/tcp/…` + `/p2p/…`)."""
        inner = other if isinstance(other, Multiaddr) else Multiaddr(other)
        return self._from_components(self._components + inner._components)

    def to_host_port(self) -> tuple[str, int]:
        """(host, port) of an ip4/ip6/dns/dns4/dns6 + tcp address, optionally ending in /p2p; else MultiaddrError."""
        components = self._components[:-1] if self.peer_id is not None else self._components
        if len(components) != 2 or components[0][0].name not in _HOSTS or components[1][0].name != "tcp":
            raise MultiaddrError(f"{self} is not a TCP address")
        (host_protocol, host), (_, port) = components
        return _value_text(host_protocol, host) or "", int.from_bytes(port, "big")
