"""One request and one answer of `/peerloom/compute/1.0.0` over a secure-layer stream: the thin I/O around wire.py.
Every wait has a timeout, every read is bounded by the frame limit the caller gives."""

from __future__ import annotations

import asyncio

from peerloom.identity import PeerId
from peerloom.net.host import Host
from peerloom.net.stream import Stream

from .wire import PROTOCOL, ComputeWireError, FrameReader, Message, encode


async def read_message(stream: Stream, max_frame: int) -> Message:
    """The one message the peer sends on `stream` (at most `max_frame` bytes); `ComputeWireError` if it is not a
    whole, well-formed message of that size."""
    reader = FrameReader(max_frame)
    while (message := reader.next()) is None:
        chunk = await stream.read()
        if not chunk:
            raise ComputeWireError("the stream ended before a whole message")
        reader.feed(chunk)
    return message


async def request(host: Host, peer: PeerId, message: Message, max_frame: int, timeout: float) -> Message:
    """Send `message` on a new stream to `peer` (connected) and return its answer; the stream is reset on any
    failure and closed after a good answer. Raises LinkError/StreamError/TimeoutError or ComputeWireError."""
    stream = await asyncio.wait_for(host.new_stream(peer, (PROTOCOL,)), timeout)
    try:
        await stream.write(encode(message))
        answer = await asyncio.wait_for(read_message(stream, max_frame), timeout)
    except BaseException:
        stream.reset()
        raise
    await stream.close()
    return answer
