"""What both port-mapping drivers (NAT-PMP, UPnP-IGD) need to know about the gateway, and their one error."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from peerloom.errors import PeerloomError


class PortMapError(PeerloomError):
    """No gateway, or the gateway refused or never answered."""


def default_gateway(route_file: Path = Path("/proc/net/route")) -> str | None:
    """The IPv4 default route's gateway on Linux (None elsewhere or without one)."""
    with contextlib.suppress(OSError):
        for line in route_file.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 2 and fields[1] == "00000000" and fields[2] != "00000000":
                return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
    return None


def local_address_towards(host: str) -> str:
    """Our own address on the interface that reaches `host` (a connected UDP socket sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((host, 9))
        return str(sock.getsockname()[0])
