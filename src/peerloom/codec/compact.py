"""Compact peer addresses (BEP 23 / BEP 7 / BEP 11): 4- or 16-byte IP followed by a 2-byte port."""

from __future__ import annotations

import ipaddress
import struct


def pack_peers(peers: list[tuple[str, int]], v6: bool) -> bytes:
    """The peers of one address family (IPv6 when `v6`) in compact form; the other family is left out."""
    out = bytearray()
    for host, port in peers:
        ip = ipaddress.ip_address(host)
        if (ip.version == 6) == v6:
            out += ip.packed + struct.pack(">H", port)
    return bytes(out)


def unpack_peers(data: bytes, v6: bool, limit: int) -> list[tuple[str, int]]:
    """At most `limit` (ip, port) pairs; entries with port 0 are skipped. ValueError when the length is not
    a whole number of entries."""
    size = 18 if v6 else 6
    if len(data) % size:
        raise ValueError("compact peer list of the wrong length")
    out = []
    for i in range(0, min(len(data), size * limit), size):
        port = struct.unpack_from(">H", data, i + size - 2)[0]
        if port:
            out.append((str(ipaddress.ip_address(data[i : i + size - 2])), port))
    return out
