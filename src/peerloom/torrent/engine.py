"""The BitTorrent engine: the node's first service.

It keeps the torrents by info-hash, listens for plain BitTorrent over TCP and routes each incoming handshake to its
torrent by info-hash, dials peers (plain TCP, or a stream of the secure layer for a private swarm), and holds what
the torrents share: bans, the global rate limits, the resume store, the tracker client, and the peer sources it was
given (DHT, LSD). Torrents see it only through `SwarmContext`, which it implements.

Private swarms run the same peer wire over Noise + yamux streams of `/peerloom/bittorrent/1.0.0`. Their allow-lists
gate that protocol only (`admits`): a key no private swarm allows is still served identify, ping and every other
service's protocols, and is refused on this one with multistream-select's `na`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import secrets
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from peerloom.codec.compact import canonical_address
from peerloom.codec.multiaddr import Multiaddr
from peerloom.errors import PeerloomError, ProtocolError
from peerloom.identity import PeerId
from peerloom.net.stream import Stream, StreamTransport
from peerloom.settings import Settings
from peerloom.torrent import dual_stack
from peerloom.torrent.create import create, seed_directory
from peerloom.torrent.magnet import Magnet
from peerloom.torrent.metainfo import Metainfo
from peerloom.torrent.mse import skey_hash
from peerloom.torrent.mse_transport import MseProtocol
from peerloom.torrent.peer import PeerConnection
from peerloom.torrent.ratelimit import TokenBucket
from peerloom.torrent.resume import ResumeStore
from peerloom.torrent.swarm import Torrent
from peerloom.torrent.utp import UtpConfig
from peerloom.torrent.utp_driver import UtpDriver

if TYPE_CHECKING:
    from peerloom.torrent.context import DhtPeers, EngineNode, LanPeers, SharedUdp
    from peerloom.torrent.tracker_client import TrackerClient

T = TypeVar("T")
ENCRYPTION_POLICIES = ("prefer", "require", "disable")
log = logging.getLogger(__name__)
BITTORRENT_PROTOCOL = "/peerloom/bittorrent/1.0.0"
MAX_UTP_PEERS = 4096  # addresses remembered as speaking uTP or not


class DuplicateTorrent(PeerloomError):
    """The node already has a torrent with this info-hash."""


class EncryptionFailed(ConnectionError):
    """The peer answered but the encrypted handshake failed, and `encryption` "require" forbids plaintext."""


class BitTorrentEngine:
    """The BitTorrent service: torrents, incoming handshakes, the dialer, bans, limits (see the module docstring)."""

    name = "bittorrent"
    protocols = (BITTORRENT_PROTOCOL,)

    def __init__(self, settings: Settings, *, client_name: str) -> None:
        if settings.encryption not in ENCRYPTION_POLICIES:
            raise PeerloomError(f"encryption must be one of {', '.join(ENCRYPTION_POLICIES)}: {settings.encryption!r}")
        self.settings = settings
        self.client_name = client_name
        self.peer_id = b"-PL0100-" + secrets.token_bytes(12)
        self.tracker_key = secrets.randbits(32)
        self.port = 0  # the plain BitTorrent TCP port (set by `listen`)
        self.torrents: dict[str, Torrent] = {}
        self.download_bucket = TokenBucket(0)  # the node's global rate limits, on top of each torrent's own
        self.upload_bucket = TokenBucket(0)
        self.resume: ResumeStore  # the node opens it before anything else (its state file) and sets it here
        self._node: EngineNode | None = None
        self._interface = ""
        self._by_hash: dict[bytes, Torrent] = {}
        self._banned_addresses: set[tuple[str, int] | Multiaddr] = set()
        self._banned_ids: set[bytes] = set()
        self._connections: set[PeerConnection] = set()
        self._secure_transports: set[StreamTransport] = set()
        self._servers: list[asyncio.Server] = []
        self.ipv6_address: str | None = None  # where IPv6 peers reach us, told in BEP 10 handshakes (`ipv6`)
        self.families: set[int] = set()  # the address families the BitTorrent port takes (socket.AF_INET/AF_INET6)
        self._utp: UtpDriver | None = None
        self._utp_peers: OrderedDict[tuple[str, int], bool] = OrderedDict()  # speaks uTP (True) or not (False)
        self._tracker_client: TrackerClient | None = None

    # -- the service -------------------------------------------------------------------------------
    async def listen(self, host: str, port: int) -> int:
        """Listen for plain BitTorrent on `host:port` and return the port; on every interface (0.0.0.0, ::), over
        IPv4 and IPv6 alike (`dual_stack`). The node calls this before it starts the DHT and LSD, which announce
        this port."""
        loop = asyncio.get_running_loop()
        try:
            if dual_stack.is_wildcard(host):
                sockets = dual_stack.listen_sockets(port)
                self.families = dual_stack.families(sockets)
                try:
                    for sock in sockets:
                        self._servers.append(await loop.create_server(self._incoming, sock=sock))
                except BaseException:
                    for sock in sockets:
                        sock.close()
                    raise
            else:
                self._servers = [await loop.create_server(self._incoming, host, port)]
                self.families = {sock.family for sock in self._servers[0].sockets}  # asyncio sets IPV6_V6ONLY
        except OSError as exc:
            await self.close_listener()
            raise PeerloomError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        self._interface = host
        self.port = self._servers[0].sockets[0].getsockname()[1]
        self.ipv6_address = dual_stack.own_ipv6(host) if socket.AF_INET6 in self.families else None
        return self.port

    @property
    def dual_stack(self) -> bool:
        """Whether the BitTorrent port takes both IPv4 and IPv6 connections."""
        return self.families == {socket.AF_INET, socket.AF_INET6}

    async def listen_utp(self, host: str, shared: SharedUdp | None = None) -> None:
        """Take uTP (BEP 29) on the BitTorrent port number: through `shared` (the DHT's socket) when it has that
        port, as libtorrent does, else on a UDP socket of our own. Called after `listen` (and the DHT's start)."""
        driver = UtpDriver(config=UtpConfig(max_payload=self.settings.utp_payload), on_incoming=self._incoming_utp)
        if shared is not None and shared.port == self.port:
            shared.share_socket(driver.datagram_received)
            driver.attach(shared.shared_sockets(), (host, self.port))
        else:
            try:
                await driver.open(host, self.port)
            except OSError as exc:
                log.warning("uTP off: cannot bind UDP %s:%d (%s)", host, self.port, exc.strerror)
                return
        self._utp = driver

    def close_utp(self) -> None:
        if self._utp is not None:
            self._utp.close()
            self._utp = None

    def peer_speaks_utp(self, address: tuple[str, int]) -> None:
        if address not in self._utp_peers:  # a failed uTP dial is not undone by hearsay
            self._knows_utp(address, True)

    def _knows_utp(self, address: tuple[str, int], speaks: bool) -> None:
        self._utp_peers[address] = speaks
        self._utp_peers.move_to_end(address)
        if len(self._utp_peers) > MAX_UTP_PEERS:
            self._utp_peers.popitem(last=False)

    async def close_listener(self) -> None:
        for server in self._servers:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def start(self, node: EngineNode) -> None:
        self._node = node

    async def handle(self, stream: Stream, protocol: str) -> None:
        """An incoming peer wire over a secure stream: its torrent is found by the info-hash of its handshake."""
        await self._hold(self._attach(stream, PeerConnection(self, None)))

    def admits(self, peer: PeerId, protocol: str) -> bool:
        """Any key while no private swarm restricts them; then only the keys some private swarm allows. Each
        torrent checks its own allow-list again at the handshake (`Torrent.admits`)."""
        restricted = [t.allowed_keys for t in self.torrents.values() if t.allowed_keys is not None]
        return not restricted or any(peer in keys for keys in restricted)

    async def stop(self) -> None:
        """Stop every torrent (they save their resume data), close every peer and the tracker client."""
        for server in self._servers:
            server.close()
        await asyncio.gather(*(t.stop() for t in self.torrents.values()), return_exceptions=True)
        for conn in list(self._connections):
            conn.close("node stopping")
        for transport in list(self._secure_transports):
            transport.abort()
        if self._tracker_client is not None:
            await self._tracker_client.close()

    # -- what the torrents use (SwarmContext) ------------------------------------------------------
    @property
    def dht(self) -> DhtPeers | None:
        return self._node.dht if self._node is not None else None

    @property
    def lsd(self) -> LanPeers | None:
        return self._node.lsd if self._node is not None else None

    @property
    def tracker_client(self) -> TrackerClient:
        """The HTTP/UDP tracker client, made on first use (most swarms in tests have no tracker)."""
        if self._tracker_client is None:
            from peerloom.torrent.tracker_client import TrackerClient

            self._tracker_client = TrackerClient(families=frozenset(self.families))
        return self._tracker_client

    def run_blocking_future(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """`fn(*args)` in one of the node's worker threads (the loop's default executor before the engine starts)."""
        if self._node is None:
            return asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
        return self._node.workers.submit(fn, *args)

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.run_blocking_future(fn, *args)

    def torrent_for_hash(self, info_hash: bytes) -> Torrent | None:
        return self._by_hash.get(info_hash)

    def metadata_received(self, torrent: Torrent) -> None:
        """A magnet's info dictionary arrived; its v2 hash may now route peers too."""
        for h in torrent.hashes:
            self._by_hash.setdefault(h, torrent)

    async def connect(self, torrent: Torrent, address: tuple[str, int]) -> PeerConnection:
        """Dial a peer. Over uTP first when it is known to speak it (or `utp_first`), like libtorrent, and over TCP when
        the uTP dial fails (the peer is then remembered as not speaking uTP). Either way with MSE first unless
        `encryption` is "disable"; with "prefer", an encrypted handshake the peer breaks off is tried again in
        plaintext, as libtorrent does. An encrypted handshake refused over uTP ("require") is not tried over TCP:
        the peer answered, and its policy is the same on both."""
        if self._utp is not None and self._utp_peers.get(address, self.settings.utp_first):
            try:
                return await self.connect_utp(torrent, address)
            except EncryptionFailed:
                raise
            except (ConnectionError, TimeoutError, OSError) as exc:
                log.debug("uTP to %s failed (%r): trying TCP", address, exc)
                self._knows_utp(address, False)
        return await self._connect_over(torrent, address, functools.partial(self._dial_tcp, address))

    async def connect_utp(self, torrent: Torrent, address: tuple[str, int]) -> PeerConnection:
        """Dial a peer over uTP only (also BEP 55's simultaneous dial, where a TCP fallback would be pointless), with
        MSE as `encryption` says, as over TCP."""
        utp = self._utp
        if utp is None:
            raise ConnectionError("uTP is not running")

        async def dial(protocol: asyncio.BaseProtocol) -> None:
            await utp.connect(address, lambda: protocol, timeout=self.settings.connect_timeout)

        return await self._connect_over(torrent, address, dial)

    async def _connect_over(self, torrent: Torrent, address: tuple[str, int],
                            dial: Callable[[asyncio.BaseProtocol], Awaitable[None]]) -> PeerConnection:
        """The encryption policy over any byte stream: `dial(protocol)` opens one (TCP or uTP) running `protocol`."""
        policy = self.settings.encryption
        if policy != "disable":
            conn = PeerConnection(self, torrent, address, outgoing=True)
            encrypted = MseProtocol.outgoing(conn, torrent.wire_hash, timeout=self.settings.connect_timeout)
            await dial(encrypted)
            self._connections.add(conn)
            try:
                await asyncio.shield(encrypted.established)  # it times out by itself
                return conn
            except (OSError, TimeoutError, ProtocolError) as exc:
                if policy == "require":
                    raise EncryptionFailed(f"encrypted handshake failed: {exc}") from exc
                log.debug("%s: encrypted handshake failed (%r), trying plaintext", address, exc)
            except asyncio.CancelledError:
                encrypted.abort()
                raise
        conn = PeerConnection(self, torrent, address, outgoing=True)
        await dial(conn)
        self._connections.add(conn)
        return conn

    @property
    def utp_running(self) -> bool:
        return self._utp is not None

    async def _dial_tcp(self, address: tuple[str, int], protocol: asyncio.BaseProtocol) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.create_connection(lambda: protocol, *address), self.settings.connect_timeout)

    async def connect_secure(self, torrent: Torrent, address: Multiaddr) -> PeerConnection:
        """A peer wire connection over a stream of the secure layer (the remote key must match /p2p/)."""
        assert self._node is not None, "the engine dials once started"
        stream = await self._node.host.new_stream(address, [BITTORRENT_PROTOCOL])
        conn = PeerConnection(self, torrent, address, outgoing=True)
        self._node.tasks.spawn(self._hold(self._attach(stream, conn)), name=f"peer {address}")
        return conn

    def _attach(self, stream: Stream, conn: PeerConnection) -> StreamTransport:
        self._connections.add(conn)
        transport = StreamTransport(stream, conn)
        self._secure_transports.add(transport)
        return transport

    async def _hold(self, transport: StreamTransport) -> None:
        """Keep a peer wire over a secure stream until it closes (cancelling this aborts the stream)."""
        try:
            await transport.wait_closed()
        finally:
            self._secure_transports.discard(transport)

    def _incoming(self) -> asyncio.BufferedProtocol:
        """A connection to our port: plaintext or MSE, told apart by its first bytes (unless MSE is disabled)."""
        conn = PeerConnection(self, None)
        self._connections.add(conn)
        policy = self.settings.encryption
        if policy == "disable":
            return conn
        # "prefer" selects plaintext when the dialler offers both (libtorrent's default); "require" selects RC4
        return MseProtocol.incoming(
            conn,
            self._mse_skey,
            allow_plaintext=policy == "prefer",
            prefer_rc4=policy == "require",
            timeout=self.settings.connect_timeout,
        )

    def _mse_skey(self, req2: bytes) -> bytes | None:
        """The info-hash whose HASH('req2', SKEY) an MSE peer sent: any of our torrents' v1 hashes or truncated v2
        hashes (the ones handshakes carry), as libtorrent matches them. One SHA-1 per torrent, per connection."""
        return next((h for h in self._by_hash if skey_hash(h) == req2), None)

    def _incoming_utp(self, address: tuple[str, int]) -> asyncio.BaseProtocol:
        self._knows_utp(address, True)  # uTP shares the listen port: this address takes uTP dials too
        return self._incoming()

    def peer_lost(self, conn: PeerConnection) -> None:
        self._connections.discard(conn)

    def ban(self, address: tuple[str, int] | Multiaddr, peer_id: bytes | None) -> None:
        self._banned_addresses.add(_ban_key(address))
        if peer_id:
            self._banned_ids.add(peer_id)

    def is_banned(self, address: tuple[str, int] | Multiaddr, peer_id: bytes | None = None) -> bool:
        """A banned address is banned however it is spelt (an IPv4 address as ::ffff:a.b.c.d too)."""
        return (_ban_key(address) in self._banned_addresses
                or (peer_id is not None and peer_id in self._banned_ids))

    def is_self(self, address: tuple[str, int] | Multiaddr) -> bool:
        if isinstance(address, Multiaddr):
            return self._node is not None and address.peer_id == self._node.identity.peer_id
        if address[1] != self.port:
            return False
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(canonical_address(address)[0])
            return ip.is_loopback or ip.is_unspecified or address[0] == self._interface
        return False

    # -- LAN discovery (BEP 14): the node's LSD asks and tells us through these ---------------------
    def local_hashes(self) -> list[bytes]:
        """The info-hashes to announce on the LAN: every public torrent that is not paused."""
        return [h for t in self.torrents.values() if t.discoverable and not t.paused for h in t.hashes]

    def local_peer(self, info_hash: bytes, address: tuple[str, int]) -> None:
        """A LAN peer announced `info_hash` at `address`."""
        torrent = self._by_hash.get(info_hash)
        if torrent is not None and torrent.discoverable and not torrent.paused:
            torrent.peers_discovered([address])

    # -- torrents ----------------------------------------------------------------------------------
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


def _ban_key(address: tuple[str, int] | Multiaddr) -> tuple[str, int] | Multiaddr:
    """What a ban is kept under: a plain address with its IP canonical; a secure-layer peer's multiaddr as it is."""
    return address if isinstance(address, Multiaddr) else canonical_address(address)


def _allowed_keys(allow: list[PeerId], peers: list[tuple[str, int] | Multiaddr]) -> set[PeerId]:
    keys = set(allow)
    for peer in peers:
        if isinstance(peer, Multiaddr):
            if peer.peer_id is None:
                raise PeerloomError(f"a peer of a private swarm needs its /p2p/ id: {peer}")
            keys.add(peer.peer_id)
    return keys
