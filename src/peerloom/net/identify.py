"""libp2p identify (`/ipfs/id/1.0.0`) and ping (`/ipfs/ping/1.0.0`) messages, sans-I/O.

Identify: the listener of the stream writes one varint-length-prefixed protobuf `Identify` message and
closes (libp2p specs, identify/README.md). Ping: the dialer writes 32 random bytes, the listener echoes
them, as many times as the dialer likes (ping/ping.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peerloom.codec.multiaddr import Multiaddr, MultiaddrError
from peerloom.codec.protobuf import ProtobufError, encode_bytes_field, iter_fields
from peerloom.errors import ProtocolError

IDENTIFY_PROTOCOL = "/ipfs/id/1.0.0"
PING_PROTOCOL = "/ipfs/ping/1.0.0"
PROTOCOL_VERSION = "ipfs/0.1.0"
PING_SIZE = 32
MAX_IDENTIFY_SIZE = 64 * 1024  # go-libp2p allows 4 KiB per signed record; 64 KiB bounds the whole message
MAX_LISTED = 128  # addresses and protocol ids kept from one message

_PUBLIC_KEY, _LISTEN_ADDRS, _PROTOCOLS, _OBSERVED_ADDR, _PROTOCOL_VERSION, _AGENT_VERSION = 1, 2, 3, 4, 5, 6


class IdentifyError(ProtocolError):
    """A malformed identify message."""


@dataclass(frozen=True)
class IdentifyInfo:
    protocol_version: str = ""
    agent_version: str = ""
    public_key: bytes = b""  # the protobuf-encoded PublicKey
    listen_addrs: list[Multiaddr] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    observed_addr: Multiaddr | None = None


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise IdentifyError(f"identify {what} is not UTF-8") from None


def encode_identify(info: IdentifyInfo) -> bytes:
    """The Identify protobuf of info; empty fields are left out (they decode as empty), so re-encoding a decoded
    message never makes it longer than it was and it stays within MAX_IDENTIFY_SIZE."""
    singles = (
        (_PROTOCOL_VERSION, info.protocol_version.encode()),
        (_AGENT_VERSION, info.agent_version.encode()),
        (_PUBLIC_KEY, info.public_key),
    )
    parts = [encode_bytes_field(number, value) for number, value in singles if value]
    parts += [encode_bytes_field(_LISTEN_ADDRS, a.to_bytes()) for a in info.listen_addrs]
    if info.observed_addr is not None:
        parts.append(encode_bytes_field(_OBSERVED_ADDR, info.observed_addr.to_bytes()))
    parts += [encode_bytes_field(_PROTOCOLS, p.encode()) for p in info.protocols]
    return b"".join(parts)


def decode_identify(data: bytes) -> IdentifyInfo:
    """Parse an identify message; addresses we cannot parse are skipped (newer transports), not fatal."""
    if len(data) > MAX_IDENTIFY_SIZE:
        raise IdentifyError(f"identify message of {len(data)} bytes")
    values: dict[str, object] = {}
    addrs: list[Multiaddr] = []
    protocols: list[str] = []
    try:
        for f in iter_fields(data):
            if f.number in (_PROTOCOL_VERSION, _AGENT_VERSION):
                values["agent_version" if f.number == _AGENT_VERSION else "protocol_version"] = _text(
                    f.as_bytes(), "version"
                )[:256]
            elif f.number == _PUBLIC_KEY:
                values["public_key"] = f.as_bytes()
            elif f.number == _LISTEN_ADDRS and len(addrs) < MAX_LISTED:
                try:
                    addrs.append(Multiaddr.from_bytes(f.as_bytes()))
                except MultiaddrError:
                    continue
            elif f.number == _OBSERVED_ADDR:
                try:
                    values["observed_addr"] = Multiaddr.from_bytes(f.as_bytes())
                except MultiaddrError:
                    continue
            elif f.number == _PROTOCOLS and len(protocols) < MAX_LISTED:
                protocols.append(_text(f.as_bytes(), "protocol id")[:256])
    except ProtobufError as exc:
        raise IdentifyError(f"malformed identify message: {exc}") from None
    return IdentifyInfo(listen_addrs=addrs, protocols=protocols, **values)  # type: ignore[arg-type]
