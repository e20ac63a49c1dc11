"""The peer store: what the node knows about other secure-layer peers, kept across runs.

For each peer (by PeerId): every address learned, with where it came from (`source`) and when it was last heard of;
the protocols and agent its identify announced; when it last connected and disconnected; and the dial failures of
each address, with an exponential backoff that `addrs()` honours (it returns only the addresses that may be tried
now, best first). The store is bounded: at most `max_peers` peers and `max_addrs` addresses per peer; the least
recently seen go first (a connected peer, and a user-given address, last).

    store = PeerStore(state)                      # loads what the state database's "peers" schema holds
    store.add_addrs(peer, [addr], "identify", now)
    for addr in store.addrs(peer, now): ...       # each ends in /p2p/PEER, ready for `Host.connect`
    store.dial_failed(peer, addr, now)            # -> when that address may be tried again
    await run_blocking(store.save, store.changes())   # the node does this every SAVE_INTERVAL and at stop

Times (`now`) are unix time in seconds: they outlive the process in the database. Nothing here reads a clock or
blocks on I/O except `save` and the constructor's load, which the node runs at start and in a worker thread:
events only mark peers dirty, and `changes()` snapshots the dirty peers so `save` writes them all in one
transaction (one SQLite write per SAVE_INTERVAL, never one per event on the hot paths).
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from peerloom.codec.multiaddr import Multiaddr, MultiaddrError
from peerloom.identity import PeerId, PeerIdError
from peerloom.state import Migration, State

log = logging.getLogger(__name__)

# Where an address came from, most trusted first: this order breaks ties between addresses in `addrs()`.
SOURCES = ("user", "identify", "record", "mdns", "lsd", "dht", "rendezvous", "px")
MAX_PEERS = 1000
MAX_ADDRS = 16  # per peer: a libp2p node rarely listens on more; a peer that announces hundreds is not believed
MAX_PROTOCOLS = 128
MAX_PROTOCOL_LEN = 256
MAX_AGENT_LEN = 256
BACKOFF_BASE = 5.0  # seconds before retrying an address after its first failure; doubles with each failure
BACKOFF_MAX = 3600.0
SAVE_INTERVAL = 30.0  # the node saves the dirty peers this often (and at stop)

MIGRATIONS: list[Migration] = [
    """
CREATE TABLE peers_peers (peer BLOB PRIMARY KEY, protocols TEXT NOT NULL, agent TEXT, last_seen REAL NOT NULL,
    connected_at REAL, disconnected_at REAL);
CREATE TABLE peers_addrs (peer BLOB NOT NULL, addr BLOB NOT NULL, source TEXT NOT NULL, last_seen REAL NOT NULL,
    failures INTEGER NOT NULL, next_try REAL NOT NULL, last_connected REAL, PRIMARY KEY (peer, addr))
""",
]


@dataclass
class AddrInfo:
    """One address of a peer (its transport part, without /p2p/)."""

    addr: Multiaddr
    source: str  # the most trusted source that told us of it (see SOURCES)
    last_seen: float
    failures: int = 0  # dial failures since the last success
    next_try: float = 0.0  # not dialled again before this time
    last_connected: float | None = None  # the last time a connection over it opened

    def to_json(self, now: float) -> dict[str, Any]:
        return {"addr": str(self.addr), "source": self.source, "age": max(0.0, now - self.last_seen),
                "failures": self.failures, "retry_in": max(0.0, self.next_try - now)}


@dataclass
class PeerInfo:
    """What the store knows of one peer."""

    peer_id: PeerId
    last_seen: float
    addrs: dict[Multiaddr, AddrInfo] = field(default_factory=dict)
    protocols: tuple[str, ...] = ()
    agent: str | None = None
    connected_at: float | None = None
    disconnected_at: float | None = None

    @property
    def connected(self) -> bool:
        return self.connected_at is not None and (self.disconnected_at is None or
                                                  self.disconnected_at < self.connected_at)

    @property
    def failures(self) -> int:
        """Dial failures of all its addresses since their last success."""
        return sum(a.failures for a in self.addrs.values())

    def to_json(self, now: float) -> dict[str, Any]:
        """The form `peerloom peers --json` and the API show."""
        return {"peer_id": str(self.peer_id), "addrs": [a.to_json(now) for a in _ranked(self.addrs.values())],
                "protocols": list(self.protocols), "agent": self.agent, "last_seen": self.last_seen,
                "connected": self.connected, "connected_at": self.connected_at,
                "disconnected_at": self.disconnected_at, "failures": self.failures}


@dataclass(frozen=True)
class Changes:
    """A snapshot of the peers changed since the last `changes()`: rows to write, peers to delete."""

    peers: list[tuple[Any, ...]]
    addrs: list[tuple[Any, ...]]
    removed: list[bytes]

    def __bool__(self) -> bool:
        return bool(self.peers or self.removed)


class PeerStore:
    """The node's peer store (see the module docstring). `state` None keeps it in memory only."""

    def __init__(self, state: State | None = None, *, max_peers: int = MAX_PEERS, max_addrs: int = MAX_ADDRS) -> None:
        self.max_peers = max_peers
        self.max_addrs = max_addrs
        self._peers: dict[PeerId, PeerInfo] = {}
        self._dirty: set[PeerId] = set()
        self._removed: set[PeerId] = set()
        self._db = state.schema("peers", MIGRATIONS) if state is not None else None
        if self._db is not None:
            self._load()

    # -- learning ------------------------------------------------------------------------------------------------
    def add_addrs(self, peer: PeerId, addrs: Iterable[Multiaddr], source: str, now: float) -> None:
        """Remember addresses of `peer` told by `source`. An address whose /p2p/ names another peer is ignored; a
        known address is refreshed (and takes the more trusted of its sources)."""
        if source not in SOURCES:
            raise ValueError(f"unknown peer address source {source!r}")
        info = self._touch(peer, now)
        for addr in addrs:
            transport = _transport(peer, addr)
            if transport is None:
                continue
            known = info.addrs.get(transport)
            if known is None:
                info.addrs[transport] = AddrInfo(transport, source, now)
            else:
                known.last_seen = max(known.last_seen, now)
                if SOURCES.index(source) < SOURCES.index(known.source):
                    known.source = source
        self._trim_addrs(info)

    def set_protocols(self, peer: PeerId, protocols: Iterable[str], agent: str | None, now: float) -> None:
        """What the peer's identify said it speaks and who it is (bounded)."""
        info = self._touch(peer, now)
        info.protocols = tuple(p for p in list(dict.fromkeys(protocols))[:MAX_PROTOCOLS] if len(p) <= MAX_PROTOCOL_LEN)
        info.agent = agent[:MAX_AGENT_LEN] if agent is not None else None

    def connected(self, peer: PeerId, addr: Multiaddr | None, now: float) -> None:
        """A connection to `peer` opened (over `addr` when known: a known address's failures are forgiven; an
        unknown one is not added, since an accepted connection's port is the peer's ephemeral one)."""
        info = self._touch(peer, now)
        info.connected_at = now
        transport = _transport(peer, addr) if addr is not None else None
        known = info.addrs.get(transport) if transport is not None else None
        if known is not None:
            known.failures, known.next_try, known.last_connected = 0, 0.0, now

    def disconnected(self, peer: PeerId, now: float) -> None:
        self._touch(peer, now).disconnected_at = now

    def dial_failed(self, peer: PeerId, addr: Multiaddr, now: float) -> float:
        """A dial of `addr` failed: back off exponentially (BACKOFF_BASE, doubling, at most BACKOFF_MAX). Returns
        the time from which it may be tried again."""
        info = self._peers.get(peer)
        transport = _transport(peer, addr)
        known = info.addrs.get(transport) if info is not None and transport is not None else None
        if known is None:
            return now
        known.failures += 1
        known.next_try = now + min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(known.failures - 1, 30))
        self._dirty.add(peer)
        return known.next_try

    # -- reading -------------------------------------------------------------------------------------------------
    def addrs(self, peer: PeerId, now: float) -> list[Multiaddr]:
        """The addresses of `peer` that may be dialled now (out of backoff), best first, each ending in /p2p/PEER:
        those that connected before, then the fewest failures, the most trusted source, the most recently seen."""
        info = self._peers.get(peer)
        if info is None:
            return []
        suffix = Multiaddr(f"/p2p/{peer}")
        return [a.addr.encapsulate(suffix) for a in _ranked(info.addrs.values()) if a.next_try <= now]

    def get(self, peer: PeerId) -> PeerInfo | None:
        return self._peers.get(peer)

    def all(self) -> list[PeerInfo]:
        """Every peer, the most recently seen first."""
        return sorted(self._peers.values(), key=lambda p: -p.last_seen)

    def with_protocol(self, protocol: str) -> list[PeerId]:
        """The peers whose identify listed `protocol`."""
        return [p.peer_id for p in self.all() if protocol in p.protocols]

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    # -- bounds --------------------------------------------------------------------------------------------------
    def _touch(self, peer: PeerId, now: float) -> PeerInfo:
        info = self._peers.get(peer)
        if info is None:
            info = self._peers[peer] = PeerInfo(peer, now)
            self._removed.discard(peer)
            self._trim_peers(keep=peer)
        info.last_seen = max(info.last_seen, now)
        self._dirty.add(peer)
        return info

    def _trim_peers(self, keep: PeerId) -> None:
        """Over `max_peers`: forget the least recently seen, disconnected ones before connected ones; a tenth more
        than needed, so a full store pays for one eviction per tenth of its size, not per new peer."""
        excess = len(self._peers) - self.max_peers
        if excess <= 0:
            return
        excess += self.max_peers // 10
        victims = heapq.nsmallest(excess, (p for p in self._peers.values() if p.peer_id != keep),
                                  key=lambda p: (p.connected, p.last_seen))
        for victim in victims:
            del self._peers[victim.peer_id]
            self._dirty.discard(victim.peer_id)
            self._removed.add(victim.peer_id)

    def _trim_addrs(self, info: PeerInfo) -> None:
        """Over `max_addrs`: forget the least recently seen addresses, user-given ones last."""
        excess = len(info.addrs) - self.max_addrs
        if excess > 0:
            victims = sorted(info.addrs.values(), key=lambda a: (a.source == "user", a.last_seen))[:excess]
            for victim in victims:
                del info.addrs[victim.addr]

    # -- persistence ---------------------------------------------------------------------------------------------
    def changes(self) -> Changes:
        """The rows of the peers changed since the last call (taken on the event loop; `save` writes them)."""
        peers, addrs = [], []
        for peer in self._dirty:
            info = self._peers[peer]
            key = peer.to_bytes()
            peers.append((key, json.dumps(info.protocols), info.agent, info.last_seen, info.connected_at,
                          info.disconnected_at))
            addrs.extend((key, a.addr.to_bytes(), a.source, a.last_seen, a.failures, a.next_try, a.last_connected)
                         for a in info.addrs.values())
        removed = [p.to_bytes() for p in self._removed]
        self._dirty.clear()
        self._removed.clear()
        return Changes(peers, addrs, removed)

    def unsaved(self, changes: Changes) -> None:
        """`changes` could not be written: they go with the next `changes()` (the peers as they are by then)."""
        for key in changes.removed:
            peer = PeerId(key)
            if peer not in self._peers:
                self._removed.add(peer)
        self._dirty.update(p for p in (PeerId(row[0]) for row in changes.peers) if p in self._peers)

    def save(self, changes: Changes) -> None:
        """Write a snapshot of `changes()` in one transaction (may run in a worker thread); StateError when the
        disk fails."""
        if self._db is None or not changes:
            return
        gone = [(key,) for key in changes.removed] + [(row[0],) for row in changes.peers]
        with self._db.transaction():
            self._db.executemany("DELETE FROM peers_addrs WHERE peer = ?", gone)
            self._db.executemany("DELETE FROM peers_peers WHERE peer = ?", [(k,) for k in changes.removed])
            self._db.executemany("INSERT OR REPLACE INTO peers_peers VALUES (?, ?, ?, ?, ?, ?)", changes.peers)
            self._db.executemany("INSERT OR REPLACE INTO peers_addrs VALUES (?, ?, ?, ?, ?, ?, ?)", changes.addrs)

    def _load(self) -> None:
        """Read the saved peers (the `max_peers` most recently seen); rows that no longer parse are skipped."""
        assert self._db is not None
        rows = self._db.execute("SELECT peer, protocols, agent, last_seen, connected_at, disconnected_at "
                                "FROM peers_peers ORDER BY last_seen DESC LIMIT ?", (self.max_peers,))
        for key, protocols, agent, last_seen, connected_at, disconnected_at in rows:
            try:
                peer = PeerId(bytes(key))
                names = json.loads(protocols)
            except (PeerIdError, ValueError):
                continue
            info = PeerInfo(peer, last_seen, protocols=tuple(p for p in names if isinstance(p, str)), agent=agent,
                            connected_at=connected_at, disconnected_at=disconnected_at)
            if info.connected:  # saved while connected, by a process that is gone: its connection is too
                info.disconnected_at = max(last_seen, connected_at)
            self._peers[peer] = info
        for key, raw, source, last_seen, failures, next_try, last_connected in self._db.execute(
            "SELECT peer, addr, source, last_seen, failures, next_try, last_connected FROM peers_addrs"
        ):
            try:
                info = self._peers.get(PeerId(bytes(key)))
                addr = Multiaddr.from_bytes(bytes(raw))
            except (PeerIdError, MultiaddrError):
                continue
            if info is not None and source in SOURCES and len(info.addrs) < self.max_addrs:
                info.addrs[addr] = AddrInfo(addr, source, last_seen, failures, next_try, last_connected)


def usable_addrs(addrs: Iterable[Multiaddr], remote_host: str | None) -> list[Multiaddr]:
    """The listen addresses a peer announced (identify), made dialable from where its connection came from
    (`remote_host`): a wildcard host (0.0.0.0, ::, which a node listening on every interface announces) becomes
    `remote_host` when of the same family, else is left out; a loopback address is left out when the peer is not on
    loopback itself (it would reach this host, not the peer)."""
    remote = ipaddress.ip_address(remote_host) if remote_host is not None else None
    usable = []
    for addr in addrs:
        family = "ip4" if addr.value_for("ip4") is not None else "ip6" if addr.value_for("ip6") is not None else None
        host = addr.value_for(family) if family is not None else None
        ip = ipaddress.ip_address(host) if host is not None else None
        if ip is None or (not ip.is_unspecified and not ip.is_loopback):
            usable.append(addr)
        elif ip.is_loopback:
            if remote is None or remote.is_loopback:
                usable.append(addr)
        elif remote is not None and remote.version == ip.version:
            with contextlib.suppress(MultiaddrError):
                usable.append(Multiaddr(str(addr).replace(f"/{family}/{host}/", f"/{family}/{remote}/", 1)))
    return usable


def _transport(peer: PeerId, addr: Multiaddr) -> Multiaddr | None:
    """`addr` without its trailing /p2p/PEER; None when that names another peer or nothing is left."""
    owner = addr.peer_id
    if owner is None:
        return addr
    if owner != peer:
        return None
    try:
        return addr.without_p2p()
    except MultiaddrError:
        return None


def _ranked(addrs: Iterable[AddrInfo]) -> list[AddrInfo]:
    return sorted(addrs, key=lambda a: (a.last_connected is None, a.failures, SOURCES.index(a.source), -a.last_seen))
