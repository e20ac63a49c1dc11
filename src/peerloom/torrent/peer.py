"""One BitTorrent peer connection: the asyncio driver around the sans-I/O `PeerWire`.

The connection owns the socket, the receive buffer, the write queue and one timer; the protocol state (handshake,
choked/interested both ways, the peer's pieces, the request queues) and its rules are the `PeerWire`'s, which it
feeds what it reads and whose bytes it writes. The swarm (`Torrent`) gets the events and decides what to ask for
and what to serve. Writes are coalesced: everything queued during one loop iteration leaves in a single
`transport.write`, since each send costs tens of microseconds here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from peerloom.codec.compact import canonical_address, format_address
from peerloom.errors import ProtocolError
from peerloom.torrent import extensions as ext
from peerloom.torrent import wire
from peerloom.torrent.peer_pieces import PeerPieces
from peerloom.torrent.peer_wire import KEEPALIVE_EVERY as KEEPALIVE_EVERY
from peerloom.torrent.peer_wire import MAX_PENDING_REQUESTS as MAX_PENDING_REQUESTS
from peerloom.torrent.peer_wire import PeerWire, Phase
from peerloom.torrent.wire import BLOCK_SIZE, Piece, Request

if TYPE_CHECKING:
    from peerloom.torrent.context import SwarmContext

log = logging.getLogger(__name__)


class TorrentSide(Protocol):
    """What a peer connection needs of its torrent (the swarm's `Torrent` is one); declared here so that the
    driver does not import the swarm that imports it."""

    wire_hash: bytes
    info_hash_v2: bytes | None
    on_piece: Callable[[PeerConnection, Piece], None]
    serve: Callable[[PeerConnection], None]

    @property
    def dht_enabled(self) -> bool: ...
    def on_request(self, peer: PeerConnection, m: Request) -> None: ...
    def on_message(self, peer: PeerConnection, m: wire.Message) -> None: ...
    def after_messages(self, peer: PeerConnection) -> None: ...
    def admits(self, peer: PeerConnection) -> str | None: ...
    def peer_ready(self, peer: PeerConnection) -> bool: ...
    def peer_lost(self, peer: PeerConnection) -> None: ...

WRITE_HIGH_WATER = 4 * 1024 * 1024
MIN_PIPELINE = 32
MAX_PIPELINE = 500
SLOW_START = 3.0  # seconds after connecting during which the request pipeline grows per block received
RECEIVE_MIN = 64 * 1024  # the receive buffer: small while the peer sends little, grown while reads fill it
RECEIVE_MAX = 1024 * 1024


def _wire_field(name: str, doc: str) -> property:
    """A field of the connection's `PeerWire`, read and written through the connection (the swarm's interface)."""
    return property(lambda self: getattr(self.wire, name), lambda self, value: setattr(self.wire, name, value), doc=doc)


class PeerConnection(asyncio.BufferedProtocol):
    """A peer wire connection, outgoing (`torrent` known) or incoming (torrent found by info-hash).

    Over TCP the transport reads straight into a receive buffer of ours (a BufferedProtocol), which is reused:
    no `bytes` object is made and copied per read, and a busy peer is read a megabyte at a time. Other
    transports (a stream of the secure layer) hand us bytes through `data_received`.
    """

    am_choking = _wire_field("am_choking", "We choke the peer.")
    am_interested = _wire_field("am_interested", "We are interested in the peer.")
    peer_choking = _wire_field("peer_choking", "The peer chokes us.")
    peer_interested = _wire_field("peer_interested", "The peer is interested in us.")
    ext_handshake = _wire_field("ext_handshake", "The peer's BEP 10 handshake, merged over every one it sent.")
    ext_ids = _wire_field("ext_ids", "The peer's BEP 10 message ids by extension name.")
    client = _wire_field("client", "The peer's client name, from its extension handshake.")

    def __init__(
        self,
        engine: SwarmContext,
        torrent: TorrentSide | None,
        address: Any = None,
        outgoing: bool = False,
    ) -> None:
        self.engine = engine
        self.torrent: TorrentSide | None = torrent
        # the peer's listen address when known (outgoing, or learnt from the ext handshake): (host, port) for
        # plain BitTorrent, a multiaddr for the secure layer
        self.address = address
        self.secure_key: Any = None  # the remote's PeerId when we run over a secure-layer stream
        self.outgoing = outgoing
        self.transport: asyncio.Transport | None = None
        self.remote: tuple[str, int] | None = None  # where the connection comes from (canonical IP, see codec.compact)
        now = time.monotonic()
        self.wire = PeerWire(engine.peer_id, outgoing=outgoing, now=now)
        self._receive = bytearray(RECEIVE_MIN)
        self._receive_busy = False  # a read of RECEIVE_MIN or more since the last tick: keep the buffer large
        self._out: list[bytes | memoryview] = []
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.close_reason = ""
        self.connected = asyncio.get_running_loop().create_future()

        # the wire's request queues, shared: the swarm books requests in them once per block
        self.outstanding = self.wire.outstanding
        self.pending = self.wire.pending
        self.awaiting_piece = -1  # the piece its request queue waits on while it loads from disk
        self.serving_piece = -1  # the piece its queue's head is served from (read-ahead runs when that changes)
        self.pipeline = MIN_PIPELINE
        self.snubbed = False
        self.write_paused = False
        self.last_block_at = now
        self.connected_at = now
        self.bytes_down = 0
        self.bytes_up = 0
        self.rate_down = 0.0
        self.rate_up = 0.0
        self._rate_mark = (now, 0, 0)
        self.metadata_requests: set[int] = set()
        self.pex = ext.PexState()  # the peers we told it about (BEP 11)
        self.no_hashes = False  # rejected a BEP 52 hash request: ask others

    # -- identity ----------------------------------------------------------------------------
    @property
    def handshake(self) -> wire.Handshake | None:
        return self.wire.handshake

    @property
    def info_hash(self) -> bytes | None:
        return self.wire.info_hash

    @property
    def holdings(self) -> PeerPieces:
        return self.wire.holdings

    @property
    def last_received(self) -> float:
        return self.wire.last_received

    @property
    def last_sent(self) -> float:
        return self.wire.last_sent

    @property
    def peer_id(self) -> bytes | None:
        hs = self.wire.handshake
        return hs.peer_id if hs else None

    @property
    def bits(self) -> bytearray:
        """The peer's pieces, one 0/1 byte each once the metadata is known; empty while it has told us nothing."""
        return self.wire.holdings.bits

    @property
    def is_seed(self) -> bool:
        return self.wire.holdings.is_seed

    @property
    def key(self) -> Any:
        """What identifies the peer for bans and candidates: its listen address, else where it came from."""
        return self.address or self.remote or ("?", 0)

    def __repr__(self) -> str:
        where = format_address(self.key) if isinstance(self.key, tuple) else str(self.key)
        return f"<peer {where} {self.client or '?'}>"

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio subclasses
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        # an IPv4 peer reached through a dual-stack socket is reported as ::ffff:a.b.c.d: keep it as IPv4
        self.remote = canonical_address((peer[0], peer[1])) if peer else None
        self.secure_key = transport.get_extra_info("peer_id")
        torrent = self.torrent
        if self.outgoing and torrent is not None:
            self.send(self.wire.start(torrent.wire_hash, torrent.info_hash_v2, dht=torrent.dht_enabled))
        self._arm_timer()

    def _arm_timer(self) -> None:
        """One timer per connection, at the wire's next wakeup (the handshake deadline, then the keep-alive)."""
        delay = max(0.0, self.wire.next_wakeup() - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._wake)

    def _wake(self) -> None:
        if self.closed:
            return
        try:
            data = self.wire.tick(time.monotonic())
        except ProtocolError as exc:
            self.close(str(exc))
            return
        if data:
            self.send(data)
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.closed:
            self.closed = True
            self.close_reason = self.close_reason or (f"connection lost: {exc}" if exc else "connection closed")
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(self.close_reason))
            self.connected.exception()  # an incoming connection has no one waiting on it: not an unhandled error
        if self.torrent is not None:
            self.torrent.peer_lost(self)
        self.engine.peer_lost(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.torrent is not None and self.pending:
            self.torrent.serve(self)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self._receive

    def buffer_updated(self, nbytes: int) -> None:
        buf = self._receive
        if nbytes >= RECEIVE_MIN:
            self._receive_busy = True
            if nbytes == len(buf) and nbytes < RECEIVE_MAX:
                # a new buffer, not a resize: the messages below hold views of this one until they are handled
                self._receive = bytearray(2 * nbytes)
        self.data_received(memoryview(buf)[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self.closed:
            return
        peer_wire = self.wire
        now = time.monotonic()
        try:
            if peer_wire.phase is not Phase.OPEN:
                if not peer_wire.receive(data, now) or not self._handshake_received():
                    return
                data = b""  # what followed the handshake is held by the wire
            messages = peer_wire.receive(data, now)
        except ProtocolError as exc:
            self.close(f"protocol error: {exc}")
            return
        torrent = self.torrent
        if torrent is None:
            return
        try:
            # pieces and requests (most of what a busy connection brings) go straight to their handlers; no message
            # depends on what came before it (BEP 3's "bitfield first" is a rule for senders: see `on_message`)
            on_piece, on_request, on_message = torrent.on_piece, torrent.on_request, torrent.on_message
            for message in messages:
                kind = type(message)
                if kind is Piece:
                    on_piece(self, message)
                elif kind is Request:
                    on_request(self, message)
                else:
                    on_message(self, message)
                if self.closed:
                    return
            torrent.after_messages(self)
        except ProtocolError as exc:
            self.close(f"protocol error: {exc}")

    def _handshake_received(self) -> bool:
        """The peer's handshake is in: find an incoming peer's torrent and answer; let the torrent admit it."""
        hs = self.wire.handshake
        assert hs is not None
        torrent = self.torrent
        if torrent is None:
            torrent = self.engine.torrent_for_hash(hs.info_hash)
            if torrent is None:
                raise wire.WireError("unknown info-hash")
            refusal = torrent.admits(self)
            if refusal is not None:
                raise wire.WireError(refusal)
            self.torrent = torrent
            self.send(self.wire.accept(torrent.info_hash_v2, dht=torrent.dht_enabled))
        self._rearm()
        if not torrent.peer_ready(self):
            return False
        if not self.connected.done():
            self.connected.set_result(None)
        return True

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._arm_timer()

    # -- sending -----------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue bytes; everything queued in one loop iteration goes out in one write."""
        if self.closed or not data:
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._schedule_flush()

    def send_parts(self, parts: list[bytes | memoryview]) -> None:
        """Queue several pieces of bytes at once (a seeder's block headers and data)."""
        if self.closed:
            return
        self._out += parts
        if not self._flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        self._flush_scheduled = True
        asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._out and not self.closed and self.transport is not None:
            out, self._out = self._out, []
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.writelines(out)  # uvloop hands the list to one writev: no join, no copy
            self.wire.sent(time.monotonic())

    def send_message(self, message: wire.Message) -> None:
        self.send(self.wire.send(message))

    def send_extended(self, name: str, payload: bytes) -> bool:
        ext_id = self.ext_ids.get(name)
        if not ext_id:
            return False
        self.send_message(wire.Extended(ext_id, payload))
        return True

    def choke(self) -> None:
        self.send(self.wire.send(wire.Choke()))

    def unchoke(self) -> None:
        self.send(self.wire.send(wire.Unchoke()))

    def set_interested(self, interested: bool) -> None:
        self.send(self.wire.send(wire.Interested() if interested else wire.NotInterested()))

    def update_rates(self, now: float) -> None:
        then, down, up = self._rate_mark
        dt = now - then
        if dt <= 0:
            return
        # a short exponential average: smooth enough for choking, quick enough for a progress line
        alpha = min(1.0, dt / 2.0)
        self.rate_down += alpha * ((self.bytes_down - down) / dt - self.rate_down)
        self.rate_up += alpha * ((self.bytes_up - up) / dt - self.rate_up)
        self._rate_mark = (now, self.bytes_down, self.bytes_up)
        if not self._receive_busy and len(self._receive) > RECEIVE_MIN:
            self._receive = bytearray(RECEIVE_MIN)  # quiet for a while: give the memory back
        self._receive_busy = False
        # request pipeline sized to the link: enough blocks in flight for ~1 s of data at the current rate;
        # during slow start the rate is still climbing, so the pipeline only grows
        target = max(MIN_PIPELINE, min(MAX_PIPELINE, int(self.rate_down / BLOCK_SIZE) + MIN_PIPELINE))
        self.pipeline = max(self.pipeline, target) if self.in_slow_start(now) else target

    def in_slow_start(self, now: float) -> bool:
        return now - self.connected_at < SLOW_START

    def block_arrived(self, now: float) -> None:
        """Slow start, as TCP does it: while the pipeline is full, each block that arrives lets one more
        request out, so the requests in flight double every round trip until the rate estimate takes over."""
        self.last_block_at = now
        if len(self.outstanding) + 1 >= self.pipeline and self.pipeline < MAX_PIPELINE and self.in_slow_start(now):
            self.pipeline += 1

    def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        log.debug("%r closed: %s", self, reason)
        if self.transport is not None:
            if self._out:
                self.transport.write(b"".join(self._out))
                self._out = []
            self.transport.close()
