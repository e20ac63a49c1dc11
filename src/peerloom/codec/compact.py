"""Compact peer addresses (BEP 23 / BEP 7 / BEP 11): 4- or 16-byte IP followed by a 2-byte port, and the one
canonical text form of an IP address that every table keyed by address (bans, known peers, duplicates) relies on."""

from __future__ import annotations

import ipaddress
import struct

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _canonical(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d, RFC 4291 2.5.5.2) is the IPv4 address it carries: a dual-stack
    socket reports IPv4 peers that way, and a peer must not count twice (or escape a ban) by its spelling."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def canonical_ip(host: str) -> str:
    """The canonical text of an IP address (IPv4-mapped IPv6 as IPv4, IPv6 compressed; a link-local address keeps
    its %scope, without which it cannot be dialled); anything that is not an IP address (a hostname) is returned
    unchanged."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    return str(_canonical(ip))


def canonical_address(address: tuple[str, int]) -> tuple[str, int]:
    """(host, port) with its host in canonical form (see `canonical_ip`)."""
    return canonical_ip(address[0]), address[1]


def format_address(address: tuple[str, int]) -> str:
    """`host:port`, an IPv6 host in brackets (`[::1]:6881`) so that its port stays readable."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ipv6(host: str) -> bool:
    """Whether `host` is an IPv6 address that is not IPv4-mapped (IPv4 and hostnames: False)."""
    try:
        return _canonical(ipaddress.ip_address(host)).version == 6
    except ValueError:
        return False


def packed_ip(host: str) -> bytes | None:
    """The 4 or 16 bytes of an IP address (IPv4-mapped as IPv4); None for anything else (a hostname)."""
    try:
        return _canonical(ipaddress.ip_address(host)).packed
    except ValueError:
        return None


def pack_peers(peers: list[tuple[str, int]], v6: bool) -> bytes:
    """The peers of one address family (IPv6 when `v6`) in compact form; the other family is left out. An
    IPv4-mapped address counts as IPv4."""
    out = bytearray()
    for host, port in peers:
        ip = _canonical(ipaddress.ip_address(host))
        if (ip.version == 6) == v6:
            out += ip.packed + struct.pack(">H", port)
    return bytes(out)


def unpack_peers(data: bytes, v6: bool, limit: int) -> list[tuple[str, int]]:
    """At most `limit` (ip, port) pairs, IPv4-mapped IPv6 entries given as IPv4; entries with port 0 are skipped.
    ValueError when the length is not a whole number of entries."""
    size = 18 if v6 else 6
    if len(data) % size:
        raise ValueError("compact peer list of the wrong length")
    out = []
    for i in range(0, min(len(data), size * limit), size):
        port = struct.unpack_from(">H", data, i + size - 2)[0]
        if port:
            out.append((str(_canonical(ipaddress.ip_address(data[i : i + size - 2]))), port))
    return out
