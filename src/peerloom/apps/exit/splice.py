"""Moving bytes between a secure-layer stream and a TCP connection, both ways, counted and optionally rate-limited:
the exit splices the client's stream to the destination, the SOCKS server its local client to a stream.

Each direction is one task: read up to CHUNK bytes, wait for the token bucket (if any), write, count. An end of
input half-closes the other side (a TCP FIN becomes the stream's FIN and back), so protocols that close one way
first still work; an error either way aborts both. Memory per connection stays bounded: one chunk in flight per
direction, the stream's window on one side and the socket's write buffer (drained before the next read) on the
other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from peerloom.apps.exit.policy import PeerBuckets, wait_for
from peerloom.apps.exit.store import Traffic
from peerloom.net.stream import Stream, StreamError
from peerloom.torrent.ratelimit import TokenBucket

CHUNK = 64 * 1024


async def _copy(read: Callable[[int], object], write: Callable[[bytes], object], count: Callable[[int], None],
                bucket: TokenBucket | None, clock: Callable[[], float]) -> None:
    size = CHUNK if bucket is None or not bucket.limited else max(1, min(CHUNK, bucket.rate))
    while data := await read(size):  # type: ignore[misc]
        if bucket is not None:
            while (delay := wait_for(bucket, len(data), clock())) > 0:
                await asyncio.sleep(delay)
        await write(data)  # type: ignore[misc]
        count(len(data))


async def splice(stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, traffic: Traffic, *,
                 exit_side: bool, buckets: PeerBuckets | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
    """Copy both ways until both have ended (or one failed); closes the socket and, on failure, resets the stream.
    On the exit (`exit_side`) the stream carries the client's bytes towards the destination; on the client the
    socket does. `buckets` limit the exit's two directions."""

    def to_dest(n: int) -> None:
        traffic.to_destination += n

    def from_dest(n: int) -> None:
        traffic.from_destination += n

    async def socket_write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def stream_to_socket() -> None:
        await _copy(stream.read, socket_write, to_dest if exit_side else from_dest,
                    buckets.up if buckets else None, clock)
        if writer.can_write_eof():
            writer.write_eof()

    async def socket_to_stream() -> None:
        await _copy(reader.read, stream.write, from_dest if exit_side else to_dest,
                    buckets.down if buckets else None, clock)
        await stream.close()

    tasks = [asyncio.ensure_future(stream_to_socket()), asyncio.ensure_future(socket_to_stream())]
    clean = False
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        errors = [t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
        clean = not errors
        for exc in errors:
            if not isinstance(exc, (StreamError, OSError)):
                raise exc  # a bug, not the network: let it be seen
    finally:
        if not clean:  # an error either way, or we were cancelled: abort both sides
            stream.reset()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
