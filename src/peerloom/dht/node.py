"""`DhtCore`: one Mainline DHT node, sans-I/O.

A driver (the asyncio UDP endpoint, or a simulator) calls `receive(data, addr, now)` for every datagram, `tick(now)`
at or after `next_wakeup()`, and the request methods (`ping`, `query`, `bootstrap`, `start_lookup`, `announce`,
`put`); each returns the packets to send as (bytes, address) pairs. Results come back as events from `pop_events()`:
`QueryDone` for a single query, `LookupDone` for a lookup (with `PeersFound` before it as get_peers replies bring
peers), `StoreDone` once an announce or put has been acknowledged (or not) by the nodes it went to. Lookups the node
runs for itself (bucket refresh) report nothing. While the table is empty or the bootstrap lookup still runs, every
lookup also starts from the bootstrap addresses (libtorrent's traversal falls back on its router nodes the same way):
a request never waits for the bootstrap to end, which a departed node among the closest would hold up for seconds.

The node answers queries (unless read-only, BEP 43), keeps its routing table from what it hears, times out its own
queries (a lookup's query still unanswered after `short_timeout` frees its slot for the next one, as in libtorrent,
and each such try brings the next, up to three), rotates write tokens, expires stored peers and items, refreshes
stale buckets and re-bootstraps an empty table. A response is matched by transaction id and must come from the
address the query went to. Malformed packets are counted and dropped; a malformed query whose transaction id could
be read gets a 203 (204 for an unknown method). `now` must never go backwards.
"""

from __future__ import annotations

import bisect
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import TypeVar

from peerloom.dht import krpc
from peerloom.dht.bep44 import Item
from peerloom.dht.events import DhtStats, Event, LookupDone, OtherFamilyNodes, PeersFound, QueryDone, StoreDone
from peerloom.dht.krpc import (
    Address,
    AnnouncePeer,
    ErrorMessage,
    FindNode,
    Get,
    GetPeers,
    KrpcError,
    NodeInfo,
    Ping,
    Put,
    Query,
    Response,
    SampleInfohashes,
)
from peerloom.dht.lookup import ALPHA, Candidate, CandidateState, Lookup, LookupKind
from peerloom.dht.ratelimit import RateLimit, RateLimiter
from peerloom.dht.routing import REPLACEMENTS, K, NodeEntry, RoutingTable, to_bytes
from peerloom.dht.storage import ItemError, ItemStore, PeerStore, TokenManager
from peerloom.errors import PeerloomError

Packet = tuple[bytes, Address]

__all__ = ["DhtBusyError", "DhtCore", "DhtStats", "Event", "LookupDone", "Packet", "PeersFound", "QueryDone",
           "StoreDone", "random_node_id"]

CLIENT_VERSION = b"PL\x00\x01"  # two letters naming the client, two bytes of version, as libtorrent does
DEFAULT_RATE_LIMIT = RateLimit()
QUERY_TIMEOUT = 5.0
# libtorrent's value: ~3x a typical DHT round trip, so it rarely fires on a node that will answer (which would cost a
# needless retry), yet a lost datagram delays a lookup by 1 s instead of 5 s. A smoothed RTT would not do better: a
# lookup's candidates are mostly nodes never heard from, whose round trips spread far wider than one average says.
SHORT_TIMEOUT = 1.0
MAINTENANCE_INTERVAL = 30.0
MAX_PENDING = 1024
MAX_LOOKUPS = 64
MAX_REFRESHES = 2  # bucket refresh lookups at a time
MAX_EVENTS = 1024
MAX_VERIFY_SENT = 4096  # ids of querying nodes we pinged to verify them, remembered to ping each once
SAMPLES_PER_REPLY = 20  # BEP 51: 400 bytes of samples leaves room for the nodes
SAMPLE_INTERVAL = 300  # BEP 51: seconds before asking this node for samples again is useful

_T = TypeVar("_T")
_first = itemgetter(0)
_SHARED_RNG = random.Random()  # for every node built without a generator of its own: a Random weighs 2.5 KB


class DhtBusyError(PeerloomError):
    """A request the node cannot take now: too many lookups running."""


class _Pending:
    """One query in flight: where it went and who waits for its answer (a lookup, a store step, or the caller)."""

    __slots__ = ("address", "cand", "deadline", "lookup", "node_id", "op", "request_id", "t")

    def __init__(self, t: bytes, address: Address, node_id: int | None, deadline: float) -> None:
        self.t = t
        self.address = address
        self.node_id = node_id
        self.deadline = deadline
        self.lookup: _LookupRun | None = None
        self.cand: Candidate | None = None
        self.op: _StoreOp | None = None
        self.request_id = 0


@dataclass(frozen=True, slots=True)
class _Announce:
    """After the get_peers lookup: announce_peer with `port` (None: `implied_port`)."""

    port: int | None


@dataclass(frozen=True, slots=True)
class _PutItem:
    """After the BEP 44 get lookup: put `item` (with `cas` to the nodes that returned it)."""

    item: Item
    cas: int | None


class _LookupRun:
    __slots__ = ("finished", "internal", "lookup", "lookup_id", "store")

    def __init__(self, lookup_id: int, lookup: Lookup, store: _Announce | _PutItem | None, internal: bool) -> None:
        self.lookup_id = lookup_id
        self.lookup = lookup
        self.store = store
        self.internal = internal
        self.finished = False


class _StoreOp:
    __slots__ = ("failed", "kind", "lookup_id", "remaining", "stored", "target")

    def __init__(self, lookup_id: int, kind: str, target: bytes) -> None:
        self.lookup_id = lookup_id
        self.kind = kind
        self.target = target
        self.remaining = 0
        self.stored: list[NodeInfo] = []
        self.failed = 0


class DhtCore:
    """One DHT node (see the module docstring). `own_id` is the 20-byte node id; `ipv6` picks the address family
    the node lives in (BEP 32 keeps the two DHTs apart); `rng` makes a simulation reproducible."""

    __slots__ = (
        "_bootstrap", "_bootstrapping", "_deadlines", "_events", "_limiter", "_lookups", "_next_id",
        "_next_maintenance", "_own", "_pending", "_slow_deadlines", "_tid", "_verify_sent", "alpha", "client_version",
        "enforce_bep42", "ipv6", "items", "k", "max_lookups", "max_pending", "node_id", "other_family", "peers",
        "query_timeout",
        "read_only", "rng", "short_timeout", "stats", "table", "tokens",
    )

    def __init__(
        self,
        own_id: bytes,
        *,
        now: float,
        read_only: bool = False,
        enforce_bep42: bool = False,
        rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
        k: int = K,
        alpha: int = ALPHA,
        ipv6: bool = False,
        rng: random.Random | None = None,
        client_version: bytes | None = CLIENT_VERSION,
        query_timeout: float = QUERY_TIMEOUT,
        short_timeout: float = SHORT_TIMEOUT,
        max_pending: int = MAX_PENDING,
        max_lookups: int = MAX_LOOKUPS,
        replacements: int = REPLACEMENTS,
    ) -> None:
        if len(own_id) != 20:
            raise ValueError("a node id is 20 bytes")
        self.node_id = own_id
        self._own = int.from_bytes(own_id, "big")
        self.rng = rng if rng is not None else _SHARED_RNG
        self.read_only = read_only
        self.enforce_bep42 = enforce_bep42
        self.k = k
        self.alpha = alpha
        self.ipv6 = ipv6
        # BEP 32: the closest nodes of the other address family's DHT, for a query whose `want` asks for them (set
        # by a driver that runs both families; None: such a request gets only our own family's nodes). When set,
        # our lookups ask for both families too, and report the other family's nodes (`OtherFamilyNodes`).
        self.other_family: Callable[[bytes], tuple[NodeInfo, ...]] | None = None
        self.client_version = client_version
        self.query_timeout = query_timeout
        self.short_timeout = short_timeout
        self.max_pending = max_pending
        self.max_lookups = max_lookups
        self.table = RoutingTable(own_id, k=k, replacements=replacements, enforce_bep42=enforce_bep42, rng=self.rng,
                                  now=now)
        # Secrets come from the OS unless a seeded rng asks for a reproducible run.
        self.tokens = TokenManager(now, randbytes=self.rng.randbytes if rng is not None else os.urandom)
        self.peers = PeerStore()
        self.items = ItemStore()
        self.stats = DhtStats()
        self._limiter = RateLimiter(rate_limit) if rate_limit is not None else None
        self._pending: dict[bytes, _Pending] = {}
        self._deadlines: list[_Pending] = []  # in send order, which is deadline order
        self._slow_deadlines: list[tuple[float, _Pending]] = []  # lookup queries' short timeouts, in send order
        self._verify_sent: set[int] = set()
        self._tid = self.rng.getrandbits(16)
        self._lookups: dict[int, _LookupRun] = {}
        self._next_id = 0
        self._events: list[Event] = []
        self._bootstrap: tuple[Address, ...] = ()
        self._bootstrapping: int | None = None  # the lookup id of the running `bootstrap`
        self._next_maintenance = now + MAINTENANCE_INTERVAL

    # -- the driver's side ---------------------------------------------------------------------------------------
    def receive(self, data: bytes, addr: Address, now: float) -> list[Packet]:
        """Handle one datagram from `addr`; returns the packets to send (answers, and queries it led to)."""
        stats = self.stats
        stats.packets_in += 1
        try:
            msg = krpc.decode(data)
        except KrpcError as exc:
            if exc.code == krpc.ERROR_METHOD_UNKNOWN:
                stats.unknown_method += 1
            else:
                stats.malformed += 1
            if exc.answerable and not self.read_only and self._allow(addr, now):
                assert exc.transaction_id is not None
                return [self._packet(ErrorMessage(t=exc.transaction_id, code=exc.code, message=str(exc), ip=addr,
                                                  client_version=self.client_version), addr)]
            return []
        if isinstance(msg, Query):
            return self._on_query(msg, addr, now)
        return self._on_reply(msg, addr, now)

    def tick(self, now: float) -> list[Packet]:
        """Time out queries and run periodic upkeep; returns the packets to send."""
        out: list[Packet] = []
        for pending in _take_due(self._deadlines, now, _deadline):
            if self._pending.get(pending.t) is pending:
                del self._pending[pending.t]
                self._on_timeout(pending, now, out)
        for _, pending in _take_due(self._slow_deadlines, now, _first):
            run = pending.lookup
            if run is not None and not run.finished:  # still unanswered (an answer clears `lookup`)
                assert pending.cand is not None
                run.lookup.on_slow(pending.cand)
                self._pump(run, now, out)
        if now >= self._next_maintenance:
            self._next_maintenance = now + MAINTENANCE_INTERVAL
            self.tokens.rotate_if_due(now)
            self.peers.expire(now)
            self.items.expire(now)
            if self._limiter is not None:
                self._limiter.prune(now)
            self._refresh(now, out)
        return out

    def next_wakeup(self) -> float:
        """The time by which `tick` should next run."""
        wakeup = self._next_maintenance
        if self._deadlines:
            wakeup = min(wakeup, self._deadlines[0].deadline)
        slow = self._slow_deadlines
        while slow:
            run = slow[0][1].lookup
            if run is not None and not run.finished:
                wakeup = min(wakeup, slow[0][0])
                break
            del slow[0]  # answered, or its lookup is over: nothing to wake up for
        return wakeup

    def pop_events(self) -> list[Event]:
        """The events since the last call (at most `MAX_EVENTS` are kept; the oldest go first)."""
        events = self._events
        self._events = []
        return events

    # -- requests ------------------------------------------------------------------------------------------------
    def query(self, msg: Query, addr: Address, now: float, *, node_id: bytes | None = None) -> tuple[int, list[Packet]]:
        """Send one query (its `t` is assigned here); a `QueryDone` with the returned request id reports the answer."""
        request_id = self._new_id()
        packet = self._send(msg, addr, now, None if node_id is None else int.from_bytes(node_id, "big"))
        if packet is None:
            self._emit(QueryDone(request_id, addr, None))
            return request_id, []
        self._pending[msg.t].request_id = request_id
        return request_id, [packet]

    def ping(self, addr: Address, now: float) -> tuple[int, list[Packet]]:
        """Ping `addr` (e.g. the DHT port a peer gave in a BEP 5 PORT message); a node that answers enters the table."""
        return self.query(Ping(t=b"", node_id=self.node_id), addr, now)

    def bootstrap(self, addrs: Iterable[Address], now: float) -> tuple[int, list[Packet]]:
        """Look up our own id from `addrs` and the table's nodes (BEP 5 start-up); the addresses are remembered to
        bootstrap again whenever the table runs empty."""
        self._bootstrap = tuple(addrs)[:64]
        self._bootstrapping, packets = self.start_lookup(LookupKind.FIND_NODE, self.node_id, now, seeds=self._bootstrap)
        return self._bootstrapping, packets

    def start_lookup(
        self, kind: LookupKind, target: bytes, now: float, *, seeds: Iterable[Address] = (), salt: bytes = b"",
        seq: int | None = None,
    ) -> tuple[int, list[Packet]]:
        """Start an iterative lookup from the table's closest nodes (and `seeds`, addresses of unknown id); a
        `LookupDone` with the returned id reports the result. DhtBusyError when too many lookups run."""
        return self._start(kind, target, now, seeds=seeds, salt=salt, seq=seq)

    def announce(self, info_hash: bytes, now: float, *, port: int | None = None) -> tuple[int, list[Packet]]:
        """get_peers for `info_hash`, then announce_peer to the closest nodes that gave a token: with `port`, or the
        source port of our packets (`implied_port`) when None. Reports `LookupDone` (with the peers found), then
        `StoreDone`."""
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        return self._start(LookupKind.GET_PEERS, info_hash, now, store=_Announce(port))

    def put(self, item: Item, now: float, *, cas: int | None = None) -> tuple[int, list[Packet]]:
        """BEP 44 get for the item's target, then put to the closest nodes that gave a token (`cas` only to those
        that returned the item). Reports `LookupDone`, then `StoreDone`."""
        return self._start(LookupKind.GET, item.target, now, salt=item.salt, store=_PutItem(item, cas))

    def snapshot(self) -> list[NodeInfo]:
        """The routing table's nodes, to persist."""
        return self.table.snapshot()

    def load(self, nodes: Iterable[NodeInfo], now: float) -> int:
        """Restore persisted nodes (they are verified by the next bootstrap lookup)."""
        return self.table.load(nodes, now)

    @property
    def lookups_running(self) -> int:
        return len(self._lookups)

    @property
    def pending_queries(self) -> int:
        return len(self._pending)

    # -- answering queries ---------------------------------------------------------------------------------------
    def _on_query(self, msg: Query, addr: Address, now: float) -> list[Packet]:
        stats = self.stats
        if self.read_only:
            stats.ignored_read_only += 1  # BEP 43: a read-only node answers nothing
            return []
        if not self._allow(addr, now):
            stats.rate_limited += 1
            return []
        method = msg.METHOD.decode()
        stats.queries_in[method] = stats.queries_in.get(method, 0) + 1
        out: list[Packet] = []
        node_id = int.from_bytes(msg.node_id, "big")
        # BEP 43: read-only nodes stay out of routing tables; BEP 32: so do nodes of the other address family.
        if not msg.read_only and node_id != self._own and self._our_family(addr):
            self._ping_all(self.table.on_query(node_id, addr, now), now, out)
            self._verify(node_id, addr, now, out)
        out.append(self._packet(self._answer(msg, addr, now), addr))
        return out

    def _answer(self, msg: Query, addr: Address, now: float) -> Response | ErrorMessage:
        if isinstance(msg, Ping):
            return self._response(msg, addr)
        if isinstance(msg, FindNode):
            return self._response(msg, addr, **self._nodes(msg.target, msg.want))
        if isinstance(msg, GetPeers):
            values = self.peers.get(msg.info_hash, now, v6=":" in addr[0], rng=self.rng)
            return self._response(msg, addr, token=self.tokens.make(addr[0], now), values=tuple(values),
                                  **self._nodes(msg.info_hash, msg.want))
        if isinstance(msg, AnnouncePeer):
            return self._on_announce(msg, addr, now)
        if isinstance(msg, Get):
            return self._on_get(msg, addr, now)
        if isinstance(msg, Put):
            return self._on_put(msg, addr, now)
        assert isinstance(msg, SampleInfohashes)
        return self._response(msg, addr, samples=tuple(self.peers.sample(SAMPLES_PER_REPLY, self.rng)),
                              interval=SAMPLE_INTERVAL, num=len(self.peers), **self._nodes(msg.target))

    def _on_announce(self, msg: AnnouncePeer, addr: Address, now: float) -> Response | ErrorMessage:
        if not self.tokens.check(msg.token, addr[0], now):
            return self._error(msg, addr, krpc.ERROR_PROTOCOL, "bad token")
        port = addr[1] if msg.implied_port else msg.port
        if not 0 < port < 65536:
            return self._error(msg, addr, krpc.ERROR_PROTOCOL, "bad port")
        self.peers.announce(msg.info_hash, (addr[0], port), now)
        return self._response(msg, addr)

    def _on_get(self, msg: Get, addr: Address, now: float) -> Response:
        fields = self._nodes(msg.target)
        item = self.items.get(msg.target, now)
        if item is not None:
            if item.key is None:
                fields["value"] = item.value
            else:
                fields["seq"] = item.seq
                if msg.seq is None or (item.seq or 0) > msg.seq:  # BEP 44: only newer items are sent
                    fields.update(value=item.value, key=item.key, signature=item.signature)
        return self._response(msg, addr, token=self.tokens.make(addr[0], now), **fields)

    def _on_put(self, msg: Put, addr: Address, now: float) -> Response | ErrorMessage:
        if not self.tokens.check(msg.token, addr[0], now):
            return self._error(msg, addr, krpc.ERROR_PROTOCOL, "bad token")
        item = Item(value=msg.value, key=msg.key, signature=msg.signature, seq=msg.seq, salt=msg.salt)
        try:
            self.items.put(item, now, cas=msg.cas)
        except ItemError as exc:
            return self._error(msg, addr, exc.code, str(exc))
        return self._response(msg, addr)

    def closest_nodes(self, target: bytes) -> tuple[NodeInfo, ...]:
        """The k closest verified nodes of our table to `target`, as sent in `nodes`/`nodes6`."""
        return tuple(entry.info() for entry in self.table.closest(target, self.k, verified_only=True))

    def _nodes(self, target: bytes, want: tuple[bytes, ...] = ()) -> dict[str, object]:
        """The `nodes`/`nodes6` of a reply. BEP 32: without `want`, those of the family the query came over (ours);
        with it, each family it names that this node knows (n4: `nodes`, n6: `nodes6`)."""
        own, other = ("nodes6", "nodes") if self.ipv6 else ("nodes", "nodes6")
        families = {b"n6": "nodes6", b"n4": "nodes"}
        asked = {families[w] for w in want if w in families} or {own}
        fields: dict[str, object] = {}
        if own in asked:
            fields[own] = self.closest_nodes(target)
        if other in asked and self.other_family is not None:
            fields[other] = self.other_family(target)
        return fields

    def _response(self, msg: Query, addr: Address, **fields: object) -> Response:
        return Response(t=msg.t, node_id=self.node_id, ip=addr, client_version=self.client_version,
                        **fields)  # type: ignore[arg-type]

    def _error(self, msg: Query, addr: Address, code: int, text: str) -> ErrorMessage:
        return ErrorMessage(t=msg.t, code=code, message=text, ip=addr, client_version=self.client_version)

    # -- answers to our queries ----------------------------------------------------------------------------------
    def _on_reply(self, msg: Response | ErrorMessage, addr: Address, now: float) -> list[Packet]:
        stats = self.stats
        pending = self._pending.get(msg.t)
        if pending is None:
            stats.unexpected += 1
            return []
        if pending.address != addr:
            stats.wrong_source += 1  # maybe spoofed: the real answer may still come
            return []
        del self._pending[msg.t]
        run, op, cand = pending.lookup, pending.op, pending.cand
        pending.lookup = pending.op = pending.cand = None  # the husk waits in the deadline list; keep it small
        out: list[Packet] = []
        if isinstance(msg, Response):
            stats.responses_in += 1
            node_id = int.from_bytes(msg.node_id, "big")
            if pending.node_id is not None and pending.node_id != node_id:
                self.table.on_failure(pending.node_id, now)  # the node we knew at this address is gone
            if node_id != self._own and self._our_family(addr):
                self._ping_all(self.table.on_response(node_id, addr, now), now, out)
        else:
            stats.errors_in += 1
        if run is not None:
            if not run.finished:
                assert cand is not None
                if isinstance(msg, Response):
                    fresh = run.lookup.on_response(cand, msg, now)
                    if fresh and not run.internal:
                        self._emit(PeersFound(run.lookup_id, fresh))
                    other = msg.nodes if self.ipv6 else msg.nodes6
                    if other and self.other_family is not None:
                        self._emit(OtherFamilyNodes(list(other)))
                else:
                    run.lookup.on_error(cand, now)
                self._pump(run, now, out)
        elif op is not None:
            if isinstance(msg, Response) and cand is not None:
                op.stored.append(cand.info())
            else:
                op.failed += 1
            self._store_step(op)
        elif pending.request_id:
            self._emit(QueryDone(pending.request_id, addr, msg))
        return out

    def _on_timeout(self, pending: _Pending, now: float, out: list[Packet]) -> None:
        self.stats.timeouts += 1
        run, op = pending.lookup, pending.op
        # A lookup's retry that was answered shows this query was a lost datagram, not a node gone.
        answered = run is not None and pending.cand is not None and pending.cand.state is CandidateState.RESPONDED
        if pending.node_id is not None and not answered:
            self.table.on_failure(pending.node_id, now)
        if run is not None:
            if not run.finished:
                assert pending.cand is not None
                run.lookup.on_timeout(pending.cand, now)
                self._pump(run, now, out)
        elif op is not None:
            op.failed += 1
            self._store_step(op)
        elif pending.request_id:
            self._emit(QueryDone(pending.request_id, pending.address, None))

    # -- lookups -------------------------------------------------------------------------------------------------
    def _start(
        self, kind: LookupKind, target: bytes, now: float, *, seeds: Iterable[Address] = (), salt: bytes = b"",
        seq: int | None = None, store: _Announce | _PutItem | None = None, internal: bool = False,
    ) -> tuple[int, list[Packet]]:
        if len(target) != 20:
            raise ValueError("a lookup target is 20 bytes")
        if len(self._lookups) >= self.max_lookups:
            raise DhtBusyError(f"{len(self._lookups)} DHT lookups are already running")
        start: list[tuple[int | None, Address]] = [
            (entry.id, entry.address) for entry in self.table.closest(target, self.k * 2)
        ]
        seeds = tuple(seeds)
        if not seeds and (not start or self._bootstrapping in self._lookups):
            # Their ids are unknown, so they sort after every known node: asked only while fewer than k are alive.
            seeds = self._bootstrap
        start += [(None, addr) for addr in seeds]
        # A plain get (no put after it) may end at the first immutable item; a put needs the closest nodes.
        lookup = Lookup(target, kind, start, own_id=self.node_id, now=now, alpha=self.alpha, k=self.k,
                        read_only=self.read_only, v6=self.ipv6, enforce_bep42=self.enforce_bep42, salt=salt, seq=seq,
                        until_item=kind is LookupKind.GET and store is None,
                        want=(b"n4", b"n6") if self.other_family is not None else ())
        run = _LookupRun(self._new_id(), lookup, store, internal)
        self._lookups[run.lookup_id] = run
        out: list[Packet] = []
        self._pump(run, now, out)
        return run.lookup_id, out

    def _pump(self, run: _LookupRun, now: float, out: list[Packet]) -> None:
        """Send what the lookup wants sent; finish it when it is done."""
        lookup = run.lookup
        while not lookup.done:
            batch = lookup.next_queries(now)
            if not batch:
                break
            for cand, query in batch:
                packet = self._send(query, cand.address, now, cand.id)
                if packet is None:
                    lookup.on_timeout(cand, now)
                    continue
                pending = self._pending[query.t]
                pending.lookup = run
                pending.cand = cand
                if cand.state in _ASKED and self.short_timeout < self.query_timeout:
                    self._slow_deadlines.append((now + self.short_timeout, pending))  # each try brings the next
                out.append(packet)
        if lookup.done and not run.finished:
            self._finish(run, now, out)

    def _finish(self, run: _LookupRun, now: float, out: list[Packet]) -> None:
        run.finished = True
        del self._lookups[run.lookup_id]
        lookup = run.lookup
        if not run.internal:
            self._emit(LookupDone(run.lookup_id, lookup.result()))
        step = run.store
        if step is None:
            return
        op = _StoreOp(run.lookup_id, "announce_peer" if isinstance(step, _Announce) else "put", lookup.target)
        for cand in lookup.store_targets():
            assert cand.token is not None
            query: Query
            if isinstance(step, _Announce):
                query = AnnouncePeer(t=b"", node_id=self.node_id, info_hash=lookup.target, token=cand.token,
                                     port=step.port or 0, implied_port=step.port is None)
            else:
                item = step.item
                cas = step.cas if lookup.returned_item(cand) else None  # BEP 44: no cas to nodes without the item
                query = Put(t=b"", node_id=self.node_id, token=cand.token, value=item.value, key=item.key,
                            signature=item.signature, seq=item.seq, salt=item.salt, cas=cas)
            packet = self._send(query, cand.address, now, cand.id)
            if packet is None:
                op.failed += 1
                continue
            pending = self._pending[query.t]
            pending.op = op
            pending.cand = cand
            op.remaining += 1
            out.append(packet)
        if op.remaining == 0:
            self._emit(StoreDone(op.lookup_id, op.kind, op.target, op.stored, op.failed))

    def _store_step(self, op: _StoreOp) -> None:
        op.remaining -= 1
        if op.remaining == 0:
            self._emit(StoreDone(op.lookup_id, op.kind, op.target, op.stored, op.failed))

    def _refresh(self, now: float, out: list[Packet]) -> None:
        """Refresh stale buckets (BEP 5), or bootstrap again when the table is empty."""
        running = sum(1 for run in self._lookups.values() if run.internal)
        room = min(MAX_REFRESHES - running, self.max_lookups - len(self._lookups))
        if room <= 0:
            return
        if self.table.size == 0:
            if self._bootstrap:
                out += self._start(LookupKind.FIND_NODE, self.node_id, now, seeds=self._bootstrap, internal=True)[1]
            return
        for target in self.table.stale_buckets(now, room):
            out += self._start(LookupKind.FIND_NODE, target, now, internal=True)[1]

    # -- sending -------------------------------------------------------------------------------------------------
    def _send(self, msg: Query, addr: Address, now: float, node_id: int | None) -> Packet | None:
        """Give `msg` a transaction id, remember it as pending, and encode it; None when too many are pending."""
        if len(self._pending) >= self.max_pending:
            self.stats.send_failures += 1
            return None
        while True:
            self._tid = (self._tid + 1) & 0xFFFF
            t = self._tid.to_bytes(2, "big")
            if t not in self._pending:
                break
        msg.t = t
        msg.read_only = self.read_only
        msg.client_version = self.client_version
        pending = _Pending(t, addr, node_id, now + self.query_timeout)
        self._pending[t] = pending
        self._deadlines.append(pending)
        return self._packet(msg, addr)

    def _verify(self, node_id: int, addr: Address, now: float, out: list[Packet]) -> None:
        """Ping a node we know only because it queried us: until it answers one of our queries we never hand
        it out, so without this a newcomer stays invisible until a bucket refresh happens to reach it."""
        entry = self.table.find(node_id)
        if entry is None or entry.responded or node_id in self._verify_sent:
            return
        if len(self._verify_sent) >= MAX_VERIFY_SENT:
            self._verify_sent.clear()  # only a de-duplication memory: forgetting costs at most a repeated ping
        self._verify_sent.add(node_id)
        packet = self._send(Ping(t=b"", node_id=self.node_id), addr, now, node_id)
        if packet is not None:
            out.append(packet)

    def _ping_all(self, entries: list[NodeEntry], now: float, out: list[Packet]) -> None:
        """Ping before evict: the table handed us questionable nodes to check."""
        for entry in entries:
            packet = self._send(Ping(t=b"", node_id=self.node_id), entry.address, now, entry.id)
            if packet is None:
                self.table.ping_abandoned(entry)
            else:
                out.append(packet)

    def _packet(self, msg: krpc.Message, addr: Address) -> Packet:
        self.stats.packets_out += 1
        return krpc.encode(msg), addr

    def _our_family(self, addr: Address) -> bool:
        return (":" in addr[0]) == self.ipv6

    def _allow(self, addr: Address, now: float) -> bool:
        return self._limiter is None or self._limiter.allow(addr[0], now)

    def _emit(self, event: Event) -> None:
        if len(self._events) >= MAX_EVENTS:
            del self._events[0]
        self._events.append(event)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id


_ASKED = (CandidateState.PENDING, CandidateState.SLOW)


def _take_due(queue: list[_T], now: float, deadline: Callable[[_T], float]) -> list[_T]:
    """Remove and return the entries of a deadline-ordered `queue` that are due at `now`."""
    due = bisect.bisect_right(queue, now, key=deadline)
    taken = queue[:due]
    del queue[:due]
    return taken


def _deadline(pending: _Pending) -> float:
    return pending.deadline


def random_node_id(rng: random.Random | None = None) -> bytes:
    """A uniformly random node id."""
    return to_bytes((rng or random).getrandbits(160))
