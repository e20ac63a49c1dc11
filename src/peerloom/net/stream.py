"""A yamux stream as an application sees it: async read/write with backpressure, half-close, reset.

Received bytes are credited back to the remote only as the application reads them, so a slow reader
holds the sender to the stream's window: memory per stream stays bounded by that window.

The seam between a stream and the connection that carries it is public both ways: the stream calls its owner
only through `StreamOwner` (declared here, so this module never imports the connection), and the owner drives
the stream only through the "owner's side" methods (`feed`, `feed_eof`, `set_writable`, `fail`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Protocol

from peerloom.errors import PeerloomError

if TYPE_CHECKING:
    from peerloom.identity import PeerId

READ_CHUNK = 1 << 20  # largest piece `read()` returns when no size is asked
# The most a read copies: larger pieces come only as a received chunk of bytes, returned as it is. A fresh buffer
# of hundreds of KiB is a fresh mmap for the allocator, paid in page faults; one of 64 KiB at a time is not.
COPY_LIMIT = 64 * 1024
CLOSE_GRACE = 10.0  # seconds a closed StreamTransport waits for the remote to close its side


class StreamError(PeerloomError):
    """The stream was reset (by either side) or its connection closed."""


class StreamOwner(Protocol):
    """What a stream needs of the connection that carries it (`peerloom.net.connection.Connection` is one)."""

    remote_peer: PeerId | None
    remote_address: tuple[str, int] | None
    local_address: tuple[str, int] | None

    def stream_write(self, stream_id: int, data: memoryview) -> int:
        """Queue what fits of `data` in the stream's send window; returns how many bytes were taken."""
        ...

    def stream_write_capacity(self, stream_id: int) -> int:
        """Bytes `stream_write` would take now (0: wait for `Stream.set_writable`)."""
        ...

    def stream_close(self, stream_id: int) -> None:
        """Half-close: send FIN."""
        ...

    def stream_reset(self, stream_id: int) -> None:
        """Abort the stream both ways and forget it."""
        ...

    def consumed(self, stream_id: int, size: int) -> None:
        """The application read `size` bytes: credit them back to the remote's send window."""
        ...


class Stream:
    """One stream of a secure connection; `protocol` is what multistream-select agreed on it."""

    def __init__(self, connection: StreamOwner, stream_id: int) -> None:
        self.connection = connection
        self.id = stream_id
        self.protocol: str | None = None
        self._chunks: deque[memoryview] = deque()
        self._buffered = 0
        self._unacked_front = 0  # bytes pushed back by negotiation: already credited, not to credit again
        self._eof = False
        self._error: str | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._write_closed = False

    @property
    def remote_peer(self) -> PeerId:
        assert self.connection.remote_peer is not None
        return self.connection.remote_peer

    def __repr__(self) -> str:
        return f"<stream {self.id} {self.protocol or '?'} with {self.connection.remote_peer}>"

    # -- the owner's side: called by the connection ---------------------------------------------------
    def feed(self, data: bytes | memoryview) -> None:
        """Received bytes: `bytes`, or a view the connection lends until it is read (copied out then).
        The bulk-data path: one append, no copy."""
        if data:
            self._chunks.append(memoryview(data))
            self._buffered += len(data)
            self._readable.set()

    def unread(self, data: bytes) -> None:
        """Bytes a protocol negotiation read past its end, put back for the protocol to read first; they were
        credited to the remote when first read, so reading them again credits nothing."""
        if data:
            self._chunks.appendleft(memoryview(data))
            self._buffered += len(data)
            self._unacked_front += len(data)
            self._readable.set()

    def feed_eof(self) -> None:
        """The remote half-closed: reads return b"" once the buffered bytes are read."""
        self._eof = True
        self._readable.set()

    def fail(self, reason: str) -> None:
        """The stream was reset or its connection closed: pending and later reads and writes raise StreamError."""
        if self._error is None:
            self._error = reason
        self._readable.set()
        self._writable.set()

    def set_writable(self) -> None:
        """The send window opened again: a blocked `write` goes on."""
        self._writable.set()

    # -- reading -------------------------------------------------------------------------------------
    async def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (any amount up to 1 MiB when `n` < 0); b"" once the remote closed its side.

        A received chunk of bytes taken whole is returned as it is; otherwise up to 64 KiB are copied out, from
        one chunk or several small ones together (chunks lent by the connection are copied out this way).
        """
        while not self._buffered:
            if self._error is not None:
                raise StreamError(self._error)
            if self._eof:
                return b""
            self._readable.clear()
            await self._readable.wait()
        limit = READ_CHUNK if n < 0 else n
        chunks = self._chunks
        head = chunks[0]
        whole = head.obj
        size = len(head)
        if (
            size <= limit
            and isinstance(whole, bytes)
            and len(whole) == size
            and (len(chunks) == 1 or size + len(chunks[1]) > COPY_LIMIT)
        ):
            chunks.popleft()
            data = whole
        else:
            data, size = self._copy_out(min(limit, COPY_LIMIT))
        self._buffered -= size
        credited = min(size, self._unacked_front)
        self._unacked_front -= credited
        if size > credited:
            self.connection.consumed(self.id, size - credited)
        return data

    def _copy_out(self, limit: int) -> tuple[bytes, int]:
        """Up to `limit` bytes from the front chunks, as one new bytes object, and its size."""
        chunks = self._chunks
        parts = []
        size = 0
        while chunks and size < limit:
            head = chunks[0]
            if len(head) <= limit - size:
                parts.append(chunks.popleft())
                size += len(head)
            else:
                parts.append(head[: limit - size])
                chunks[0] = head[limit - size :]
                size = limit
        return (parts[0].tobytes() if len(parts) == 1 else b"".join(parts)), size

    async def readexactly(self, n: int) -> bytes:
        """Exactly `n` bytes; StreamError when the stream ends first."""
        parts = []
        left = n
        while left:
            chunk = await self.read(left)
            if not chunk:
                raise StreamError(f"stream ended {left} bytes short of {n}")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    # -- writing -------------------------------------------------------------------------------------
    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send `data`; waits while the stream's send queue is full (the remote's window is the limit)."""
        view = memoryview(data).cast("B")
        while view:
            if self._error is not None:
                raise StreamError(self._error)
            if self._write_closed:
                raise StreamError("stream closed for writing")
            taken = self.connection.stream_write(self.id, view)
            view = view[taken:]
            if view:
                self._writable.clear()
                if self.connection.stream_write_capacity(self.id) == 0:
                    await self._writable.wait()

    async def close(self) -> None:
        """Half-close: no more writes from us; the remote may still send until it closes too."""
        if not self._write_closed and self._error is None:
            self._write_closed = True
            self.connection.stream_close(self.id)

    def reset(self) -> None:
        """Abort the stream in both directions."""
        self.fail("stream reset by us")
        self.connection.stream_reset(self.id)


class StreamTransport:
    """Runs any asyncio.Protocol (or BufferedProtocol) over a Stream, as if over a socket: the same protocol code (the
    BitTorrent peer wire, a whole secure connection carried by a relay) serves plain TCP and secure streams. Writes
    queue here and go out in order; past `high_water` queued bytes the protocol is paused, as a socket's transport
    would do. `extra` overrides what `get_extra_info` answers (a relayed connection has no socket address of its
    own: it passes `{"peername": None, "sockname": None}`)."""

    def __init__(self, stream: Stream, protocol: asyncio.BaseProtocol, *, high_water: int = 4 * 1024 * 1024,
                 extra: dict[str, object] | None = None) -> None:
        self.stream = stream
        self.protocol = protocol
        self._high = high_water
        self._extra = extra or {}
        self._reading = asyncio.Event()  # cleared while the protocol paused reading
        self._reading.set()
        self._queue: deque[bytes | memoryview] = deque()
        self._queued = 0
        self._paused = False
        self._closing = False
        self._wake = asyncio.Event()
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.ensure_future(self._read_loop()), asyncio.ensure_future(self._write_loop())]
        protocol.connection_made(self)  # type: ignore[arg-type]

    @property
    def closed(self) -> asyncio.Future[None]:
        """Resolves once the protocol has seen connection_lost (for owners that track live transports)."""
        return self._closed

    async def wait_closed(self) -> None:
        """Until the protocol has seen connection_lost; cancelling this aborts the stream."""
        try:
            await asyncio.shield(self._closed)
        except asyncio.CancelledError:
            self.abort()
            raise

    # -- the transport interface the protocol uses -------------------------------------------------
    def get_extra_info(self, name: str, default: object = None) -> object:
        if name in self._extra:
            return self._extra[name]
        conn = self.stream.connection
        return {
            "peername": conn.remote_address,
            "sockname": conn.local_address,
            "peer_id": conn.remote_peer,
            "stream": self.stream,
        }.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is not None:
            self._high = high

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self._queue.append(data if isinstance(data, bytes) else bytes(data))
        self._queued += len(data)
        self._wake.set()
        if not self._paused and self._queued > self._high:
            self._paused = True
            self.protocol.pause_writing()

    def writelines(self, chunks: list[bytes | memoryview]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        """Send what is queued, then half-close; the remote's FIN (or a reset) ends the connection."""
        if not self._closing:
            self._closing = True
            self._wake.set()
            # a remote that never closes its side is reset after a grace period
            asyncio.get_running_loop().call_later(CLOSE_GRACE, self.abort)

    def abort(self) -> None:
        if not self._done:
            self._closing = True
            self.stream.reset()
            self._finish(None)

    # -- the pumps ---------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        error: Exception | None = None
        protocol = self.protocol
        try:
            while True:
                if not self._reading.is_set():
                    await self._reading.wait()
                data = await self.stream.read()
                if not data:
                    break
                if isinstance(protocol, asyncio.BufferedProtocol):
                    _feed_buffered(protocol, data)
                else:
                    protocol.data_received(data)  # type: ignore[attr-defined]
        except StreamError as exc:
            error = exc
        self._finish(error)

    async def _write_loop(self) -> None:
        try:
            while True:
                while self._queue:
                    chunk = self._queue.popleft()
                    await self.stream.write(chunk)
                    self._queued -= len(chunk)
                    if self._paused and self._queued <= self._high // 4:
                        self._paused = False
                        self.protocol.resume_writing()
                if self._closing:
                    await self.stream.close()
                    return
                self._wake.clear()
                await self._wake.wait()
        except StreamError as exc:
            self._finish(exc)

    _done = False

    def _finish(self, error: Exception | None) -> None:
        if self._done:
            return
        self._done = True
        self._closing = True
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._closed.set_result(None)
        self.protocol.connection_lost(error)


def _feed_buffered(protocol: asyncio.BufferedProtocol, data: bytes) -> None:
    """Copy `data` into the buffers a BufferedProtocol hands out, as the event loop does for a socket."""
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer(len(view))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]
