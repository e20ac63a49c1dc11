"""What `torrent/` needs from outside itself, declared here so that it never imports the node.

`SwarmContext` is the one interface a `Torrent` and its `PeerConnection`s see of the world around them (like
libtorrent's `session_interface`, kept small): our peer id, port and client name, a runner for blocking work, the
dialer, bans, the global rate limits, the resume store and the peer sources (DHT, LSD, trackers). The BitTorrent
engine (`torrent.engine`) implements it. `EngineNode` is what the engine itself uses of the node it runs in: the
slice of `peerloom.service.NodeContext` it reads, matched structurally (torrent/ sits below the service layer).

This module imports neither `swarm` nor `peer` (they import it): a torrent is passed through as `Any`, a peer wire
connection as the little `Dialled` the torrent reads of it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from peerloom.codec.multiaddr import Multiaddr
from peerloom.identity import Identity
from peerloom.net.stream import Stream
from peerloom.settings import Settings
from peerloom.torrent.ratelimit import TokenBucket
from peerloom.torrent.resume import ResumeStore
from peerloom.workers import WorkerPool

if TYPE_CHECKING:
    from peerloom.torrent.tracker_client import TrackerClient

T = TypeVar("T")
Address = tuple[str, int]
UdpSockets = dict[int, tuple[socket.socket, asyncio.DatagramTransport]]  # by address family: the socket, its transport


class DhtAnnounced(Protocol):
    peers: list[Address]
    stored: int


class DhtPeers(Protocol):
    """The Mainline DHT as a peer source (BEP 5)."""

    port: int  # our DHT node's UDP port, told to peers in PORT messages

    async def announce(self, info_hash: bytes, port: int | None = None, *, timeout: float | None = None,
                       on_peers: Callable[[list[Address]], None] | None = None) -> DhtAnnounced: ...

    def add_node(self, address: Address) -> None: ...


class SharedUdp(Protocol):
    """UDP sockets that let uTP share their port (the DHT's: libtorrent runs both on one socket).

    `share_socket(receive)` hands `receive` the datagrams that are not the owner's; `shared_sockets()` gives the
    sockets themselves, on which uTP sends exactly as on sockets of its own: it needs the raw socket to set the
    don't-fragment bit and to see EMSGSIZE for path MTU discovery (utp_mtu.py), which a transport's `sendto` hides.
    The sockets stay the owner's: it alone closes them, and its datagrams keep its own path MTU discovery mode."""

    port: int

    def share_socket(self, receive: Callable[[bytes, Any], None]) -> None: ...

    def shared_sockets(self) -> UdpSockets: ...


class LanPeers(Protocol):
    """Local service discovery (BEP 14) as a peer source."""

    def announce_soon(self) -> None: ...


class Dialled(Protocol):
    """A peer wire connection being dialled: `connected` resolves once its handshake is done."""

    connected: asyncio.Future[None]


class SwarmContext(Protocol):
    """What a torrent and its peer connections use from outside `torrent/` (see the module docstring)."""

    settings: Settings
    peer_id: bytes  # our BitTorrent peer id (20 bytes)
    port: int  # the plain BitTorrent TCP port
    ipv6_address: str | None  # our IPv6 address where the port takes IPv6 peers (BEP 10 `ipv6`), if known
    client_name: str
    tracker_key: int
    download_bucket: TokenBucket  # the node's global rate limits, on top of each torrent's own
    upload_bucket: TokenBucket
    resume: ResumeStore

    @property
    def dht(self) -> DhtPeers | None: ...

    @property
    def lsd(self) -> LanPeers | None: ...

    @property
    def tracker_client(self) -> TrackerClient: ...

    def run_blocking_future(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]: ...

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T: ...

    async def connect(self, torrent: Any, address: Address) -> Dialled: ...

    async def connect_secure(self, torrent: Any, address: Multiaddr) -> Dialled: ...

    async def connect_utp(self, torrent: Any, address: Address) -> Dialled:
        """A dial over uTP only (BEP 55 hole punching); ConnectionError when uTP is off or the dial fails."""

    @property
    def utp_running(self) -> bool:
        """Whether uTP runs (on the DHT's socket or its own): hole punching needs it."""

    def torrent_for_hash(self, info_hash: bytes) -> Any: ...  # the `Torrent` of that info-hash, or None

    def metadata_received(self, torrent: Any) -> None: ...

    def peer_lost(self, conn: Any) -> None: ...

    def ban(self, address: Address, peer_id: bytes | None) -> None: ...

    def is_banned(self, address: Address, peer_id: bytes | None = None) -> bool: ...

    def peer_speaks_utp(self, address: Address) -> None:
        """A peer known to take uTP (BEP 11's PEX flag): dialled over uTP first."""

    def is_self(self, address: Address | Multiaddr) -> bool: ...


class SecureStreams(Protocol):
    """The secure layer's host as the engine uses it: streams of a protocol to a peer's multiaddr."""

    async def new_stream(self, peer: Any, protocols: Any) -> Stream: ...


class EngineTasks(Protocol):
    def spawn(self, coro: Any, *, name: str | None = None) -> asyncio.Task[Any]: ...


class EngineNode(Protocol):
    """What the engine uses of the node (a structural slice of `peerloom.service.NodeContext`)."""

    identity: Identity
    host: SecureStreams
    workers: WorkerPool
    dht: DhtPeers | None
    lsd: LanPeers | None
    tasks: EngineTasks
