"""The socket side of TCP hole punching (DCUtR's simultaneous open), used by the host.

A punch dials from the very port we listen on (SO_REUSEPORT on both sockets), so that a port-preserving NAT maps it
to the port the peer was told to dial. Whichever SYN wins, the secure handshake's roles are DCUtR's: `PunchRoles`
remembers, per remote address being punched, whether we are the initiator, and the listener asks it for each socket
it accepts (the peer's SYN may reach our listener before ours leaves).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from peerloom.codec.multiaddr import Multiaddr
from peerloom.net.connection import Connection, LinkError

PUNCH_GRACE = 20.0  # seconds an accepted socket from a punched address still takes the punch's role


class PunchRoles:
    """Our secure-handshake role (initiator or not) for sockets from addresses being punched."""

    def __init__(self) -> None:
        self._roles: dict[tuple[str, int], bool] = {}

    async def expect(self, addr: Multiaddr, *, initiator: bool) -> tuple[str, int]:
        """From now for PUNCH_GRACE seconds, a socket accepted from `addr` plays `initiator`; returns (IP, port) of
        `addr` (a /dns4/ name resolved: the accepted socket's peer address is an IP)."""
        host, port = addr.to_host_port()
        family = socket.AF_INET6 if ":" in host or addr.value_for("ip6") is not None else socket.AF_INET
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise LinkError(f"hole punch to {addr}: cannot resolve {host}: {exc}") from None
        key = (str(infos[0][4][0]), port)
        self._roles[key] = initiator
        loop.call_later(PUNCH_GRACE, lambda: self._roles.get(key) is initiator and self._roles.pop(key))
        return key

    def role_for(self, address: tuple[str, int] | None) -> bool | None:
        """True/False for a socket from an address being punched, None for any other (the listener's default)."""
        return self._roles.get(address) if address is not None else None


async def dial_from(local: tuple[str, int], remote: tuple[str, int], factory: Callable[[], Connection],
                    timeout: float) -> Connection:
    """A secure connection dialled from `local` (our listening address) to `remote`, open within `timeout`."""
    sock = socket.socket(socket.AF_INET6 if ":" in remote[0] else socket.AF_INET, socket.SOCK_STREAM)
    loop = asyncio.get_running_loop()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(False)
        sock.bind(local)
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, remote)
            _, conn = await loop.create_connection(factory, sock=sock)
            await conn.ready
        return conn
    except (OSError, TimeoutError) as exc:
        sock.close()
        raise LinkError(f"hole punch to {remote[0]}:{remote[1]} failed: {exc}") from None
