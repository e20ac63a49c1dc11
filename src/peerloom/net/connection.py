"""One secure libp2p connection over TCP: the asyncio driver around the sans-I/O protocols.

The upgrade follows the libp2p connections spec: multistream-select agrees on `/noise` in plaintext,
the Noise XX handshake authenticates the remote's Ed25519 identity (its PeerId must be the one we
dialled, when we dialled one), multistream-select agrees on `/yamux/1.0.0` inside Noise, and yamux
then carries streams, each of which negotiates its own protocol with multistream-select.

Bulk data moves through reused buffers (see `peerloom.net.buffers`): the connection is a BufferedProtocol reading
into one growable buffer; whole Noise frames are decrypted from it into a pooled plaintext buffer, whose yamux
payloads are lent to the streams as views until the application reads them (a few such buffers per connection;
when all are lent, reading pauses for one loop turn so the readers can catch up, and if they did not, payloads
are copied instead); small reads are decrypted into one reused buffer that yamux copies out of. Output is
encrypted from yamux's frames straight into pooled buffers that the transport may hold until the socket takes them.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from peerloom.errors import AccessRefused, PeerloomError
from peerloom.identity import PeerId
from peerloom.net import multistream, yamux
from peerloom.net.buffers import BufferPool, ReceiveBuffer
from peerloom.net.noise import NoiseHandshake, NoiseTransport
from peerloom.net.stream import Stream

if TYPE_CHECKING:
    from peerloom.identity import Identity

log = logging.getLogger(__name__)

NOISE_PROTOCOL = "/noise"
HANDSHAKE_TIMEOUT = 15.0
PING_EVERY = 15.0  # yamux pings: keepalive, the round trip that window auto-tuning needs, and buffer trimming
WRITE_HIGH_WATER = 4 * 1024 * 1024
FLUSH_CHUNK = 1024 * 1024  # plaintext encrypted and written per transport write
READ_BUFFER_MIN = 16 * 1024  # the receive buffer of a quiet connection
READ_BUFFER_MAX = 1024 * 1024  # ... and of a busy one: bytes per socket read
LENT_BUFFERS = 4  # plaintext buffers lent to streams at once, each as large as the receive buffer
LEND_FROM = 64 * 1024  # reads this large are decrypted into a lent buffer; yamux copies out of smaller ones
SEND_BUFFERS = 8  # pooled output buffers: the write high water and one being filled
POOLED_WRITE = 64 * 1024  # writes this large are encrypted into pooled buffers, smaller ones into fresh ones
# The largest yamux frame we send, header included. A Noise frame (65,519 plaintext bytes) that spans a yamux header
# and its payload is gathered (copied) before it is sealed: with 64 KiB yamux frames nearly every Noise frame does,
# with 256 KiB frames one in four. Measured (bench/stream_bench.py, 1 GiB, one stream): sender CPU -13 %, receiver
# -7 %. Receivers bound a frame by the stream's window (256 KiB initially), not by 64 KiB: go-yamux, js-libp2p.
YAMUX_FRAME_SIZE = 256 * 1024


class LinkError(PeerloomError):
    """Dialling, upgrading or using a secure connection failed."""


class PeerIdMismatch(LinkError):
    """The key that answered is not the PeerId we dialled."""


class PeerRefused(LinkError, AccessRefused):
    """The peer authenticated our key and refused it: it answered `na` to a protocol that it advertises (admission per
    protocol, see `peerloom.net.host`)."""


class Phase(enum.Enum):
    SECURITY = "negotiating security"  # multistream-select on the plaintext: /noise
    HANDSHAKE = "noise handshake"
    MUXER = "negotiating muxer"  # multistream-select inside Noise: /yamux/1.0.0
    OPEN = "open"
    CLOSED = "closed"


class Connection(asyncio.BufferedProtocol):
    """A TCP connection being upgraded to, then used as, Noise + yamux. `ready` resolves once open."""

    def __init__(
        self,
        identity: Identity,
        *,
        initiator: bool,
        expected_peer: PeerId | None = None,
        on_open: Callable[[Connection], bool] | None = None,
        on_stream: Callable[[Stream], None] | None = None,
        on_close: Callable[[Connection], None] | None = None,
        max_streams: int = yamux.MAX_STREAMS,
        role_for: Callable[[tuple[str, int] | None], bool | None] | None = None,
    ) -> None:
        self.identity = identity
        self.initiator = initiator
        # an accepted socket may have to play the initiator: a hole punch's TCP simultaneous open, where DCUtR gives
        # the roles (`role_for(remote address)` answers True/False for such an address, None for any other)
        self._role_for = role_for
        self.expected_peer = expected_peer
        self.remote_peer: PeerId | None = None
        self.remote_address: tuple[str, int] | None = None
        self.local_address: tuple[str, int] | None = None
        self.phase = Phase.SECURITY
        self.close_reason = ""
        self.ready: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self.streams: dict[int, Stream] = {}
        self.last_active = time.monotonic()
        self.info: Any = None  # what identify learnt of the remote (set by the host)
        # Carried by a relay (Circuit Relay v2): limited in time and bytes, and only protocols that run on limited
        # connections are served over it (set by the host, which runs this connection over the relay's stream).
        self.limited = False
        self.relay: PeerId | None = None
        self._retired: str | None = None  # replaced by another connection: closes once its streams are done
        self._on_open = on_open
        self._on_stream = on_stream
        self._on_close = on_close
        self._max_streams = max_streams
        self._transport: asyncio.Transport | None = None
        self._select: multistream.Dialer | multistream.Listener | None = None
        self._handshake: NoiseHandshake | None = None
        self._noise: NoiseTransport | None = None
        self.session: yamux.Session | None = None
        self._received = ReceiveBuffer(READ_BUFFER_MIN, READ_BUFFER_MAX)
        self._lent_buffers = BufferPool(LENT_BUFFERS)  # plaintext whose payloads streams hold as views
        self._plaintext = bytearray()  # plaintext of small reads, or of any when every lent buffer is held
        self._send_buffers = BufferPool(SEND_BUFFERS)
        self._readers_turn: asyncio.Handle | None = None  # reading paused until the streams' readers had a turn
        self._flush_scheduled = False
        self._paused = False
        self._timers: list[asyncio.TimerHandle] = []
        self._closing: set[int] = set()  # streams half-closed by either side: forgotten once yamux drops them

    def __repr__(self) -> str:
        return f"<connection {self.remote_peer or '?'} {self.phase.value}>"

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop transports are not asyncio subclasses
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)  # type: ignore[attr-defined]
        peer, local = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        self.remote_address = (peer[0], peer[1]) if peer else None
        self.local_address = (local[0], local[1]) if local else None
        if self._role_for is not None and (role := self._role_for(self.remote_address)) is not None:
            self.initiator = role
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(HANDSHAKE_TIMEOUT, self._upgrade_timeout))
        select = multistream.Dialer if self.initiator else multistream.Listener
        self._select = select([NOISE_PROTOCOL])
        self._write_raw(self._select.initiate())

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed(self.close_reason or (f"connection lost: {exc}" if exc else "connection closed by the peer"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._schedule_flush()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._received.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        received = self._received
        received.buffer_updated(nbytes)
        if self.phase is Phase.CLOSED:
            received.clear()
            return
        self.last_active = time.monotonic()
        try:
            if self._noise is not None:
                self._on_ciphertext()
                return
            data = bytes(received.unread())  # the plaintext upgrade: a few small messages
            received.clear()
            if self.phase is Phase.SECURITY:
                self._on_security(data)
            else:
                self._on_handshake(data)
        except PeerloomError as exc:  # a protocol violation or a failed check costs the connection
            self.close(str(exc), error=exc)

    # -- the upgrade -----------------------------------------------------------------------------
    def _on_security(self, data: bytes) -> None:
        select = self._select
        assert select is not None
        self._write_raw(select.receive(data))
        if select.protocol is None:
            return
        self.phase = Phase.HANDSHAKE
        self._handshake = NoiseHandshake(
            initiator=self.initiator,
            identity_key=self.identity.private_key,
            static_key=X25519PrivateKey.generate(),
        )
        self._write_raw(self._handshake.start())
        rest = select.leftover()
        if rest:
            self._on_handshake(rest)

    def _on_handshake(self, data: bytes) -> None:
        hs = self._handshake
        assert hs is not None
        self._write_raw(hs.receive(data))
        if not hs.complete:
            return
        assert hs.remote_identity is not None
        self.remote_peer = PeerId.from_public_key(hs.remote_identity)
        if self.expected_peer is not None and self.remote_peer != self.expected_peer:
            raise PeerIdMismatch(f"dialled {self.expected_peer} but {self.remote_peer} answered")
        self._noise = hs.transport()
        self._handshake = None
        self.phase = Phase.MUXER
        self._select = (
            multistream.Dialer([yamux.PROTOCOL_ID]) if self.initiator else multistream.Listener([yamux.PROTOCOL_ID])
        )
        self._write_secure(self._select.initiate())
        self._received.append(self._noise.take_pending())  # what came after the handshake's last message
        self._on_ciphertext()

    def _on_ciphertext(self, *, may_wait: bool = True) -> None:
        """Decrypt the whole Noise frames in the receive buffer and pass the plaintext on; an unfinished frame stays
        in the receive buffer for the next read."""
        while len(self._received) and self.phase is not Phase.CLOSED and self._decrypt_some(may_wait):
            pass

    def _decrypt_some(self, may_wait: bool) -> bool:
        """Decrypt what fits into one plaintext buffer and pass it on; False when no whole frame is waiting, or
        when the bytes wait for the streams' readers to release a lent buffer."""
        noise = self._noise
        received = self._received
        assert noise is not None
        room = received.capacity  # plaintext is never longer than its ciphertext
        bulk = len(received) >= LEND_FROM
        plaintext = self._lent_buffers.take(room) if bulk else None
        lend = plaintext is not None
        if plaintext is None:
            if bulk and may_wait and self._transport is not None:
                # Every lent buffer still backs unread stream data, often only because several reads came in one
                # loop turn: pause reading for a turn, in which the woken readers usually consume it, then go on.
                if self._readers_turn is None:
                    self._transport.pause_reading()
                    self._readers_turn = asyncio.get_running_loop().call_soon(self._after_readers_turn)
                return False
            if len(self._plaintext) < len(received):
                self._plaintext = bytearray(len(received))
            plaintext = self._plaintext
        used, size = noise.decrypt_into(received.unread(), plaintext)
        if not used:
            return False
        received.consume(used)
        if size:
            self._on_plaintext(memoryview(plaintext)[:size], lend=lend)
        return True

    def _after_readers_turn(self) -> None:
        """Decrypt what waited (copying payloads if the readers still hold every lent buffer), then read on."""
        self._readers_turn = None
        if self.phase is Phase.CLOSED:
            return
        try:
            self._on_ciphertext(may_wait=False)
        except PeerloomError as exc:
            self.close(str(exc), error=exc)
            return
        if self._transport is not None and self.phase is not Phase.CLOSED:
            self._transport.resume_reading()

    def _on_plaintext(self, data: bytearray | memoryview, *, lend: bool = False) -> None:
        """Plaintext for multistream (which copies) or yamux: with `lend`, stream payloads stay views of `data`
        until read; otherwise yamux copies them, so the buffer may be reused as soon as this returns."""
        if not data:
            return
        if self.phase is Phase.MUXER:
            select = self._select
            assert select is not None
            self._write_secure(select.receive(data))
            if select.protocol is None:
                return
            data = bytearray(select.leftover())
            self._select = None
            self.session = yamux.Session(client=self.initiator, max_streams=self._max_streams,
                                         max_frame_size=YAMUX_FRAME_SIZE)
            self.phase = Phase.OPEN
            for timer in self._timers:
                timer.cancel()
            self._timers = []
            if self._on_open is not None and not self._on_open(self):
                return
            self._ping()
            if not self.ready.done():
                self.ready.set_result(self)
            if not data:
                return
        session = self.session
        assert session is not None
        try:
            events = session.receive_data(data, time.monotonic(), copy=not lend)
        finally:
            self._schedule_flush()  # a go-away or window updates may be waiting
        self._dispatch(events)

    def _upgrade_timeout(self) -> None:
        if self.phase not in (Phase.OPEN, Phase.CLOSED):
            self.close(f"secure upgrade not finished within {HANDSHAKE_TIMEOUT:.0f} s ({self.phase.value})")

    def _ping(self) -> None:
        if self.session is None or self.phase is not Phase.OPEN:
            return
        self._received.trim()  # buffers a quiet spell did not need shrink back
        self._lent_buffers.trim(self._received.capacity)  # plaintext buffers are as large as the receive buffer
        self._send_buffers.trim()
        self._plaintext = bytearray()
        self.session.ping(time.monotonic())
        self._schedule_flush()
        self._timers = [asyncio.get_running_loop().call_later(PING_EVERY, self._ping)]

    # -- yamux events ----------------------------------------------------------------------------
    def _dispatch(self, events: list[yamux.Event]) -> None:
        streams = self.streams
        for event in events:
            if isinstance(event, yamux.DataReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.feed(event.data)
                elif self.session is not None:  # data for a stream we already gave up: credit and drop it
                    self.session.acknowledge_received(event.stream_id, len(event.data), time.monotonic())
            elif isinstance(event, yamux.StreamOpened):
                stream = Stream(self, event.stream_id)
                streams[event.stream_id] = stream
                if self._on_stream is not None:
                    self._on_stream(stream)
            elif isinstance(event, yamux.StreamWritable):
                if (stream := streams.get(event.stream_id)) is not None:
                    stream.set_writable()
            elif isinstance(event, yamux.StreamEnded):
                if (stream := streams.get(event.stream_id)) is not None:
                    stream.feed_eof()
                    self._closing.add(event.stream_id)
            elif isinstance(event, yamux.StreamReset):
                if (stream := streams.pop(event.stream_id, None)) is not None:
                    stream.fail("stream reset by the peer")
            elif isinstance(event, yamux.ConnectionTerminated):
                self.close(f"peer ended the session (yamux error code {event.error_code})")
        if self._closing:
            self._sweep()
        self._close_if_retired()

    def retire(self, reason: str, grace: float) -> None:
        """Another connection to the same peer replaced this one (a simultaneous dial, or a direct connection that
        replaced a relayed one): the host opens no more streams on it, and it closes once its streams are done, or
        after `grace` seconds. No yamux go-away before that: js-libp2p closes every stream when it receives one."""
        if self.phase is Phase.CLOSED:
            return
        self._retired = reason
        if not self.streams:
            self.close(reason)
            return
        self._timers.append(asyncio.get_running_loop().call_later(grace, self.close, reason))

    def _close_if_retired(self) -> None:
        if self._retired is not None and not self.streams and self.phase is not Phase.CLOSED:
            reason, self._retired = self._retired, None  # close() dispatches again: this runs once
            self.close(reason)

    def _sweep(self) -> None:
        """Forget streams yamux has finished with (closed both ways); call after dispatching every event,
        since yamux may drop a stream whose last data and FIN are still in the batch being dispatched."""
        session = self.session
        if session is None:
            return
        for stream_id in [i for i in self._closing if session.stream_state(i) is None]:
            self._closing.discard(stream_id)
            self.streams.pop(stream_id, None)  # its reader still drains what was buffered, then sees EOF

    # -- used by streams -------------------------------------------------------------------------
    def open_stream(self) -> Stream:
        if self.session is None or self.phase is not Phase.OPEN:
            raise LinkError(f"connection to {self.remote_peer} is closed: {self.close_reason or self.phase.value}")
        if self.session.go_away_received is not None:
            raise LinkError(f"{self.remote_peer} takes no new streams (it may not allow this node's key)")
        try:
            stream_id = self.session.open_stream()
        except yamux.OpenStreamError as exc:
            raise LinkError(str(exc)) from None
        stream = Stream(self, stream_id)
        self.streams[stream_id] = stream
        self._schedule_flush()
        return stream

    def stream_write(self, stream_id: int, data: memoryview) -> int:
        if self.session is None or self.phase is not Phase.OPEN:
            raise LinkError(f"connection is {self.phase.value}")
        try:
            taken = self.session.write(stream_id, data)
        except yamux.StreamClosedError as exc:
            raise LinkError(str(exc)) from None
        self.last_active = time.monotonic()
        self._schedule_flush()
        return taken

    def stream_write_capacity(self, stream_id: int) -> int:
        return self.session.write_capacity(stream_id) if self.session is not None else 0

    def stream_close(self, stream_id: int) -> None:
        if self.session is not None and self.session.stream_state(stream_id) is not None:
            self.session.close_stream(stream_id)
            self._closing.add(stream_id)
            self._schedule_flush()

    def stream_reset(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        if self.session is not None:
            self.session.reset_stream(stream_id)
            self._schedule_flush()
        self._close_if_retired()

    def consumed(self, stream_id: int, size: int) -> None:
        """The application read `size` bytes of the stream: the remote may send that much more."""
        if self.session is not None:
            self.session.acknowledge_received(stream_id, size, time.monotonic())
            self._schedule_flush()

    # -- sending ---------------------------------------------------------------------------------
    def _write_raw(self, data: bytes | bytearray | memoryview) -> None:
        if data and self._transport is not None and self.phase is not Phase.CLOSED:
            self._transport.write(data)

    def _write_secure(self, data: bytes | bytearray) -> None:
        if data and self._noise is not None:
            self._write_raw(self._noise.encrypt(data))

    def _write_frames(self, frames: list[bytes | memoryview]) -> None:
        """Encrypt yamux's frames and write them: a large batch straight into a pooled buffer, which the transport
        may hold until the socket takes it (the pool hands it out again only once nothing else refers to it)."""
        noise = self._noise
        size = sum(map(len, frames))
        if noise is None or self._transport is None or self.phase is Phase.CLOSED:
            return
        if size < POOLED_WRITE:
            self._write_raw(noise.encrypt(b"".join(frames)))
            return
        out = self._send_buffers.get(noise.sealed_size(size))
        used = noise.encrypt_into(frames, out)
        self._write_raw(memoryview(out)[:used])

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self.phase is not Phase.CLOSED:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Frame what yamux has ready and send it encrypted, until the socket's buffer is full."""
        self._flush_scheduled = False
        session = self.session
        if session is None or self.phase is Phase.CLOSED:
            return
        while not self._paused:
            frames = session.frames_to_send(FLUSH_CHUNK)
            if not frames:
                break
            self._write_frames(frames)
        self._dispatch(session.events())  # StreamWritable events come from framing

    # -- closing ---------------------------------------------------------------------------------
    def close(self, reason: str = "closed", error: Exception | None = None) -> None:
        if self.phase is Phase.CLOSED:
            return
        if isinstance(error, LinkError) and not self.ready.done():
            self.ready.set_exception(error)  # the dialler sees the precise failure (such as PeerIdMismatch)
            self.ready.exception()
        log.debug("%r closing: %s", self, reason)
        self.close_reason = reason
        if self.session is not None:
            self.session.go_away(yamux.GO_AWAY_NORMAL)
            self._paused = False
            self._flush()
        if self._transport is not None:
            self._transport.close()
        self._closed(reason)

    def _closed(self, reason: str) -> None:
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        self.close_reason = self.close_reason or reason
        for timer in self._timers:
            timer.cancel()
        if self._readers_turn is not None:
            self._readers_turn.cancel()
            self._readers_turn = None
        for stream in list(self.streams.values()):
            stream.fail(f"connection closed: {self.close_reason}")
        self.streams.clear()
        self._closing.clear()
        if not self.ready.done():
            self.ready.set_exception(LinkError(self.close_reason))
            self.ready.exception()  # retrieved here: a failed dial is reported by the dialler, not the loop
        if self._on_close is not None:
            self._on_close(self)
