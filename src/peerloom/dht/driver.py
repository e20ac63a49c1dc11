"""`Dht`: the asyncio driver of the Mainline DHT: UDP sockets around `DhtCore`, and an awaitable API.

    dht = Dht(state=node_state)  # the node's `State` (or a path: a DHT of its own, outside a node)
    await dht.start(6881, "0.0.0.0", bootstrap=[("router.example", 6881)])
    peers = await dht.get_peers(info_hash)
    await dht.close()

The driver owns one `DhtCore` per address family (IPv4, and IPv6 when asked; BEP 32 keeps the two DHTs apart) and
one UDP socket for each. It feeds every datagram to its core with `loop.time()`, sends the packets the core returns,
and keeps one `call_at` timer armed for the earliest `next_wakeup()` of its cores. Requests are futures keyed by the
request or lookup id the core hands back and resolved by its events; every wait is bounded by a timeout, and
`close` fails what is still waiting, cancels the driver's tasks and saves the routing table.

Nothing useful waits on the slowest node: a request starts at once from the table and the bootstrap addresses (it
waits only while bootstrap hostnames are being resolved and it has nowhere else to start), and `get_peers` and
`announce` hand each reply's new peers to `on_peers` as they come, long before a departed node among the closest has
timed out and the lookup is over.

A node is the first place its own announces and BEP 44 puts go: in a small DHT (a LAN, a test) the node that others
bootstrap from is often the only one near a key, and it answers from its own store like any other node would.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from peerloom.codec import bencode
from peerloom.dht.bep44 import MAX_VALUE, Item, mutable_item, mutable_target
from peerloom.dht.events import LookupDone, OtherFamilyNodes, PeersFound, QueryDone, StoreDone
from peerloom.dht.krpc import Address, ErrorMessage, Response
from peerloom.dht.lookup import LookupKind, LookupResult
from peerloom.dht.node import DEFAULT_RATE_LIMIT, QUERY_TIMEOUT, DhtBusyError, DhtCore, Packet
from peerloom.dht.persist import DhtStore
from peerloom.dht.ratelimit import RateLimit
from peerloom.dht.storage import ItemError
from peerloom.errors import PeerloomError
from peerloom.state import State, StateError

log = logging.getLogger(__name__)

PUBLIC_BOOTSTRAP: tuple[Address, ...] = (
    ("router.bittorrent.com", 6881),
    ("dht.transmissionbt.com", 6881),
    ("router.utorrent.com", 6881),
    ("dht.libtorrent.org", 25401),
)
OP_TIMEOUT = 60.0  # a lookup crosses a few hops of 5-second timeouts at worst
READY_WAIT = 10.0  # how long a request waits for somewhere to start (bootstrap hostnames being resolved)
RESOLVE_TIMEOUT = 10.0
SAVE_INTERVAL = 300.0
MAX_LOOKUPS = 32  # per family, at a time: the core refuses more than 64 and keeps some for its own refreshes
MAX_HINTS = 1024  # addresses pinged on a hint (BEP 5 PORT messages) remembered, so each is pinged once


class DhtError(PeerloomError):
    """A DHT request that failed: no answer in time, an error reply, or the DHT is closed."""


class DhtTimeoutError(DhtError):
    """A DHT request that did not end within its timeout."""


@dataclass(frozen=True, slots=True)
class AnnounceResult:
    """The peers the get_peers lookup found and how many nodes took the announce."""

    peers: list[Address]
    stored: int


@dataclass(frozen=True, slots=True)
class PutResult:
    """Where a BEP 44 item went: its target, its sequence number (mutable items) and how many nodes stored it."""

    target: bytes
    seq: int | None
    stored: int


@dataclass(frozen=True, slots=True)
class MutableItem:
    """A BEP 44 mutable item as read from the DHT, its signature verified. `value` is the decoded `v`, `raw` its
    bencoded form (what is signed)."""

    value: Any
    raw: bytes
    key: bytes
    signature: bytes
    seq: int
    salt: bytes


PeersCallback = Callable[[list[Address]], None]


class _Op:
    """A request waiting for its events: a query's `QueryDone`, a lookup's `LookupDone` (and its `PeersFound` on the
    way, for `on_peers`), then (for announce and put) the `StoreDone` that follows."""

    __slots__ = ("future", "lookup", "on_peers", "store")

    def __init__(self, future: asyncio.Future[Any], store: bool, on_peers: PeersCallback | None) -> None:
        self.future = future
        self.store = store
        self.on_peers = on_peers
        self.lookup: LookupResult | None = None


class _Endpoint(asyncio.DatagramProtocol):
    """One address family: its core, its UDP socket and the requests waiting on it."""

    def __init__(self, dht: Dht, core: DhtCore, host: str, sock: socket.socket) -> None:
        self.dht = dht
        self.core = core
        self.host = host
        self.sock = sock  # what `transport` wraps, kept for `Dht.shared_sockets` (uvloop's transport hides it)
        self.v6 = core.ipv6
        self.transport: asyncio.DatagramTransport | None = None
        self.ops: dict[int, _Op] = {}
        self.ready = asyncio.Event()  # the first bootstrap lookup is over
        self.startable = asyncio.Event()  # a lookup has nodes to start from (or will never get any by waiting)
        self.bootstrap_id: int | None = None
        self.lookups = asyncio.Semaphore(MAX_LOOKUPS)

    @property
    def name(self) -> str:
        return "ipv6" if self.v6 else "ipv4"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data[:1] != b"d" and self.dht.foreign is not None:  # not KRPC (always a bencoded dict): uTP, say
            self.dht.foreign(data, addr)
            return
        self.dht._received(self, data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("DHT %s socket: %r", self.name, exc)  # ICMP unreachable and the like: the query will time out


class Dht:
    """The DHT node of this process. `state`: the node's state database, where its `dht` schema keeps the node id
    and the routing table between runs; a path instead opens that file for this DHT alone (a DHT outside a node,
    as the `dht` command runs), closed with it; None: nothing is kept. `rate_limit` bounds the queries answered
    per source IP (None: no limit)."""

    def __init__(
        self,
        *,
        state: State | str | Path | None = None,
        node_id: bytes | None = None,
        rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
        query_timeout: float = QUERY_TIMEOUT,
        op_timeout: float = OP_TIMEOUT,
        save_interval: float = SAVE_INTERVAL,
        read_only: bool = False,
    ) -> None:
        self.state = state
        self.node_id = node_id
        self.rate_limit = rate_limit
        self.query_timeout = query_timeout
        self.op_timeout = op_timeout
        self.save_interval = save_interval
        self.read_only = read_only
        self.port = 0
        self.endpoints: list[_Endpoint] = []
        self.bootstrap_addresses: list[Address] = []
        self.internal_errors = 0
        self._store: DhtStore | None = None
        self._own_state: State | None = None  # opened from a path by this DHT, closed by it
        self._loop: asyncio.AbstractEventLoop | None = None
        # The armed timer and the moment it was armed for. The deadline is kept here, never read back from the
        # handle: uvloop's `call_at` for a moment already past returns a plain `Handle`, which has no `when()`.
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._hinted: OrderedDict[Address, None] = OrderedDict()
        self._resolving = False  # bootstrap hostnames are being resolved: the bootstrap is not over
        self._started = False
        self._closed = False
        self.foreign: Callable[[bytes, Any], None] | None = None  # see `share_socket`

    async def __aenter__(self) -> Dht:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- lifecycle -----------------------------------------------------------------------------------------------
    async def start(
        self,
        port: int = 0,
        host: str = "0.0.0.0",
        *,
        bootstrap: Iterable[Address] = (),
        host6: str | None = None,
        wait: bool = False,
        timeout: float = READY_WAIT,
    ) -> None:
        """Bind UDP `port` on `host` (and on `host6` for the IPv6 DHT), restore the saved table, and bootstrap from
        its nodes first, then from `bootstrap`. Hostnames among `bootstrap` are resolved in the background (a slow
        DNS never holds up the start); the lookup that uses them is the one requests wait for. With `wait`, return
        once the bootstrap is over (or `timeout` passed)."""
        if self._started:
            raise DhtError("the DHT is already started")
        self._started = True
        loop = self._loop = asyncio.get_running_loop()
        try:
            if isinstance(self.state, str | Path):
                self._own_state = await asyncio.to_thread(State, Path(self.state))
            state = self._own_state or self.state
            if isinstance(state, State):
                self._store = await asyncio.to_thread(DhtStore, state)
                if self.node_id is None:
                    self.node_id = await asyncio.to_thread(self._store.node_id)
            if self.node_id is None:
                self.node_id = os.urandom(20)
            for address in [host] + ([host6] if host6 else []):
                endpoint = await self._open(address, port if not self.endpoints else self.port or port)
                self.endpoints.append(endpoint)
                if not self.port:
                    self.port = endpoint.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
            v4 = [e for e in self.endpoints if not e.v6]
            v6 = [e for e in self.endpoints if e.v6]
            if v4 and v6:  # BEP 32 `want`: each family answers with the other's nodes too
                v4[0].core.other_family, v6[0].core.other_family = v6[0].core.closest_nodes, v4[0].core.closest_nodes
        except BaseException:
            await self.close()
            raise
        wanted = list(bootstrap)
        literal = [a for a in wanted if _is_ip(a[0])]
        names = [a for a in wanted if not _is_ip(a[0])]
        self._resolving = bool(names)
        self._bootstrap(literal, loop.time())
        if names:
            self._spawn(self._join(literal, names))
        if self._store is not None and self.save_interval > 0:
            self._spawn(self._save_loop())
        self._rearm()
        if wait:
            await self.wait_ready(timeout)

    def _bootstrap(self, addresses: list[Address], now: float) -> None:
        self.bootstrap_addresses = _unique(addresses)
        for endpoint in self.endpoints:
            seeds = [a for a in self.bootstrap_addresses if (":" in a[0]) == endpoint.v6]
            endpoint.bootstrap_id, packets = endpoint.core.bootstrap(seeds, now)
            if seeds or endpoint.core.table.size or not self._resolving:
                endpoint.startable.set()
            self._flush(endpoint, packets)

    async def _join(self, literal: list[Address], names: list[Address]) -> None:
        """Resolve the bootstrap hostnames, then bootstrap again with them."""
        resolved = await self.resolve(names)
        self._resolving = False
        self._bootstrap(literal + resolved, self._now())

    async def _open(self, host: str, port: int) -> _Endpoint:
        loop = self._loop
        assert loop is not None and self.node_id is not None
        v6 = ":" in host
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if v6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if not port:
                    raise DhtError(f"cannot bind the DHT to {host}: {exc.strerror}") from exc
                log.warning("DHT: UDP port %d on %s is taken (%s); using another", port, host, exc.strerror)
                sock.bind((host, 0))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        # A socket bound to loopback hears only this host's nodes (tests, a demo swarm): no per-IP limit there.
        rate_limit = None if _is_loopback(host) else self.rate_limit
        core = DhtCore(self.node_id, now=loop.time(), ipv6=v6, rate_limit=rate_limit,
                       query_timeout=self.query_timeout, read_only=self.read_only)
        if self._store is not None:
            saved = await asyncio.to_thread(self._store.load_nodes, 6 if v6 else 4)
            loaded = core.load(saved, loop.time())
            log.info("DHT %s: %d saved nodes loaded", "ipv6" if v6 else "ipv4", loaded)
        _, endpoint = await loop.create_datagram_endpoint(lambda: _Endpoint(self, core, host, sock), sock=sock)
        return endpoint

    async def wait_ready(self, timeout: float = READY_WAIT) -> bool:
        """Wait until the bootstrap lookups are over; False when `timeout` passed first."""
        try:
            async with asyncio.timeout(timeout):
                for endpoint in self.endpoints:
                    await endpoint.ready.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Fail every waiting request, stop the tasks and the sockets, and save the routing table."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for endpoint in self.endpoints:
            for op in endpoint.ops.values():
                if not op.future.done():
                    op.future.set_exception(DhtError("the DHT was closed"))
            endpoint.ops.clear()
            endpoint.ready.set()
            endpoint.startable.set()
            if endpoint.transport is not None:
                endpoint.transport.close()
        try:
            if self._store is not None:
                await asyncio.to_thread(self._save, self._store, self._snapshots())
        except StateError as exc:  # a full disk costs the saved table, never the shutdown
            log.warning("DHT: cannot save the routing table: %s", exc)
        finally:
            if self._own_state is not None:
                with contextlib.suppress(StateError):
                    await asyncio.to_thread(self._own_state.close)

    def _snapshots(self) -> list[tuple[int, list[Any]]]:
        return [(6 if e.v6 else 4, e.core.snapshot()) for e in self.endpoints]

    @staticmethod
    def _save(store: DhtStore, snapshots: list[tuple[int, list[Any]]]) -> None:
        for family, nodes in snapshots:
            if nodes:  # an empty table (all nodes lost) never overwrites the nodes we may rejoin through
                store.save_nodes(family, nodes)

    async def save(self) -> None:
        """Write the routing table to the state file now."""
        if self._store is not None and not self._closed:
            await asyncio.to_thread(self._save, self._store, self._snapshots())

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(self.save_interval)
            try:
                await self.save()
            except Exception as exc:  # a full disk must not stop the DHT
                log.warning("DHT: cannot save the routing table: %r", exc)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- moving packets ------------------------------------------------------------------------------------------
    def _received(self, endpoint: _Endpoint, data: bytes, addr: Address) -> None:
        if self._closed or self._loop is None:
            return
        try:
            packets = endpoint.core.receive(data, addr, self._loop.time())
        except Exception:  # a bug must cost one datagram, never the node
            self.internal_errors += 1
            log.exception("DHT: datagram from %s:%d broke the node", *addr)
            return
        self._flush(endpoint, packets)

    def _flush(self, endpoint: _Endpoint, packets: list[Packet]) -> None:
        """Send what the core returned, hand its events to the waiting requests, re-arm the timer."""
        transport = endpoint.transport
        if transport is not None and not transport.is_closing():
            for data, addr in packets:
                try:
                    transport.sendto(data, addr)
                except (OSError, ValueError) as exc:
                    log.debug("DHT: cannot send to %s: %r", addr, exc)
        self._dispatch(endpoint)
        self._rearm()

    def _dispatch(self, endpoint: _Endpoint) -> None:
        for event in endpoint.core.pop_events():
            if isinstance(event, PeersFound):
                op = endpoint.ops.get(event.lookup_id)
                if op is not None and op.on_peers is not None:
                    self._hand_peers(op.on_peers, event.peers)
            elif isinstance(event, QueryDone):
                op = endpoint.ops.pop(event.request_id, None)
                if op is not None and not op.future.done():
                    op.future.set_result(event.reply)
            elif isinstance(event, LookupDone):
                if event.lookup_id == endpoint.bootstrap_id:
                    endpoint.bootstrap_id = None
                    if not self._resolving:
                        endpoint.ready.set()
                    log.info("DHT %s bootstrapped: %d nodes in the table", endpoint.name, endpoint.core.table.size)
                op = endpoint.ops.get(event.lookup_id)
                if op is None:
                    continue
                op.lookup = event.result
                if not op.store:
                    del endpoint.ops[event.lookup_id]
                    if not op.future.done():
                        op.future.set_result(event.result)
            elif isinstance(event, StoreDone):
                op = endpoint.ops.pop(event.lookup_id, None)
                if op is not None and not op.future.done():
                    op.future.set_result((op.lookup, event))
            elif isinstance(event, OtherFamilyNodes):
                self._other_family_nodes(endpoint, event.nodes)

    def _other_family_nodes(self, endpoint: _Endpoint, nodes: list[Any]) -> None:
        """BEP 32: nodes of the other family, from a reply to `want`; those its table lacks are pinged into it."""
        for other in self.endpoints:
            if other is not endpoint:
                for node_id, host, port in nodes:
                    if other.core.table.find(node_id) is None:
                        self.add_node((host, port))

    def _hand_peers(self, on_peers: PeersCallback, peers: list[Address]) -> None:
        try:
            on_peers(peers)
        except Exception:  # the caller's bug must not stop the events of other requests
            self.internal_errors += 1
            log.exception("DHT: the peers callback failed")

    def _rearm(self) -> None:
        """Keep one timer armed for the earliest moment a core wants its `tick`."""
        if self._closed or self._loop is None or not self.endpoints:
            return
        when = min(endpoint.core.next_wakeup() for endpoint in self.endpoints)
        timer = self._timer
        if timer is not None:
            if self._timer_at <= when:
                return  # it fires first; it re-arms for the rest
            timer.cancel()
        self._timer = self._loop.call_at(when, self._on_timer)
        self._timer_at = when

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed or self._loop is None:
            return
        now = self._loop.time()
        for endpoint in self.endpoints:
            try:
                packets = endpoint.core.tick(now)
            except Exception:
                self.internal_errors += 1
                log.exception("DHT: tick failed")
                packets = []
            self._flush(endpoint, packets)
        self._rearm()

    # -- requests ------------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if not self._started or self._closed:
            raise DhtError("the DHT is not running")

    async def _request(
        self, endpoint: _Endpoint, start: Callable[[float], tuple[int, list[Packet]]], *, store: bool = False,
        lookup: bool = True, timeout: float | None = None, on_peers: PeersCallback | None = None,
    ) -> Any:
        """Run one core request to its end: for a lookup, wait until it has somewhere to start (not for the whole
        bootstrap: the core adds the bootstrap addresses while that runs) and take a lookup slot; start it, and wait
        for its events."""
        self._check_open()
        loop = self._loop
        assert loop is not None
        limit = self.op_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                if lookup:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(READY_WAIT, limit / 2)):
                            await endpoint.startable.wait()
                    async with endpoint.lookups:
                        return await self._start_and_wait(endpoint, start, store, on_peers)
                return await self._start_and_wait(endpoint, start, store, on_peers)
        except TimeoutError:
            raise DhtTimeoutError(f"the DHT request got no result within {limit:g} s") from None

    async def _start_and_wait(
        self, endpoint: _Endpoint, start: Callable[[float], tuple[int, list[Packet]]], store: bool,
        on_peers: PeersCallback | None,
    ) -> Any:
        self._check_open()
        assert self._loop is not None
        future: asyncio.Future[Any] = self._loop.create_future()
        try:
            request_id, packets = start(self._loop.time())
        except DhtBusyError as exc:
            raise DhtError(str(exc)) from exc
        endpoint.ops[request_id] = _Op(future, store, on_peers)
        self._flush(endpoint, packets)
        try:
            return await future
        finally:
            endpoint.ops.pop(request_id, None)

    async def _each(self, request: Callable[[_Endpoint], Any]) -> list[Any]:
        """Run `request` on every family; the results of those that succeeded (DhtError when none did)."""
        self._check_open()
        results = await asyncio.gather(*(request(e) for e in self.endpoints), return_exceptions=True)
        good = [r for r in results if not isinstance(r, BaseException)]
        if not good:
            error = results[0]
            assert isinstance(error, BaseException)
            raise error
        return good

    def share_socket(self, receive: Callable[[bytes, Any], None]) -> None:
        """Lets another protocol use the DHT's UDP port, as libtorrent runs uTP and the DHT on one socket: datagrams
        that are not KRPC (which always starts with `d`) go to `receive`. It sends on `shared_sockets()`."""
        self.foreign = receive

    def shared_sockets(self) -> dict[int, tuple[socket.socket, asyncio.DatagramTransport]]:
        """The DHT's open UDP sockets by address family, each with its transport, for the protocol that shares the
        port (`share_socket`). It sends on the socket itself and may switch an option around its own sends (uTP sets
        the don't-fragment bit for each of its datagrams and puts the DHT's mode back: a BEP 44 reply can be larger
        than a path takes, ~1750 bytes, and must leave in fragments). The sockets stay the DHT's: `close` closes
        them."""
        return {e.sock.family: (e.sock, e.transport) for e in self.endpoints
                if e.transport is not None and not e.transport.is_closing()}

    def _endpoint_for(self, addr: Address) -> _Endpoint:
        for endpoint in self.endpoints:
            if (":" in addr[0]) == endpoint.v6:
                return endpoint
        raise DhtError(f"this DHT node has no {'IPv6' if ':' in addr[0] else 'IPv4'} socket for {addr[0]}")

    async def ping(self, address: Address, *, timeout: float | None = None) -> bytes:
        """Ping a node (hostnames are resolved); returns its node id. DhtError when it does not answer."""
        self._check_open()
        resolved = [a for a in await self.resolve([address]) if any((":" in a[0]) == e.v6 for e in self.endpoints)]
        if not resolved:
            raise DhtError(f"cannot resolve {address[0]} to an address this node can reach")
        addr = resolved[0]
        endpoint = self._endpoint_for(addr)
        try:
            reply = await self._request(endpoint, lambda now: endpoint.core.ping(addr, now), lookup=False,
                                        timeout=timeout)
        except DhtTimeoutError:
            raise DhtError(f"no answer from {addr[0]}:{addr[1]} within {timeout or self.op_timeout:g} s") from None
        if isinstance(reply, Response):
            return reply.node_id
        if isinstance(reply, ErrorMessage):
            raise DhtError(f"{addr[0]}:{addr[1]} answered with error {reply.code}: {reply.message}")
        raise DhtError(f"no answer from {addr[0]}:{addr[1]}")

    def add_node(self, address: Address) -> None:
        """A hint of a DHT node (a peer's BEP 5 PORT message): ping it once, and it enters the table if it answers."""
        if self._closed or not self._started or address in self._hinted:
            return
        try:
            endpoint = self._endpoint_for(address)
        except DhtError:
            return
        self._hinted[address] = None
        if len(self._hinted) > MAX_HINTS:
            self._hinted.popitem(last=False)
        assert self._loop is not None
        _, packets = endpoint.core.ping(address, self._loop.time())
        self._flush(endpoint, packets)

    async def get_peers(
        self, info_hash: bytes, *, timeout: float | None = None, on_peers: PeersCallback | None = None
    ) -> list[Address]:
        """Peers of a swarm: a get_peers lookup on every family, with what this node stores itself. `on_peers` gets
        them as they are found (this node's own first, then each reply's new ones), before the lookup is over."""
        _check_hash(info_hash)

        async def one(endpoint: _Endpoint) -> list[Address]:
            local = self._local_peers(endpoint, info_hash, on_peers)
            result: LookupResult = await self._request(
                endpoint, lambda now: endpoint.core.start_lookup(LookupKind.GET_PEERS, info_hash, now),
                timeout=timeout, on_peers=on_peers,
            )
            return local + result.peers

        return _unique(p for peers in await self._each(one) for p in peers)

    async def announce(
        self, info_hash: bytes, port: int | None = None, *, timeout: float | None = None,
        on_peers: PeersCallback | None = None,
    ) -> AnnounceResult:
        """Announce that we are a peer of a swarm: get_peers, then announce_peer with `port` to the closest nodes
        that answered (None: the DHT socket's port, BEP 5 `implied_port`). Returns the peers found on the way;
        `on_peers` gets them as they are found, as with `get_peers`."""
        _check_hash(info_hash)

        async def one(endpoint: _Endpoint) -> tuple[list[Address], int]:
            local = self._local_peers(endpoint, info_hash, on_peers)
            result, done = await self._request(
                endpoint, lambda now: endpoint.core.announce(info_hash, now, port=port), store=True, timeout=timeout,
                on_peers=on_peers,
            )
            peers = local + result.peers
            own = self._own_address(endpoint, port or self.port)
            if own is not None:
                endpoint.core.peers.announce(info_hash, own, self._now())
            return peers, len(done.stored)

        results = await self._each(one)
        return AnnounceResult(_unique(p for peers, _ in results for p in peers), sum(n for _, n in results))

    async def put_immutable(self, value: Any, *, timeout: float | None = None) -> PutResult:
        """Store a BEP 44 immutable item (any bencodable value); its target is the SHA-1 of its encoding."""
        raw = bencode.encode(value)
        if len(raw) > MAX_VALUE:
            raise ValueError(f"a DHT item holds at most {MAX_VALUE} bencoded bytes, not {len(raw)}")
        item = Item(value=raw)
        stored = await self._put(item, None, timeout)
        return PutResult(item.target, None, stored)

    async def get_immutable(self, target: bytes, *, timeout: float | None = None) -> Any | None:
        """The value stored under `target` (checked against it), or None when no node has it."""
        _check_hash(target)
        item = await self._get(target, b"", timeout)
        return None if item is None else bencode.decode(item.value)

    async def put_mutable(
        self, private_key: Ed25519PrivateKey | bytes, value: Any, salt: bytes = b"", seq: int | None = None,
        *, timeout: float | None = None,
    ) -> PutResult:
        """Sign and store a BEP 44 mutable item under (public key, salt). Without `seq`, the item found in the DHT
        decides it (its seq + 1, or 0) and the put is a compare-and-swap against it."""
        raw = bencode.encode(value)
        if len(raw) > MAX_VALUE:
            raise ValueError(f"a DHT item holds at most {MAX_VALUE} bencoded bytes, not {len(raw)}")
        cas = None
        if seq is None:
            current = await self._get(mutable_target(public_key(private_key), salt), salt, timeout)
            seq = 0 if current is None or current.seq is None else current.seq + 1
            cas = None if current is None else current.seq
        item = mutable_item(private_key, raw, seq, salt)
        stored = await self._put(item, cas, timeout)
        return PutResult(item.target, seq, stored)

    async def get_mutable(
        self, public_key: bytes, salt: bytes = b"", *, timeout: float | None = None
    ) -> MutableItem | None:
        """The newest mutable item under (public key, salt) with a valid signature, or None."""
        if len(public_key) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        item = await self._get(mutable_target(public_key, salt), salt, timeout)
        if item is None:
            return None
        assert item.key is not None and item.signature is not None and item.seq is not None
        return MutableItem(bencode.decode(item.value), item.value, item.key, item.signature, item.seq, item.salt)

    async def _put(self, item: Item, cas: int | None, timeout: float | None) -> int:
        async def one(endpoint: _Endpoint) -> int:
            _, done = await self._request(
                endpoint, lambda now: endpoint.core.put(item, now, cas=cas), store=True, timeout=timeout
            )
            with contextlib.suppress(ItemError):
                endpoint.core.items.put(item, self._now())
            return len(done.stored)

        return sum(await self._each(one))

    async def _get(self, target: bytes, salt: bytes, timeout: float | None) -> Item | None:
        async def one(endpoint: _Endpoint) -> Item | None:
            result: LookupResult = await self._request(
                endpoint, lambda now: endpoint.core.start_lookup(LookupKind.GET, target, now, salt=salt),
                timeout=timeout,
            )
            return _newer(endpoint.core.items.get(target, self._now()), result.item)

        best: Item | None = None
        for item in await self._each(one):
            best = _newer(best, item)
        return best

    def _local_peers(self, endpoint: _Endpoint, info_hash: bytes, on_peers: PeersCallback | None) -> list[Address]:
        """Peers announced to this node itself (a lookup never asks its own node), without our own address; handed
        to `on_peers` at once."""
        own = {self._own_address(endpoint, self.port)}
        peers = [p for p in endpoint.core.peers.get(info_hash, self._now(), v6=endpoint.v6) if p not in own]
        if peers and on_peers is not None:
            self._hand_peers(on_peers, peers)
        return peers

    @staticmethod
    def _own_address(endpoint: _Endpoint, port: int) -> Address | None:
        """Where peers reach us, when the socket is bound to one address (a wildcard tells nothing)."""
        with contextlib.suppress(ValueError):
            if not ipaddress.ip_address(endpoint.host).is_unspecified:
                return endpoint.host, port
        return None

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # -- names ---------------------------------------------------------------------------------------------------
    async def resolve(self, addresses: Iterable[Address]) -> list[Address]:
        """Addresses with their hostnames resolved (each bounded by a timeout; a name that fails is left out)."""
        loop = asyncio.get_running_loop()

        async def one(host: str, port: int) -> list[Address]:
            if _is_ip(host):
                return [(host, port)]
            try:
                async with asyncio.timeout(RESOLVE_TIMEOUT):
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except (OSError, TimeoutError) as exc:
                log.info("DHT: cannot resolve %s: %r", host, exc)
                return []
            return [(str(info[4][0]), int(info[4][1])) for info in infos
                    if info[0] in (socket.AF_INET, socket.AF_INET6)]

        results = await asyncio.gather(*(one(host, port) for host, port in addresses))
        return _unique(a for found in results for a in found)

    # -- figures -------------------------------------------------------------------------------------------------
    @property
    def table_size(self) -> int:
        return sum(endpoint.core.table.size for endpoint in self.endpoints)

    def stats(self) -> dict[str, Any]:
        """This node's figures: per family, the routing table, the stores and the core's packet counters."""
        now = self._now() if self._loop is not None else 0.0
        families: dict[str, Any] = {}
        for endpoint in self.endpoints:
            core = endpoint.core
            buckets = core.table.stats(now)
            families[endpoint.name] = {
                "table_size": core.table.size,
                "buckets": len(buckets),
                "good": sum(b.good for b in buckets),
                "questionable": sum(b.questionable for b in buckets),
                "bad": sum(b.bad for b in buckets),
                "replacements": sum(b.replacements for b in buckets),
                "lookups_running": core.lookups_running,
                "pending_queries": core.pending_queries,
                "stored_swarms": len(core.peers),
                "stored_items": len(core.items),
                **core.stats.as_dict(),
            }
        return {
            "node_id": (self.node_id or b"").hex(),
            "port": self.port,
            "internal_errors": self.internal_errors,
            **families,
        }


def public_key(private_key: Ed25519PrivateKey | bytes) -> bytes:
    """The 32-byte Ed25519 public key (BEP 44 `k`) of a key object or its 32-byte seed."""
    if isinstance(private_key, bytes):
        private_key = Ed25519PrivateKey.from_private_bytes(private_key)
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_hash(value: bytes) -> None:
    if len(value) != 20:
        raise ValueError("a DHT key (info-hash, item target) is 20 bytes")


def _unique(addresses: Iterable[Address]) -> list[Address]:
    return list(dict.fromkeys(addresses))


def _newer(a: Item | None, b: Item | None) -> Item | None:
    """The item with the higher sequence number (immutable items: whichever is there)."""
    if a is None:
        return b
    if b is None:
        return a
    return b if (b.seq or 0) > (a.seq or 0) else a
