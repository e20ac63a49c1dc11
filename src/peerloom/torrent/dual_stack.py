"""Listening sockets for the BitTorrent port: one address, or every interface over IPv4 and IPv6 alike.

A node told to listen on every interface (`0.0.0.0`, `::` or nothing) takes BitTorrent connections over both address
families on one port number, as libtorrent does with its default `0.0.0.0:6881,[::]:6881`: a growing share of
peers is reachable only over IPv6. Where the system allows it that is one IPv6 socket with IPV6_V6ONLY off (IPv4
peers then arrive as ::ffff:a.b.c.d, which `codec.compact.canonical_ip` turns back into IPv4); elsewhere (a BSD
with net.inet6.ip6.v6only locked, Windows before Vista) two sockets on the same port. A host without IPv6 at all
listens on IPv4 alone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket

log = logging.getLogger(__name__)

WILDCARDS = ("", "0.0.0.0", "::")
BACKLOG = 128
PROBE = ("2001:4860:4860::8888", 9)  # any global address: a UDP connect only asks the routing table, sends nothing


def is_wildcard(host: str) -> bool:
    """Whether `host` means every interface."""
    return host in WILDCARDS


def listen_sockets(port: int) -> list[socket.socket]:
    """Bound, listening TCP sockets on every interface at `port` (0: one free port for all of them): IPv4 and IPv6
    when the host has IPv6, IPv4 alone when it has not. OSError when the port is taken."""
    if socket.has_ipv6:
        if socket.has_dualstack_ipv6():
            with contextlib.suppress(OSError):
                return [socket.create_server(("::", port), family=socket.AF_INET6, backlog=BACKLOG,
                                             dualstack_ipv6=True)]
        v4 = socket.create_server(("0.0.0.0", port), backlog=BACKLOG)
        try:
            v6 = socket.create_server(("::", v4.getsockname()[1]), family=socket.AF_INET6, backlog=BACKLOG)
        except OSError as exc:
            log.info("BitTorrent: no IPv6 listener beside IPv4 port %d: %s", v4.getsockname()[1], exc.strerror)
            return [v4]
        return [v4, v6]
    return [socket.create_server(("0.0.0.0", port), backlog=BACKLOG)]


def families(sockets: list[socket.socket]) -> set[int]:
    """The address families that reach these listening sockets (a dual-stack IPv6 socket counts for both)."""
    out = set()
    for sock in sockets:
        out.add(sock.family)
        if sock.family == socket.AF_INET6 and not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
            out.add(socket.AF_INET)
    return out


def own_ipv6(host: str) -> str | None:
    """Our IPv6 address to tell peers (BEP 10 `ipv6`) when listening on `host`: that address itself, or on every
    interface the source address the routing table picks for the IPv6 internet (a UDP socket connected to a global
    address: no packet leaves). None when there is none worth telling: no route, a link-local or unspecified one."""
    if not is_wildcard(host):
        candidate = host
    else:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
                probe.connect(PROBE)
                candidate = probe.getsockname()[0]
        except OSError:
            return None
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if ip.version != 6 or ip.is_link_local or ip.is_unspecified or ip.ipv4_mapped is not None:
        return None
    return str(ip)
