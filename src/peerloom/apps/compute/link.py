"""Requests and answers of `/peerloom/compute/1.0.0` over secure-layer streams: the thin I/O around wire.py.
Every wait has a timeout, every read is bounded by the frame limit the caller gives.

A stream carries exchanges one after another. `StreamPool` keeps the streams of finished exchanges open for the next
request to the same peer (a unit then costs no stream opening and no protocol negotiation: on loopback that round
trip was a large part of a small unit's cost); a kept stream the peer has closed meanwhile is noticed at the next
request, which then goes out again on a new stream.
"""

from __future__ import annotations

import asyncio

from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.host import Host
from peerloom.net.stream import Stream

from .wire import PROTOCOL, ComputeWireError, FrameReader, Message, encode

MAX_IDLE_STREAMS = 16  # kept open per peer


class StreamEnded(ComputeWireError):
    """The peer closed the stream instead of answering."""


async def read_message(stream: Stream, max_frame: int) -> Message | None:
    """The next message the peer sends on `stream` (at most `max_frame` bytes); None if the stream ends cleanly
    before one starts; `ComputeWireError` if it is not a whole, well-formed message of that size. Bytes past it are
    left on the stream for the next read."""
    reader = FrameReader(max_frame)
    while (message := reader.next()) is None:
        chunk = await stream.read()
        if not chunk:
            if reader.empty:
                return None
            raise ComputeWireError("the stream ended in the middle of a message")
        reader.feed(chunk)
    stream.unread(reader.leftover())
    return message


async def _exchange(stream: Stream, message: Message, max_frame: int, timeout: float) -> Message:
    await stream.write(encode(message))
    answer = await asyncio.wait_for(read_message(stream, max_frame), timeout)
    if answer is None:
        raise StreamEnded("the stream ended before the answer")
    return answer


async def request(host: Host, peer: PeerId, message: Message, max_frame: int, timeout: float) -> Message:
    """Send `message` on a new stream to `peer` (connected) and return its answer; the stream is reset on any
    failure and closed after a good answer. Raises LinkError/StreamError/TimeoutError or ComputeWireError."""
    stream = await asyncio.wait_for(host.new_stream(peer, (PROTOCOL,)), timeout)
    try:
        answer = await _exchange(stream, message, max_frame, timeout)
    except BaseException:
        stream.reset()
        raise
    await stream.close()
    return answer


class StreamPool:
    """Streams to peers kept open between exchanges (see the module docstring)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._idle: dict[PeerId, list[Stream]] = {}

    async def request(self, peer: PeerId, message: Message, max_frame: int, timeout: float) -> Message:
        """As `request`, on a kept stream when there is one."""
        idle = self._idle.get(peer)
        while idle:
            stream = idle.pop()
            try:
                answer = await _exchange(stream, message, max_frame, timeout)
            except StreamEnded:
                stream.reset()  # closed while it waited here (the peer's idle timeout): the next one, or a new one
                continue
            except ComputeWireError:
                stream.reset()
                raise  # garbage: the peer's fault
            except (PeerloomError, ConnectionError):
                stream.reset()  # reset while it waited here: the next one, or a new stream
                continue
            except BaseException:
                stream.reset()
                raise
            self._keep(peer, stream)
            return answer
        stream = await asyncio.wait_for(self.host.new_stream(peer, (PROTOCOL,)), timeout)
        try:
            answer = await _exchange(stream, message, max_frame, timeout)
        except BaseException:
            stream.reset()
            raise
        self._keep(peer, stream)
        return answer

    def _keep(self, peer: PeerId, stream: Stream) -> None:
        idle = self._idle.setdefault(peer, [])
        if len(idle) < MAX_IDLE_STREAMS:
            idle.append(stream)
        else:
            stream.reset()

    def forget(self, peer: PeerId) -> None:
        """Drop the kept streams of `peer` (it went away, or was dropped)."""
        for stream in self._idle.pop(peer, []):
            stream.reset()

    def close(self) -> None:
        for peer in list(self._idle):
            self.forget(peer)
