"""The peerloom node: one home directory, one listening port, many torrents.

    async with Node(home=...) as node:
        t = await node.add(magnet_or_torrent_path, save="downloads")
        await t.wait_done()

The node owns the listening socket (incoming peers are routed to their torrent by info-hash), its
identity (an Ed25519 key in the home) and the secure peer layer's host, the worker threads for disk
and hashing, the resume database, the tracker client, and the trackerless discovery of public
torrents: the Mainline DHT node (UDP, its routing table kept in the home) and local service
discovery. `stop` (or leaving the `async with`) stops every torrent cleanly and saves resume data
and the DHT's routing table.

Private swarms run the same BitTorrent peer wire over a Noise + yamux stream of the secure layer
(`/peerloom/bittorrent/1.0.0`) and admit only the keys their owner allowed; public torrents use plain
BitTorrent over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import platformdirs

from peerloom import __version__
from peerloom.codec.multiaddr import Multiaddr
from peerloom.errors import PeerloomError
from peerloom.identity import Identity, PeerId
from peerloom.net.host import Host
from peerloom.net.stream import Stream, StreamTransport
from peerloom.torrent.create import create, seed_directory
from peerloom.torrent.magnet import Magnet
from peerloom.torrent.metainfo import Metainfo
from peerloom.torrent.peer import PeerConnection
from peerloom.torrent.ratelimit import TokenBucket
from peerloom.torrent.resume import ResumeStore
from peerloom.torrent.swarm import Torrent
from peerloom.workers import WorkerPool

if TYPE_CHECKING:
    from peerloom.dht.driver import Dht
    from peerloom.discovery.lsd_driver import LsdService

T = TypeVar("T")
log = logging.getLogger(__name__)
BITTORRENT_PROTOCOL = "/peerloom/bittorrent/1.0.0"


@dataclass
class Settings:
    """Knobs of the engine; defaults suit real swarms, tests shorten the timeouts."""

    max_peers: int = 50
    max_candidates: int = 2000
    upload_slots: int = 8
    connect_timeout: float = 10.0
    snub_timeout: float = 30.0
    idle_timeout: float = 240.0
    tick: float = 1.0
    hash_threads: int = 2
    max_verify_bytes: int = 32 * 1024 * 1024  # pieces waiting for hashing/writing before we stop requesting
    read_cache_bytes: int = 32 * 1024 * 1024
    download_rate_limit: int = 0  # bytes/s per torrent, 0 = unlimited
    trackers: bool = True
    tracker_min_wait: float = 30.0
    pex_interval: float = 60.0  # BEP 11: at most one peer-exchange message a minute per peer
    secure_port: int = 0  # the secure peer layer's TCP port (0: any free one)
    dht: bool = True  # Mainline DHT (BEP 5): find peers of public torrents without a tracker
    dht_port: int = 0  # its UDP port (0: the same number as the BitTorrent port)
    bootstrap: list[tuple[str, int]] = field(default_factory=list)  # DHT nodes to join through (host, port)
    public_bootstrap: bool = True  # with no `bootstrap` given, join through the public routers
    dht_ipv6: bool = False  # also join the IPv6 DHT (BEP 32) when the node listens on IPv4
    dht_interval: float = 15 * 60.0  # ask the DHT for peers (and announce) this often per torrent...
    dht_interval_few: float = 60.0  # ...or this often while the torrent has fewer than `dht_few_peers` peers
    dht_few_peers: int = 5
    lsd: bool = True  # local service discovery (BEP 14): find peers on the LAN by multicast
    lsd_interval: float = 5 * 60.0
    lsd_port: int = 6771  # the BEP 14 multicast port (tests pick another to keep to themselves)


class DuplicateTorrent(PeerloomError):
    """The node already has a torrent with this info-hash."""


def default_home() -> Path:
    env = os.environ.get("PEERLOOM_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("peerloom"))


class Node:
    """A peer node. Use as `async with Node(...) as node`."""

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        port: int = 0,
        host: str = "0.0.0.0",
        settings: Settings | None = None,
    ) -> None:
        self.home = Path(home) if home is not None else default_home()
        self.host = host
        self.requested_port = port
        self.port = 0
        self.settings = settings or Settings()
        self.peer_id = b"-PL0100-" + secrets.token_bytes(12)
        self.tracker_key = secrets.randbits(32)
        self.client_name = f"peerloom/{__version__}"
        self.torrents: dict[str, Torrent] = {}
        self._by_hash: dict[bytes, Torrent] = {}
        self._banned_addresses: set[tuple[str, int]] = set()
        self._banned_ids: set[bytes] = set()
        self._connections: set[PeerConnection] = set()
        self._server: asyncio.Server | None = None
        self.workers: WorkerPool | None = None  # threads hashing and doing disk I/O (made at start)
        self.resume: ResumeStore
        self._tracker_client: Any = None
        self.identity: Identity
        self.secure_host: Host
        self._secure_transports: set[StreamTransport] = set()
        self.dht: Dht | None = None  # the Mainline DHT node (None when `settings.dht` is off)
        self.lsd: LsdService | None = None  # local service discovery (None when `settings.lsd` is off)
        self.download_bucket = TokenBucket(0)  # the node's global rate limits, on top of each torrent's own
        self.upload_bucket = TokenBucket(0)

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.resume = ResumeStore(self.home / "state.sqlite")
        self.workers = WorkerPool(self.settings.hash_threads)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self._incoming, self.host, self.requested_port)
        except OSError as exc:
            raise PeerloomError(f"cannot listen on {self.host}:{self.requested_port}: {exc.strerror}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        self.identity = await self.run_blocking(Identity.load_or_create, self.home)
        self.secure_host = Host(self.identity, agent_version=self.client_name, allow=self._key_allowed)
        self.secure_host.set_handler(BITTORRENT_PROTOCOL, self._secure_incoming)
        family = "ip6" if ":" in self.host else "ip4"
        try:
            await self.secure_host.listen(f"/{family}/{self.host}/tcp/{self.settings.secure_port}")
        except OSError as exc:
            raise PeerloomError(f"cannot listen on {self.host}:{self.settings.secure_port}: {exc.strerror}") from exc
        if self.settings.dht:
            await self._start_dht()
        if self.settings.lsd:
            await self._start_lsd()

    async def _start_dht(self) -> None:
        """The DHT on UDP (the BitTorrent port's number unless told otherwise), its table kept in the home; it joins
        through the saved nodes, then the configured bootstrap nodes. The public routers serve only when none are
        configured, and never a node on loopback (it could not reach them)."""
        from peerloom.dht.driver import PUBLIC_BOOTSTRAP, Dht  # loaded only by nodes that run it

        settings = self.settings
        public = settings.public_bootstrap and not _is_loopback(self.host)
        bootstrap = list(settings.bootstrap) or (list(PUBLIC_BOOTSTRAP) if public else [])
        host6 = None
        if settings.dht_ipv6 and ":" not in self.host:
            host6 = "::1" if self.host.startswith("127.") else "::"
        dht = Dht(state=self.home / "state.sqlite")
        try:
            await dht.start(settings.dht_port or self.port, self.host, bootstrap=bootstrap, host6=host6)
        except OSError as exc:
            await dht.close()
            raise PeerloomError(f"cannot start the DHT on {self.host}: {exc.strerror}") from exc
        self.dht = dht

    async def _start_lsd(self) -> None:
        """Local service discovery on the interface the node listens on (the default one when it listens on all)."""
        from peerloom.discovery.lsd_driver import LsdService  # loaded only by nodes that run it

        interface = self.host if self.host and ":" not in self.host else "0.0.0.0"
        lsd = LsdService(self.port, self._lsd_hashes, self._lsd_peer, interface=interface,
                         group_port=self.settings.lsd_port, interval=self.settings.lsd_interval)
        try:
            await lsd.start()
        except PeerloomError as exc:  # a host without multicast still runs; it only misses LAN peers
            log.warning("%s", exc)
            return
        self.lsd = lsd

    def _lsd_hashes(self) -> list[bytes]:
        return [h for t in self.torrents.values() if t.discoverable and not t.paused for h in t.hashes]

    def _lsd_peer(self, info_hash: bytes, address: tuple[str, int]) -> None:
        torrent = self._by_hash.get(info_hash)
        if torrent is not None and torrent.discoverable and not torrent.paused:
            torrent.peers_discovered([address])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await asyncio.gather(*(t.stop() for t in self.torrents.values()), return_exceptions=True)
        if self.lsd is not None:
            await self.lsd.close()
        if self.dht is not None:
            await self.dht.close()
        for conn in list(self._connections):
            conn.close("node stopping")
        for transport in list(self._secure_transports):
            transport.abort()
        if hasattr(self, "secure_host"):
            await self.secure_host.close()
        if self._tracker_client is not None:
            await self._tracker_client.close()
        if self.workers is not None:
            self.workers.close()
        self.resume.close()

    @property
    def tracker_client(self) -> Any:
        """The HTTP/UDP tracker client, made on first use (most swarms in tests have no tracker)."""
        if self._tracker_client is None:
            from peerloom.torrent.tracker_client import TrackerClient

            self._tracker_client = TrackerClient()
        return self._tracker_client

    # -- blocking work -------------------------------------------------------------------------
    def run_blocking_future(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """`fn(*args)` in one of the node's worker threads (the loop's default executor before the node starts)."""
        if self.workers is None:
            return asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
        return self.workers.submit(fn, *args)

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.run_blocking_future(fn, *args)

    # -- torrents ------------------------------------------------------------------------------
    async def add(
        self,
        source: str | Path | Metainfo | Magnet,
        save: str | Path = ".",
        *,
        peers: list[tuple[str, int] | Multiaddr] | None = None,
        files: list[int] | None = None,
        sequential: bool = False,
        trusted_complete: bool = False,
        seed_only: bool = False,
        overwrite: bool = False,
        allow: list[PeerId] | None = None,
        paused: bool = False,
    ) -> Torrent:
        """Add a torrent by magnet link, .torrent path, or parsed metainfo, and start it (`paused`: check its
        data but do not look for peers until `torrent.resume()`).

        Data found at `save` is checked and the pieces that verify are kept; a file there that is not the
        torrent's makes the torrent fail instead of being written over, unless `overwrite`. `seed_only`: the files
        are the user's own (a shared folder): seed what verifies, never create, cut or write a file.

        With `allow` (even empty), the torrent is a private swarm of the secure layer: it talks only to
        those keys and to the PeerIds of the multiaddrs in `peers`, over encrypted streams, never over
        plain BitTorrent.
        """
        meta: Metainfo | None = None
        magnet: Magnet | None = None
        if isinstance(source, Metainfo):
            meta = source
        elif isinstance(source, Magnet):
            magnet = source
        elif isinstance(source, str) and source[:8].lower() == "magnet:?":
            magnet = Magnet.parse(source)
        else:
            path = Path(source)
            try:
                data = await self.run_blocking(path.read_bytes)
            except FileNotFoundError:
                raise PeerloomError(f"no such file: {path}") from None
            except OSError as exc:
                raise PeerloomError(f"cannot read {path}: {exc.strerror}") from exc
            meta = Metainfo.parse(data)
        hashes = [h for h in ((meta or magnet).info_hash_v1, ((meta or magnet).info_hash_v2 or b"")[:20]) if h]
        for h in hashes:
            if h in self._by_hash:
                raise DuplicateTorrent(f"torrent {h.hex()} is already added")
        tid = hashes[0].hex()
        record = self.resume.load(tid)
        if meta is None and record is not None and record.torrent:
            meta = Metainfo.parse(record.torrent)  # metadata fetched in an earlier run
        torrent = Torrent(
            self,
            meta=meta,
            magnet=magnet,
            save_path=Path(save),
            selected=files,
            sequential=sequential,
            record=record if record and Path(record.save_path) == Path(save) else None,
            trusted_complete=trusted_complete,
            seed_only=seed_only,
            overwrite=overwrite,
            allowed_keys=None if allow is None else _allowed_keys(allow, peers or []),
        )
        self.torrents[torrent.id] = torrent
        for h in torrent.hashes:
            self._by_hash[h] = torrent
        if peers:
            torrent.add_peers(list(peers))
        await torrent.start(paused=paused)
        return torrent

    async def share(
        self,
        path: str | Path,
        *,
        version: str = "hybrid",
        trackers: list[str] | None = None,
        piece_length: int | None = None,
        private: bool = False,
        allow: list[PeerId] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Torrent:
        """Make a torrent of a file or folder and seed it from where it is. With `allow`, it is a private
        swarm of those keys on the secure layer (and marked private, BEP 27: no DHT, no peer exchange)."""
        path = Path(path).resolve()
        meta = await asyncio.to_thread(
            create, path, version=version, piece_length=piece_length, trackers=[[t] for t in trackers or []],
            private=private or allow is not None, progress=progress,
        )
        return await self.add(meta, seed_directory(path, meta), trusted_complete=True, seed_only=True, allow=allow)

    async def remove(self, torrent: Torrent, *, delete_data: bool = False) -> None:
        await torrent.stop()
        self.torrents.pop(torrent.id, None)
        for h in torrent.hashes:
            self._by_hash.pop(h, None)
        self.resume.delete(torrent.id)
        if delete_data and torrent.storage is not None:
            await self.run_blocking(torrent.storage.delete_files)

    def torrent_for_hash(self, info_hash: bytes) -> Torrent | None:
        return self._by_hash.get(info_hash)

    def metadata_received(self, torrent: Torrent) -> None:
        """A magnet's info dictionary arrived; its v2 hash may now route peers too."""
        for h in torrent.hashes:
            self._by_hash.setdefault(h, torrent)

    # -- connections -------------------------------------------------------------------------
    def _incoming(self) -> PeerConnection:
        conn = PeerConnection(self, None)
        self._connections.add(conn)
        return conn

    async def connect(self, torrent: Torrent, address: tuple[str, int]) -> PeerConnection:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: PeerConnection(self, torrent, address, outgoing=True), *address),
            self.settings.connect_timeout,
        )
        self._connections.add(conn)
        return conn

    async def connect_secure(self, torrent: Torrent, address: Multiaddr) -> PeerConnection:
        """A peer wire connection over a stream of the secure layer (the remote key must match /p2p/)."""
        stream = await self.secure_host.new_stream(address, [BITTORRENT_PROTOCOL])
        conn = PeerConnection(self, torrent, address, outgoing=True)
        self._attach(stream, conn)
        return conn

    async def _secure_incoming(self, stream: Stream) -> None:
        await self._attach(stream, PeerConnection(self, None)).wait_closed()

    def _attach(self, stream: Stream, conn: PeerConnection) -> StreamTransport:
        self._connections.add(conn)
        transport = StreamTransport(stream, conn)
        self._secure_transports.add(transport)
        transport.closed.add_done_callback(lambda _f: self._secure_transports.discard(transport))
        return transport

    def _key_allowed(self, peer: PeerId) -> bool:
        """The secure layer admits any key while no private swarm restricts them; then only allowed keys."""
        restricted = [t.allowed_keys for t in self.torrents.values() if t.allowed_keys is not None]
        return not restricted or any(peer in keys for keys in restricted)

    @property
    def secure_addrs(self) -> list[Multiaddr]:
        """Where the secure layer listens, each ending in this node's /p2p/ PeerId."""
        return self.secure_host.listen_addrs

    @property
    def secure_port(self) -> int | None:
        """The secure layer's TCP port (None before it listens)."""
        addrs = self.secure_addrs
        return int(addrs[0].value_for("tcp") or 0) if addrs else None

    def peer_lost(self, conn: PeerConnection) -> None:
        self._connections.discard(conn)

    def ban(self, address: tuple[str, int], peer_id: bytes | None) -> None:
        self._banned_addresses.add(address)
        if peer_id:
            self._banned_ids.add(peer_id)

    def is_banned(self, address: tuple[str, int], peer_id: bytes | None = None) -> bool:
        return address in self._banned_addresses or (peer_id is not None and peer_id in self._banned_ids)

    def is_self(self, address: tuple[str, int] | Multiaddr) -> bool:
        if isinstance(address, Multiaddr):
            return address.peer_id == self.identity.peer_id
        if address[1] != self.port:
            return False
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(address[0])
            return ip.is_loopback or ip.is_unspecified or address[0] == self.host
        return False


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _allowed_keys(allow: list[PeerId], peers: list[tuple[str, int] | Multiaddr]) -> set[PeerId]:
    keys = set(allow)
    for peer in peers:
        if isinstance(peer, Multiaddr):
            if peer.peer_id is None:
                raise PeerloomError(f"a peer of a private swarm needs its /p2p/ id: {peer}")
            keys.add(peer.peer_id)
    return keys
