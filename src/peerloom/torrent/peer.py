"""One BitTorrent peer connection: the asyncio driver around the sans-I/O wire parser.

The connection owns the socket and the per-peer state (choked/interested both ways, the peer's
pieces, our outstanding requests, its pending requests); the swarm (`Torrent`) decides what to ask
for and what to serve. Writes are coalesced: everything queued during one loop iteration leaves in a
single `transport.write`, since each send costs tens of microseconds here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from peerloom.errors import ProtocolError
from peerloom.torrent import extensions as ext
from peerloom.torrent import wire
from peerloom.torrent.peer_pieces import PeerPieces
from peerloom.torrent.wire import BLOCK_SIZE, Piece, Request

if TYPE_CHECKING:
    from peerloom.torrent.context import SwarmContext
    from peerloom.torrent.swarm import Torrent

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 20.0
KEEPALIVE_EVERY = 90.0
MAX_PENDING_REQUESTS = 2000  # requests a peer may queue with us (we advertise `reqq` = 1000)
WRITE_HIGH_WATER = 4 * 1024 * 1024
MIN_PIPELINE = 32
MAX_PIPELINE = 500
SLOW_START = 3.0  # seconds after connecting during which the request pipeline grows per block received
RECEIVE_MIN = 64 * 1024  # the receive buffer: small while the peer sends little, grown while reads fill it
RECEIVE_MAX = 1024 * 1024


class PeerConnection(asyncio.BufferedProtocol):
    """A peer wire connection, outgoing (`torrent` known) or incoming (torrent found by info-hash).

    Over TCP the transport reads straight into a receive buffer of ours (a BufferedProtocol), which is reused:
    no `bytes` object is made and copied per read, and a busy peer is read a megabyte at a time. Other
    transports (a stream of the secure layer) hand us bytes through `data_received`.
    """

    def __init__(
        self,
        engine: SwarmContext,
        torrent: Torrent | None,
        address: Any = None,
        outgoing: bool = False,
    ) -> None:
        self.engine = engine
        self.torrent: Torrent | None = torrent
        # the peer's listen address when known (outgoing, or learnt from the ext handshake): (host, port) for
        # plain BitTorrent, a multiaddr for the secure layer
        self.address = address
        self.secure_key: Any = None  # the remote's PeerId when we run over a secure-layer stream
        self.outgoing = outgoing
        self.transport: asyncio.Transport | None = None
        self.remote: tuple[str, int] | None = None
        self.handshake: wire.Handshake | None = None
        self.info_hash: bytes | None = None
        self.parser = wire.WireParser()
        self._receive = bytearray(RECEIVE_MIN)
        self._receive_busy = False  # a read of RECEIVE_MIN or more since the last tick: keep the buffer large
        self._hs_buffer = bytearray()
        self._out: list[bytes | memoryview] = []
        self._flush_scheduled = False
        self.closed = False
        self.close_reason = ""
        self.connected = asyncio.get_running_loop().create_future()

        # protocol state (BEP 3): both start choked and not interested
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.holdings = PeerPieces()  # the peer's pieces, from its bitfield/have/have_all/have_none in any order
        self.ext_ids: dict[str, int] = {}
        self.ext_handshake: ext.ExtHandshake | None = None
        self.client = ""

        # transfer state
        self.outstanding: dict[tuple[int, int], float] = {}
        self.pending: deque[tuple[int, int, int]] = deque()
        self.awaiting_piece = -1  # the piece its request queue waits on while it loads from disk
        self.serving_piece = -1  # the piece its queue's head is served from (read-ahead runs when that changes)
        self.pipeline = MIN_PIPELINE
        self.snubbed = False
        self.write_paused = False
        now = time.monotonic()
        self.last_block_at = now
        self.last_received = now
        self.last_sent = now
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
    def peer_id(self) -> bytes | None:
        return self.handshake.peer_id if self.handshake else None

    @property
    def bits(self) -> bytearray:
        """The peer's pieces, one 0/1 byte each once the metadata is known; empty while it has told us nothing."""
        return self.holdings.bits

    @property
    def is_seed(self) -> bool:
        return self.holdings.is_seed

    @property
    def key(self) -> Any:
        """What identifies the peer for bans and candidates: its listen address, else where it came from."""
        return self.address or self.remote or ("?", 0)

    def __repr__(self) -> str:
        where = f"{self.key[0]}:{self.key[1]}" if isinstance(self.key, tuple) else str(self.key)
        return f"<peer {where} {self.client or '?'}>"

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio subclasses
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        self.remote = (peer[0], peer[1]) if peer else None
        self.secure_key = transport.get_extra_info("peer_id")
        if self.outgoing and self.torrent is not None:
            self._send_handshake(self.torrent.wire_hash)
        self._hs_timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self._handshake_timeout)

    def _handshake_timeout(self) -> None:
        if self.handshake is None:
            self.close("handshake timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        self._hs_timer.cancel()
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
        self.last_received = time.monotonic()
        try:
            if self.handshake is None:
                data = self._receive_handshake(data)
                if not data:
                    return
            messages = self.parser.feed(data)
        except ProtocolError as exc:
            self.close(f"protocol error: {exc}")
            return
        torrent = self.torrent
        if torrent is None:
            return
        try:
            # pieces and requests (most of what a busy connection brings) go straight to their handlers; no message
            # depends on what came before it (BEP 3's "bitfield first" is a rule for senders: see `on_message`)
            on_piece, on_request, on_message = torrent._on_piece, torrent._on_request, torrent.on_message
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

    # -- handshake ---------------------------------------------------------------------------
    def _send_handshake(self, info_hash: bytes) -> None:
        assert self.torrent is not None
        self.info_hash = info_hash
        reserved = wire.handshake_reserved(info_hash, self.torrent.info_hash_v2, dht=self.torrent.dht_enabled)
        self.send(wire.encode_handshake(wire.Handshake(info_hash, self.engine.peer_id, reserved)))

    def _receive_handshake(self, data: bytes | memoryview) -> bytes:
        self._hs_buffer += data
        if len(self._hs_buffer) < wire.HANDSHAKE_LENGTH:
            if not wire.PROTOCOL.startswith(bytes(self._hs_buffer[: len(wire.PROTOCOL)])):
                raise wire.WireError("not a BitTorrent handshake")
            return b""
        hs = wire.parse_handshake(bytes(self._hs_buffer[: wire.HANDSHAKE_LENGTH]))
        rest = bytes(self._hs_buffer[wire.HANDSHAKE_LENGTH :])
        self._hs_buffer = bytearray()
        if hs.peer_id == self.engine.peer_id:
            raise wire.WireError("connected to ourselves")
        if self.torrent is None:
            torrent = self.engine.torrent_for_hash(hs.info_hash)
            if torrent is None:
                raise wire.WireError("unknown info-hash")
            refusal = torrent.admits(self)
            if refusal is not None:
                raise wire.WireError(refusal)
            self.torrent = torrent
            self._send_handshake(wire.answer_info_hash(hs, torrent.info_hash_v2))
        elif hs.info_hash != self.info_hash:
            assert self.info_hash is not None
            if not wire.answer_accepted(self.info_hash, hs.info_hash, self.torrent.info_hash_v2):
                raise wire.WireError("peer answered with another info-hash")
            self.info_hash = hs.info_hash
        self.handshake = hs
        self._hs_timer.cancel()
        if not self.torrent.peer_ready(self):
            return b""
        if not self.connected.done():
            self.connected.set_result(None)
        return rest

    # -- sending -----------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue bytes; everything queued in one loop iteration goes out in one write."""
        if self.closed:
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
            self.last_sent = time.monotonic()

    def send_message(self, message: wire.Message) -> None:
        self.send(wire.encode(message))

    def send_extended(self, name: str, payload: bytes) -> bool:
        ext_id = self.ext_ids.get(name)
        if not ext_id:
            return False
        self.send_message(wire.Extended(ext_id, payload))
        return True

    def choke(self) -> None:
        if not self.am_choking:
            self.am_choking = True
            self.send_message(wire.Choke())
            if self.handshake and self.handshake.supports_fast:
                for index, begin, length in self.pending:
                    self.send_message(wire.RejectRequest(index, begin, length))
            self.pending.clear()

    def unchoke(self) -> None:
        if self.am_choking:
            self.am_choking = False
            self.send_message(wire.Unchoke())

    def set_interested(self, interested: bool) -> None:
        if interested != self.am_interested:
            self.am_interested = interested
            self.send_message(wire.Interested() if interested else wire.NotInterested())

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
