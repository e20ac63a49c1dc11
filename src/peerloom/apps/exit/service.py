"""The exit service: serves `/peerloom/exit/1.0.0` to the peers its policy allows, and opens exit streams through
other nodes for this one (the SOCKS server's side).

    exit = ExitService()                       # the node builds it; the policy comes from the settings
    exit.set_policy(ExitPolicy.build([peer]))  # or later, from the daemon's API
    stream = await exit.open(peer, Destination("example.org", 80))   # through another node's exit

Serving one stream: read the bounded request (wire.py) under a timeout, check the port, resolve the name, keep the
addresses the policy allows (policy.py: checked after resolution, connected to as resolved), connect to the first
that answers, answer a SOCKS reply code, then splice the stream and the socket (splice.py) through the peer's token
buckets. Malformed input raises ExitProtocolError, which resets that stream only. Connections are counted per peer
and role (store.py) and the counts saved when each ends. Admission is per protocol: a peer not allowed gets
multistream-select's `na` (the host's `PeerRefused` on its side), before any byte of a request is read.
The protocol is not served over limited (relayed) connections: a relay's circuit limits (js: 2 minutes, 128 KiB)
would cut any real use, and the relay would carry the exit's traffic; a client whose only link to the exit is
relayed gets "network unreachable" from its SOCKS server until a direct connection exists (DCUtR).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from peerloom.apps.exit.policy import ExitPolicy, PeerBuckets
from peerloom.apps.exit.splice import splice
from peerloom.apps.exit.store import SERVED, USED, ExitStore, Traffic
from peerloom.apps.exit.wire import (
    EXIT_PROTOCOL,
    MAX_REQUEST,
    REPLY_SIZE,
    Destination,
    ExitProtocolError,
    Reply,
    encode_reply,
    encode_request,
    parse_reply,
    parse_request,
)
from peerloom.discovery.peer_dialer import connect_peer
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.stream import Stream, StreamError
from peerloom.service import NodeContext

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0  # seconds for a request (or a reply) to arrive whole
CONNECT_TIMEOUT = 10.0  # seconds to resolve and connect to a destination
MAX_CONNECTIONS = 256  # exit connections served at once...
MAX_PER_PEER = 64  # ...and per peer
MAX_ACTIVE_SHOWN = 200  # connections listed by `status`


class ExitRefused(PeerloomError):
    """The exit answered a reply code other than success (policy, resolution or connection failure)."""

    def __init__(self, code: Reply, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ActiveConnection:
    peer: PeerId
    role: str  # SERVED (through us) or USED (through the peer)
    destination: Destination
    since: float
    traffic: Traffic = field(default_factory=Traffic)

    def as_json(self) -> dict[str, object]:
        return {"peer": str(self.peer), "role": self.role, "destination": str(self.destination),
                "since": self.since, **self.traffic.as_json()}


class ExitService:
    """Exit for the peers the policy allows; client of other nodes' exits for this one."""

    name = "exit"
    protocols = (EXIT_PROTOCOL,)

    def __init__(self, policy: ExitPolicy | None = None) -> None:
        self.policy = policy or ExitPolicy()
        self._configured = policy is not None
        self._ctx: NodeContext | None = None
        self.store: ExitStore | None = None
        self._buckets: dict[PeerId, PeerBuckets] = {}
        self._active: dict[int, ActiveConnection] = {}
        self._ids = itertools.count()
        self.refused = 0  # destinations refused by the policy since start

    # -- the service ------------------------------------------------------------------------------
    async def start(self, ctx: NodeContext) -> None:
        """The policy: the one given to the constructor, else the settings' when they allow a peer, else the one
        last saved through `set_policy(..., save=True)` (the daemon's API), else none (not an exit)."""
        self._ctx = ctx
        self.store = ExitStore(ctx.state)
        s = ctx.settings
        if self._configured:
            return
        if s.exit_allow:
            self.policy = ExitPolicy.build(s.exit_allow, s.exit_ports, allow_private=s.exit_allow_private,
                                           rate=s.exit_rate)
        elif (saved := self.store.saved_policy()) is not None:
            try:
                self.policy = ExitPolicy.from_json(saved)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("the saved exit policy is unreadable, so this node is not an exit: %s", exc)

    async def stop(self) -> None:
        if self.store is not None:
            self.store.flush()

    def admits(self, peer: PeerId, protocol: str) -> bool:
        return self.policy.admits(peer)

    def set_policy(self, policy: ExitPolicy, *, save: bool = False) -> None:
        """A new policy for new streams (connections under way keep going); rate limits apply at once. `save`
        keeps it in the state database for the next start (when the settings name no peer)."""
        if save:
            self._require_store().save_policy(policy.as_json())
        self.policy = policy
        self._configured = True
        for buckets in self._buckets.values():
            buckets.up.rate = buckets.down.rate = policy.rate

    # -- serving ----------------------------------------------------------------------------------
    async def handle(self, stream: Stream, protocol: str) -> None:
        peer = stream.remote_peer
        async with asyncio.timeout(REQUEST_TIMEOUT):
            dest, early = await _read_request(stream)
        same_peer = sum(1 for c in self._active.values() if c.peer == peer and c.role == SERVED)
        if len(self._active) >= MAX_CONNECTIONS or same_peer >= MAX_PER_PEER:
            await _answer(stream, Reply.GENERAL_FAILURE)
            return
        code, conn = await self._connect(dest)
        if conn is None:
            log.info("exit: %s asked for %s: %s", peer, dest, code.name)
            await _answer(stream, code)
            return
        reader, writer = conn
        await stream.write(encode_reply(Reply.SUCCEEDED))
        buckets = self._buckets.get(peer)
        if buckets is None:
            buckets = self._buckets[peer] = PeerBuckets()
            buckets.up.rate = buckets.down.rate = self.policy.rate
        active = ActiveConnection(peer, SERVED, dest, time.time())
        if early:  # bytes the client sent right behind its request
            writer.write(early)
            active.traffic.to_destination += len(early)
        await self._run(active, splice(stream, reader, writer, active.traffic, exit_side=True, buckets=buckets))

    async def _connect(self, dest: Destination) -> tuple[Reply, tuple[asyncio.StreamReader, asyncio.StreamWriter]
                                                         | None]:
        """Resolve, check each address against the policy, connect to the first allowed one that answers."""
        if not self.policy.port_allowed(dest.port):
            self.refused += 1
            return Reply.NOT_ALLOWED, None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                addresses = await _resolve(dest)
                allowed = [ip for ip in addresses if self.policy.address_allowed(ip)]
                if not allowed:
                    self.refused += 1
                    return (Reply.NOT_ALLOWED if addresses else Reply.HOST_UNREACHABLE), None
                code = Reply.HOST_UNREACHABLE
                for ip in allowed:
                    try:
                        return Reply.SUCCEEDED, await asyncio.open_connection(str(ip), dest.port)
                    except OSError as exc:
                        code = _reply_for(exc)
                return code, None
        except TimeoutError:
            return Reply.TTL_EXPIRED, None

    # -- using another node's exit ------------------------------------------------------------------
    async def open(self, peer: PeerId, dest: Destination) -> Stream:
        """A stream through `peer`'s exit to `dest`, after its success reply (dialling `peer` through the peer
        store if need be). ExitRefused with the exit's code, or a LinkError / PeerRefused from the host."""
        ctx = self._require()
        await connect_peer(ctx.host, ctx.peers, peer)
        stream = await ctx.host.new_stream(peer, [EXIT_PROTOCOL])
        try:
            await stream.write(encode_request(dest))
            async with asyncio.timeout(REQUEST_TIMEOUT + CONNECT_TIMEOUT):
                code = parse_reply(await stream.readexactly(REPLY_SIZE))
        except (PeerloomError, TimeoutError) as exc:
            stream.reset()
            if isinstance(exc, TimeoutError):
                raise ExitRefused(Reply.TTL_EXPIRED, f"{peer}'s exit did not answer for {dest}") from None
            if isinstance(exc, StreamError):
                raise ExitRefused(Reply.GENERAL_FAILURE, f"{peer}'s exit closed the stream: {exc}") from None
            raise
        if code is not Reply.SUCCEEDED:
            stream.reset()
            raise ExitRefused(code, f"{peer}'s exit refused {dest}: {code.name.lower().replace('_', ' ')}")
        return stream

    async def carry(self, peer: PeerId, dest: Destination, stream: Stream, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, early: bytes = b"") -> None:
        """Splice a local connection to a stream `open` returned, counting it as used through `peer`; `early` is
        what the local client sent before it was told the connection stands (sent first)."""
        active = ActiveConnection(peer, USED, dest, time.time())

        async def work() -> None:
            if early:
                await stream.write(early)
                active.traffic.to_destination += len(early)
            await splice(stream, reader, writer, active.traffic, exit_side=False)

        await self._run(active, work())

    async def _run(self, active: ActiveConnection, work: object) -> None:
        key = next(self._ids)
        self._active[key] = active
        try:
            await work  # type: ignore[misc]
        finally:
            del self._active[key]
            if self.store is not None:
                total = self.store.traffic(str(active.peer), active.role)
                total.add(active.traffic)
                total.connections += 1
                self.store.flush()

    # -- status --------------------------------------------------------------------------------------
    def status(self) -> dict[str, object]:
        return {"protocol": EXIT_PROTOCOL, "policy": self.policy.as_json(), "refused": self.refused,
                "active": [c.as_json() for c in list(self._active.values())[:MAX_ACTIVE_SHOWN]],
                "active_count": len(self._active)}

    def traffic(self) -> dict[str, dict[str, dict[str, int]]]:
        """role -> peer -> counts, saved and pending (connections under way are added when they end)."""
        store = self._require_store()
        return {role: {peer: t.as_json() for peer, t in peers.items()} for role, peers in store.totals().items()}

    def _require(self) -> NodeContext:
        if self._ctx is None:
            raise PeerloomError("the exit service has not started")
        return self._ctx

    def _require_store(self) -> ExitStore:
        if self.store is None:
            raise PeerloomError("the exit service has not started")
        return self.store


async def read_message(read: Callable[[int], Awaitable[bytes]], buf: bytearray,
                       parse: Callable[[bytearray], tuple[Any, ...] | None], limit: int, what: str) -> tuple[Any, ...]:
    """Read into `buf` (through `read(n)`: a Stream's or a StreamReader's) until `parse` finds its message, never
    holding more than `limit` bytes; the message's fields without its size. The parsed bytes are taken off the front
    of `buf`: what is left is early data the peer sent behind the message. Serves the exit request and SOCKS5's."""
    while (parsed := parse(buf)) is None:
        if len(buf) >= limit:
            raise ExitProtocolError(f"{what} too long")
        chunk = await read(limit - len(buf))
        if not chunk:
            raise ExitProtocolError(f"the connection ended inside {what}")
        buf += chunk
    del buf[:parsed[-1]]
    return parsed[:-1]


async def _read_request(stream: Stream) -> tuple[Destination, bytes]:
    """The request and any bytes read past it."""
    buf = bytearray()
    (dest,) = await read_message(stream.read, buf, parse_request, MAX_REQUEST, "an exit request")
    return dest, bytes(buf)


async def _answer(stream: Stream, code: Reply) -> None:
    await stream.write(encode_reply(code))
    await stream.close()


async def _resolve(dest: Destination) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses of `dest`, each once, in the resolver's order; [] when the name does not resolve."""
    try:
        return [ipaddress.ip_address(dest.host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(dest.host, dest.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for family, *_, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if ip not in out:
                out.append(ip)
    return out


def _reply_for(exc: OSError) -> Reply:
    """The SOCKS reply code for a failed connect (RFC 1928, section 6)."""
    if isinstance(exc, ConnectionRefusedError):
        return Reply.CONNECTION_REFUSED
    if exc.errno == errno.ENETUNREACH:
        return Reply.NETWORK_UNREACHABLE
    if exc.errno == errno.EHOSTUNREACH:
        return Reply.HOST_UNREACHABLE
    if exc.errno == errno.ETIMEDOUT:
        return Reply.TTL_EXPIRED
    return Reply.GENERAL_FAILURE
