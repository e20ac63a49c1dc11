"""IPv6 loopback tests: whether this machine can bind ::1 (containers often cannot), the skip marker that says why,
and a node on an IPv6 address."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from support.swarm import fast_settings

from peerloom.node import Node


def no_ipv6_loopback() -> str | None:
    """Why ::1 cannot be used here (TCP and UDP), or None when it can."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        try:
            with socket.socket(socket.AF_INET6, kind) as s:
                s.bind(("::1", 0))
        except OSError as exc:
            return f"this machine cannot bind the IPv6 loopback ::1: {exc}"
    return None


needs_ipv6 = pytest.mark.skipif(no_ipv6_loopback() is not None, reason=str(no_ipv6_loopback()))


def node6(tmp: Path, name: str, host: str = "::1", **settings: object) -> Node:
    """A node on `host`; never mDNS, which a node on every interface would run on the LAN."""
    return Node(tmp / f"home-{name}", host=host, port=0, settings=fast_settings(mdns=False, **settings))
