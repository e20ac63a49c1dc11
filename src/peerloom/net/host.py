"""The peerloom peer layer's host: listens and dials over TCP, keeps one secure connection per peer,
routes incoming streams to protocol handlers, and speaks identify and ping.

    async with Host(Identity.load_or_create(home)) as host:
        await host.listen("/ip4/127.0.0.1/tcp/0")
        host.set_handler("/echo/1.0.0", echo)
        stream = await host.new_stream("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...", ["/echo/1.0.0"])

Admission is per protocol, never per connection: every peer that completes the secure handshake is served identify
and ping, and each other protocol's `admits(peer, protocol)` rule (given with its handler) decides whether that
peer may open a stream of it. A refused protocol is answered with multistream-select's `na` while identify keeps
advertising it, so a refused dialler can tell a refusal from a missing protocol: `new_stream` raises `PeerRefused`
(an `AccessRefused`) for `na` to a protocol the peer's identify lists, which callers turn into "ask its owner to
allow our key" rather than retrying for ever, and `ProtocolNotSupported` for one it does not list. libp2p has no
wire message for a refusal; this is the only signal we read as one.

Peer events (connected, identified with its protocols and addresses, disconnected) reach whoever `subscribe`s.

Relayed connections (Circuit Relay v2, `peerloom.net.relay`): `connect` dials a `/…/p2p/RELAY/p2p-circuit/p2p/PEER`
address by a hop CONNECT on a stream to the relay, and runs Noise + yamux over that stream as over TCP
(`upgrade_stream`; the stop side does the same with the stream the relay opened to it). Such a connection is
`limited`: its streams are served only for protocols set with `limited=True` (identify and ping are; js-libp2p's
`runOnLimitedConnection`), others get `na`; `new_stream` opens one over it only when asked with `limited=True`. A
direct connection to a peer replaces a relayed one (that is DCUtR's upgrade), never the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from peerloom.codec.multiaddr import Multiaddr
from peerloom.codec.varint import encode_frame, read_frame
from peerloom.errors import PeerloomError
from peerloom.identity import Identity, PeerId, encode_public_key
from peerloom.net import multistream
from peerloom.net.connection import Connection, LinkError, PeerRefused
from peerloom.net.identify import (
    IDENTIFY_PROTOCOL,
    MAX_IDENTIFY_SIZE,
    PING_PROTOCOL,
    PING_SIZE,
    PROTOCOL_VERSION,
    IdentifyInfo,
    decode_identify,
    encode_identify,
)
from peerloom.net.relay.messages import HOP_PROTOCOL
from peerloom.net.relay.wire import hop_connect
from peerloom.net.stream import Stream, StreamError, StreamTransport

log = logging.getLogger(__name__)

Handler = Callable[[Stream], Awaitable[None]]
Admission = Callable[[PeerId, str], bool]  # may this peer open a stream of this protocol?
NEGOTIATION_TIMEOUT = 10.0
DIAL_TIMEOUT = 15.0
MAX_PEER_INFO = 1024  # identify results remembered after their connection closed
PUNCH_GRACE = 5.0  # seconds an accepted socket from a punched address still takes the punch's role
REFUSAL_IDENTIFY_WAIT = 3.0  # after `na`: how long to wait for identify to say whether the protocol is advertised


class ProtocolNotSupported(LinkError):
    """The peer answered `na` to every protocol we offered on a new stream."""


@dataclass(frozen=True)
class PeerConnected:
    """A secure connection to `peer` is open (dialled or accepted)."""

    peer: PeerId
    address: tuple[str, int] | None


@dataclass(frozen=True)
class PeerIdentified:
    """`peer` answered identify: the protocols it serves and where it listens."""

    peer: PeerId
    protocols: tuple[str, ...]
    listen_addrs: tuple[Multiaddr, ...]
    agent_version: str


@dataclass(frozen=True)
class PeerDisconnected:
    """Our connection to `peer` closed (a simultaneous dial's loser does not count: the peer stays connected)."""

    peer: PeerId
    reason: str


PeerEvent = PeerConnected | PeerIdentified | PeerDisconnected


@dataclass(frozen=True)
class _Route:
    handler: Handler
    admits: Admission | None
    limited: bool  # served over limited (relayed) connections too


@dataclass
class HostLimits:
    max_connections: int = 256
    max_streams_per_connection: int = 256
    idle_timeout: float = 300.0  # a connection with no streams for this long is closed


class Host:
    """A libp2p-compatible node: TCP + Noise + yamux, identify, ping, and your protocols."""

    def __init__(
        self,
        identity: Identity,
        *,
        agent_version: str = "peerloom/0.1.0",
        limits: HostLimits | None = None,
    ) -> None:
        self.identity = identity
        self.peer_id = PeerId.from_public_key(identity.public_key)
        self.agent_version = agent_version
        self.limits = limits or HostLimits()
        self.connections: dict[PeerId, Connection] = {}
        self._pending: set[Connection] = set()
        self._dialing: dict[PeerId, asyncio.Future[Connection]] = {}
        self._routes: dict[str, _Route] = {}
        self._listeners: list[Callable[[PeerEvent], None]] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task] = set()
        self._listen_addrs: list[Multiaddr] = []
        self._punching: dict[tuple[str, int], bool] = {}  # hole punches under way: address -> our role (initiator?)
        self._trim_task: asyncio.Task | None = None
        self.peer_info: OrderedDict[PeerId, IdentifyInfo] = OrderedDict()  # what identify told us, latest last
        self.set_handler(IDENTIFY_PROTOCOL, self._answer_identify, limited=True)
        self.set_handler(PING_PROTOCOL, _answer_ping, limited=True)

    async def __aenter__(self) -> Host:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- configuration ---------------------------------------------------------------------------
    def set_handler(self, protocol: str, handler: Handler, admits: Admission | None = None, *,
                    limited: bool = False) -> None:
        """Serve `protocol` with `handler`, to the peers `admits(peer, protocol)` accepts (every peer without it),
        over limited (relayed) connections too when `limited`. A refused peer gets `na` while identify keeps listing
        the protocol (see the module docstring)."""
        self._routes[protocol] = _Route(handler, admits, limited)

    def remove_handler(self, protocol: str) -> None:
        self._routes.pop(protocol, None)

    @property
    def protocols(self) -> list[str]:
        return sorted(self._routes)

    # -- peer events -----------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[PeerEvent], None]) -> Callable[[], None]:
        """Call `listener` with each peer event from now on; returns the function that unsubscribes it.
        Listeners run on the event loop inside the host's own callbacks: they must not block."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: PeerEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("peer event listener %r failed on %r", listener, event)

    @property
    def listen_addrs(self) -> list[Multiaddr]:
        """Where we listen, each ending in our /p2p/ id (relay circuit addresses included)."""
        return [a.encapsulate(f"/p2p/{self.peer_id}") for a in self._listen_addrs]

    def add_listen_addr(self, addr: Multiaddr) -> None:
        """Announce an address we are reachable at without a socket of our own (`/…/p2p/RELAY/p2p-circuit` while
        we hold a reservation on that relay)."""
        if addr not in self._listen_addrs:
            self._listen_addrs.append(addr)

    def remove_listen_addr(self, addr: Multiaddr) -> None:
        if addr in self._listen_addrs:
            self._listen_addrs.remove(addr)

    # -- listening and dialling ------------------------------------------------------------------
    async def listen(self, addr: Multiaddr | str = "/ip4/0.0.0.0/tcp/0") -> Multiaddr:
        host, port = Multiaddr(addr).to_host_port() if isinstance(addr, str) else addr.to_host_port()
        loop = asyncio.get_running_loop()
        # SO_REUSEPORT: hole punches dial from this very port, so that the NAT's mapping for it is the one the peer
        # was told to dial (DCUtR's TCP simultaneous open)
        server = await loop.create_server(lambda: self._connection(initiator=False, role_for=self._punch_role),
                                          host, port, reuse_port=True)
        self._servers.append(server)
        bound = []
        for sock in server.sockets:
            h, p = sock.getsockname()[:2]
            bound.append(Multiaddr(f"/{'ip6' if ':' in h else 'ip4'}/{h}/tcp/{p}"))
        self._listen_addrs.extend(bound)
        if self._trim_task is None:
            self._trim_task = asyncio.create_task(self._trim_idle())
        return bound[0].encapsulate(f"/p2p/{self.peer_id}")

    async def connect(self, addr: Multiaddr | str) -> Connection:
        """A secure connection to the peer at `addr`, reusing one we have. With a /p2p/ part, the key that
        answers must be that PeerId (else PeerIdMismatch)."""
        addr = Multiaddr(addr) if isinstance(addr, str) else addr
        expected = addr.peer_id
        if expected is not None:
            existing = self.connections.get(expected)
            if existing is not None and not existing.closed:
                return existing
            dialing = self._dialing.get(expected)
            if dialing is not None:
                return await asyncio.shield(dialing)
        fut: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        if expected is not None:
            self._dialing[expected] = fut
        try:
            conn = await asyncio.wait_for(self._dial(addr, expected), DIAL_TIMEOUT)
            fut.set_result(conn)
            return conn
        except BaseException as exc:
            fut.set_exception(exc if isinstance(exc, Exception) else LinkError("dial cancelled"))
            fut.exception()
            if isinstance(exc, TimeoutError):
                raise LinkError(f"dialling {addr} timed out") from None
            raise
        finally:
            if expected is not None:
                self._dialing.pop(expected, None)

    async def _dial(self, addr: Multiaddr, expected: PeerId | None) -> Connection:
        if addr.value_for("p2p-circuit") is not None:
            return await self._dial_circuit(addr, expected)
        host, port = addr.to_host_port()
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: self._connection(initiator=True, expected_peer=expected), host, port
            )
        except OSError as exc:
            raise LinkError(f"cannot reach {addr}: {exc.strerror or exc}") from None
        await conn.ready
        return conn

    async def _dial_circuit(self, addr: Multiaddr, expected: PeerId | None) -> Connection:
        """A relayed connection: CONNECT on a hop stream to the relay, then Noise + yamux over that stream."""
        text = str(addr)
        relay_part, _, _ = text.partition("/p2p-circuit")
        if expected is None or not relay_part:
            raise LinkError(f"{addr}: a circuit address needs the relay's address before /p2p-circuit and /p2p/PEER")
        relay_addr = Multiaddr(relay_part)
        relay = relay_addr.peer_id
        if relay is None:
            raise LinkError(f"{addr}: the relay's part must end in its /p2p/ id")
        if relay in self.connections and not self.connections[relay].closed:
            stream = await self.new_stream(relay, [HOP_PROTOCOL])
        else:
            stream = await self.new_stream(relay_addr, [HOP_PROTOCOL])
        try:
            await hop_connect(stream, expected)
        except BaseException:
            stream.reset()
            raise
        return await self.upgrade_stream(stream, initiator=True, expected_peer=expected, relay=relay)

    async def upgrade_stream(self, stream: Stream, *, initiator: bool, expected_peer: PeerId | None,
                             relay: PeerId) -> Connection:
        """Run a secure connection (Noise + yamux) over `stream`, which `relay` carries: a *limited* connection.
        The dialler of the circuit is the initiator; the stop side (a relay opened the stream to us) is not."""
        conn = self._connection(initiator=initiator, expected_peer=expected_peer)
        conn.limited = True
        conn.relay = relay
        StreamTransport(stream, conn, extra={"peername": None, "sockname": None})
        await conn.ready
        return conn

    async def punch(self, addr: Multiaddr, peer: PeerId, *, initiator: bool) -> Connection:
        """One TCP dial of a hole punch (DCUtR): from our listening port to `addr`, as the secure connection's
        `initiator` or responder whichever side's SYN wins; while it runs, a socket the listener accepts from that
        address takes the same role (the peer's SYN may reach our listener first). A direct connection that opens
        replaces the relayed one (see `_opened`)."""
        host, port = addr.to_host_port()
        family = "ip6" if ":" in host else "ip4"
        own = [a for a in self._listen_addrs if a.value_for(family) is not None and a.value_for("tcp") is not None]
        if not own:
            raise LinkError(f"a hole punch to {addr} needs a listening {family} port to dial from")
        local_host, local_port = own[0].to_host_port()
        loop = asyncio.get_running_loop()
        host, port = await self.expect_punch(addr, initiator=initiator)
        sock = socket.socket(socket.AF_INET6 if family == "ip6" else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setblocking(False)
            sock.bind((local_host, local_port))
            async with asyncio.timeout(DIAL_TIMEOUT):
                await loop.sock_connect(sock, (host, port))
                _, conn = await loop.create_connection(
                    lambda: self._connection(initiator=initiator, expected_peer=peer), sock=sock)
                await conn.ready
            return conn
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise LinkError(f"hole punch to {addr} failed: {exc}") from None

    async def expect_punch(self, addr: Multiaddr, *, initiator: bool) -> tuple[str, int]:
        """From now until PUNCH_GRACE after the punch, a socket our listener accepts from `addr` (the peer's SYN
        reaching it before ours left) plays the punch's role; returns (IP, port) of `addr` (a /dns4/ name resolved).
        Call it as soon as the address is known: the peer may dial before we do."""
        host, port = addr.to_host_port()
        family = socket.AF_INET6 if ":" in host or addr.value_for("ip6") is not None else socket.AF_INET
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise LinkError(f"hole punch to {addr}: cannot resolve {host}: {exc}") from None
        key = (str(infos[0][4][0]), port)
        self._punching[key] = initiator
        asyncio.get_running_loop().call_later(
            PUNCH_GRACE + DIAL_TIMEOUT, lambda: self._punching.get(key) is initiator and self._punching.pop(key))
        return key

    def _punch_role(self, address: tuple[str, int] | None) -> bool | None:
        return self._punching.get(address) if address is not None else None

    def _connection(self, *, initiator: bool, expected_peer: PeerId | None = None,
                    role_for: Callable[[tuple[str, int] | None], bool | None] | None = None) -> Connection:
        conn = Connection(
            self.identity,
            initiator=initiator,
            expected_peer=expected_peer,
            on_open=self._opened,
            on_stream=self._incoming_stream,
            on_close=self._closed,
            max_streams=self.limits.max_streams_per_connection,
            role_for=role_for,
        )
        self._pending.add(conn)
        return conn

    def _opened(self, conn: Connection) -> bool:
        """Handshake done: admit the connection, or refuse it (not allowed, over the limit, duplicate)."""
        self._pending.discard(conn)
        peer = conn.remote_peer
        assert peer is not None
        if peer == self.peer_id:
            conn.close("connected to ourselves")
            return False
        old = self.connections.get(peer)
        if old is not None and not old.closed:
            if old.limited != conn.limited:  # a direct connection wins over a relayed one (DCUtR's upgrade)
                keep_new = old.limited
            else:  # both sides dialled at once: keep the connection dialled by the lower PeerId, on both ends
                keep_new = (conn.initiator and self.peer_id.multihash < peer.multihash) or (
                    not conn.initiator and peer.multihash < self.peer_id.multihash
                )
            if not keep_new:
                conn.close("duplicate connection")
                return False
            old.close("replaced by a simultaneous connection")
        elif len(self.connections) >= self.limits.max_connections:
            conn.close("too many connections")
            return False
        self.connections[peer] = conn
        self._emit(PeerConnected(peer, conn.remote_address))
        self._spawn(self._identify(conn))
        return True

    def _closed(self, conn: Connection) -> None:
        self._pending.discard(conn)
        if conn.remote_peer is not None and self.connections.get(conn.remote_peer) is conn:
            del self.connections[conn.remote_peer]
            self._emit(PeerDisconnected(conn.remote_peer, conn.close_reason))

    def observed_addrs(self) -> list[Multiaddr]:
        """The addresses peers told us (identify's observedAddr) they see us at over direct connections, each once."""
        seen: list[Multiaddr] = []
        for conn in self.connections.values():
            observed = getattr(conn.info, "observed_addr", None)
            if not conn.limited and observed is not None and observed not in seen:
                seen.append(observed)
        return seen

    def connection_info(self) -> list[dict[str, object]]:
        """Each open connection as JSON: the peer, direct or relayed (through which relay), who dialled, where."""
        info = []
        for peer, conn in self.connections.items():
            address = conn.remote_address
            info.append({
                "peer_id": str(peer),
                "kind": "relayed" if conn.limited else "direct",
                "relay": str(conn.relay) if conn.relay is not None else None,
                "direction": "outbound" if conn.initiator else "inbound",
                "address": f"{address[0]}:{address[1]}" if address else None,
                "streams": len(conn.streams),
            })
        return info

    # -- streams ---------------------------------------------------------------------------------
    async def new_stream(self, peer: PeerId | Multiaddr | str, protocols: Iterable[str], *,
                         limited: bool = False) -> Stream:
        """A stream to `peer` speaking the first of `protocols` it supports (multistream-select); over a limited
        (relayed) connection only when `limited` (the protocol is one that runs on them)."""
        if isinstance(peer, PeerId):
            conn = self.connections.get(peer)
            if conn is None or conn.closed:
                raise LinkError(f"not connected to {peer}; dial a multiaddr of it first")
        else:
            conn = await self.connect(peer)
        if conn.limited and not limited:
            raise LinkError(f"the connection to {conn.remote_peer} is relayed (limited): "
                            f"{', '.join(protocols)} does not run over it")
        protocols = list(protocols)
        stream = None
        try:
            stream = conn.open_stream()
            await _negotiate(stream, multistream.Dialer(protocols))
        except (PeerloomError, TimeoutError) as exc:
            if stream is not None:
                stream.reset()
            raise await self._stream_failure(conn, protocols, exc) from None
        return stream

    async def _stream_failure(self, conn: Connection, protocols: list[str], exc: Exception) -> LinkError:
        """Why a stream could not be opened. A peer refused our key (PeerRefused) when it answered `na` to a protocol
        that its identify advertises (admission per protocol): see the module docstring."""
        peer = conn.remote_peer
        if isinstance(exc, multistream.NegotiationFailed):
            assert peer is not None
            try:
                advertised = set((await self.identify(peer, REFUSAL_IDENTIFY_WAIT)).protocols)
            except LinkError:
                advertised = set()
            refused = [p for p in protocols if p in advertised]
            if refused:
                return PeerRefused(f"{peer} refused {refused[0]} to our key {self.peer_id}")
            return ProtocolNotSupported(f"{peer} supports none of {', '.join(protocols)}")
        return LinkError(f"opening a stream to {peer} failed: {exc or 'timeout'}")

    def _incoming_stream(self, stream: Stream) -> None:
        self._spawn(self._serve_stream(stream))

    def _admits(self, peer: PeerId, protocol: str, limited: bool = False) -> bool:
        """Whether `peer` may open a stream of `protocol`: identify and ping are served to every peer, each other
        protocol to the peers its own rule admits (admission per protocol, never per connection); over a `limited`
        connection, only protocols set to run on one."""
        route = self._routes.get(protocol)
        if route is None or (limited and not route.limited):
            return False
        return route.admits is None or protocol in (IDENTIFY_PROTOCOL, PING_PROTOCOL) or route.admits(peer, protocol)

    async def _serve_stream(self, stream: Stream) -> None:
        peer = stream.remote_peer
        limited = bool(getattr(stream.connection, "limited", False))
        try:
            protocol = await _negotiate(stream, multistream.Listener(lambda p: self._admits(peer, p, limited)))
        except (PeerloomError, TimeoutError) as exc:
            log.debug("negotiation on %r failed: %r", stream, exc)
            stream.reset()
            return
        route = self._routes.get(protocol)
        if route is None:
            stream.reset()
            return
        try:
            await route.handler(stream)
        except (PeerloomError, ConnectionError) as exc:
            log.debug("handler of %s ended: %r", stream.protocol, exc)
            stream.reset()
        except Exception:
            log.exception("handler of %s failed", stream.protocol)
            stream.reset()

    # -- identify and ping -----------------------------------------------------------------------
    def _identify_info(self, conn: Connection) -> IdentifyInfo:
        observed = None
        if conn.remote_address is not None:
            h, p = conn.remote_address
            observed = Multiaddr(f"/{'ip6' if ':' in h else 'ip4'}/{h}/tcp/{p}")
        return IdentifyInfo(
            protocol_version=PROTOCOL_VERSION,
            agent_version=self.agent_version,
            public_key=encode_public_key(self.identity.public_key),
            listen_addrs=list(self._listen_addrs),
            protocols=self.protocols,
            observed_addr=observed,
        )

    async def _answer_identify(self, stream: Stream) -> None:
        await stream.write(encode_frame(encode_identify(self._identify_info(stream.connection))))
        # Close only after the asker closed its side: js-libp2p (3.x) aborts the stream when our FIN comes in
        # the same read as the multistream answer and the message.
        with contextlib.suppress(TimeoutError, StreamError):
            async with asyncio.timeout(NEGOTIATION_TIMEOUT):
                while await stream.read():
                    pass
        await stream.close()

    async def _identify(self, conn: Connection) -> None:
        """Ask a new connection's peer who it is (as every libp2p node does on connect)."""
        assert conn.remote_peer is not None
        try:
            stream = await self.new_stream(conn.remote_peer, [IDENTIFY_PROTOCOL], limited=True)
            async with asyncio.timeout(NEGOTIATION_TIMEOUT):
                data = b""
                while (frame := read_frame(data, MAX_IDENTIFY_SIZE)) is None:
                    chunk = await stream.read()
                    if not chunk:
                        raise LinkError("identify stream ended early")
                    data += chunk
            await stream.close()
            info = conn.info = decode_identify(frame[0])
            self.peer_info[conn.remote_peer] = info
            self.peer_info.move_to_end(conn.remote_peer)
            while len(self.peer_info) > MAX_PEER_INFO:
                self.peer_info.popitem(last=False)
            self._emit(PeerIdentified(conn.remote_peer, tuple(info.protocols), tuple(info.listen_addrs),
                                      info.agent_version))
        except (PeerloomError, TimeoutError) as exc:
            log.debug("identify of %s failed: %r", conn.remote_peer, exc)

    async def identify(self, peer: PeerId, timeout: float = 10.0) -> IdentifyInfo:
        """What the peer told us about itself on connect (waits for it briefly; remembered after it left)."""
        deadline = time.monotonic() + timeout
        while True:
            conn = self.connections.get(peer)
            if conn is not None and conn.info is not None:
                return conn.info
            if conn is None:
                if peer in self.peer_info:
                    return self.peer_info[peer]
                raise LinkError(f"not connected to {peer}")
            if time.monotonic() > deadline:
                raise LinkError(f"{peer} did not answer identify")
            await asyncio.sleep(0.02)

    async def ping(self, peer: PeerId | Multiaddr | str, count: int = 1) -> list[float]:
        """Round trip times in seconds of `count` pings over one ping stream."""
        stream = await self.new_stream(peer, [PING_PROTOCOL], limited=True)
        rtts = []
        try:
            for _ in range(count):
                payload = os.urandom(PING_SIZE)
                start = time.perf_counter()
                await stream.write(payload)
                echo = await asyncio.wait_for(stream.readexactly(PING_SIZE), NEGOTIATION_TIMEOUT)
                if echo != payload:
                    raise LinkError("ping answered with other bytes")
                rtts.append(time.perf_counter() - start)
        finally:
            await stream.close()
        return rtts

    # -- housekeeping ----------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _trim_idle(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.limits.idle_timeout / 2))
            now = time.monotonic()
            for conn in list(self.connections.values()):
                if not conn.streams and now - conn.last_active > self.limits.idle_timeout:
                    conn.close("idle")

    async def close(self) -> None:
        if self._trim_task is not None:
            self._trim_task.cancel()
            self._tasks.add(self._trim_task)  # awaited below with the others: nothing is left running
        for server in self._servers:
            server.close()
        for conn in [*self.connections.values(), *self._pending]:
            conn.close("host shutting down")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()


async def _negotiate(stream: Stream, machine: multistream.Dialer | multistream.Listener) -> str:
    """Run multistream-select on a new stream; the agreed protocol is set on it, and bytes that came
    after the agreement are left for the protocol to read."""
    async with asyncio.timeout(NEGOTIATION_TIMEOUT):
        await stream.write(machine.initiate())
        while machine.protocol is None:
            data = await stream.read()
            if not data:
                raise LinkError("stream closed during protocol negotiation")
            reply = machine.receive(data)
            if reply:
                await stream.write(reply)
    stream.protocol = machine.protocol
    stream.unread(machine.leftover())
    return machine.protocol


async def _answer_ping(stream: Stream) -> None:
    while True:
        try:
            payload = await stream.readexactly(PING_SIZE)
        except StreamError:
            break
        await stream.write(payload)
    await stream.close()
