"""Reading and writing relay messages on a stream (the thin I/O around `relay.messages`), and the dialler's side of
a hop CONNECT, which the host runs to dial a `/p2p-circuit` address."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from peerloom.codec.varint import read_frame
from peerloom.errors import ProtocolError
from peerloom.identity import PeerId
from peerloom.net.connection import LinkError
from peerloom.net.relay.messages import (
    MAX_MESSAGE_SIZE,
    HopMessage,
    HopType,
    Limit,
    RelayMessageError,
    RelayPeer,
    Status,
    decode_hop,
    encode_hop,
)
from peerloom.net.stream import Stream

T = TypeVar("T")
MESSAGE_TIMEOUT = 30.0  # a relay waits for the destination's answer before answering the source: allow for both


class RelayRefused(LinkError):
    """The relay (or the peer behind it) answered a hop or stop request with a failure status."""

    def __init__(self, message: str, status: Status) -> None:
        super().__init__(message)
        self.status = status


async def read_message(stream: Stream, decode: Callable[[bytes], T], timeout: float = MESSAGE_TIMEOUT, *,
                       error: type[ProtocolError] = RelayMessageError) -> T:
    """One length-prefixed message of at most MAX_MESSAGE_SIZE bytes (relay and DCUtR messages share go-libp2p's
    4 KiB bound), framing errors raised as `error`; bytes after it are left on the stream (a circuit's data may
    follow at once)."""
    data = b""
    async with asyncio.timeout(timeout):
        while True:
            try:
                frame = read_frame(data, MAX_MESSAGE_SIZE)  # bounded before the payload is buffered
            except ProtocolError as exc:
                raise error(f"bad message framing: {exc}") from None
            if frame is not None:
                break
            chunk = await stream.read(MAX_MESSAGE_SIZE + 16 - len(data))
            if not chunk:
                raise LinkError("stream ended before the relay message")
            data += chunk
    payload, end = frame
    stream.unread(data[end:])
    return decode(payload)


async def hop_connect(stream: Stream, target: PeerId) -> Limit | None:
    """Ask the relay at the other end of a hop stream to connect us to `target`; its limit once it agreed (the
    stream then carries the circuit), RelayRefused otherwise."""
    await stream.write(encode_hop(HopMessage(HopType.CONNECT, peer=RelayPeer(target))))
    answer = await read_message(stream, decode_hop)
    if answer.type is not HopType.STATUS:
        raise RelayMessageError(f"relay answered CONNECT with {answer.type.name}")
    if answer.status is not Status.OK:
        status = answer.status or Status.UNUSED
        raise RelayRefused(f"relay refused to connect us to {target}: {status.name}", status)
    return answer.limit
