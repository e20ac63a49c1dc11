"""A tiny script-driven BitTorrent peer for tests: it sends exactly the messages a test tells it to, in that order,
and reads what the node answers. Deployed clients send messages in orders our own engine never does (a late
bitfield, a second one, have before bitfield); this is how a test plays such a client."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from peerloom.torrent import wire


class RawPeer:
    """One plain-TCP peer wire connection to a node, driven message by message."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = wire.WireParser()
        self.received: list[wire.Message] = []  # what the node sent after its handshake, not yet taken by `expect`
        self.handshake: wire.Handshake | None = None
        self.peer_id = b"-XX0001-" + os.urandom(12)

    @classmethod
    async def connect(cls, port: int, info_hash: bytes, *, fast: bool = True, extensions: bool = True,
                      v2: bool = False) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer)
        reserved = wire.make_reserved(fast=fast, extensions=extensions, v2=v2)
        writer.write(wire.encode_handshake(wire.Handshake(info_hash, peer.peer_id, reserved)))
        await writer.drain()
        peer.handshake = wire.parse_handshake(await asyncio.wait_for(reader.readexactly(wire.HANDSHAKE_LENGTH), 5))
        return peer

    async def send(self, *messages: wire.Message) -> None:
        for m in messages:
            self.writer.write(wire.encode(m))
        await self.writer.drain()

    async def expect(self, wanted: Callable[[wire.Message], bool], timeout: float = 10.0) -> wire.Message:
        """The first message the node sent that `wanted` accepts and no earlier `expect` took; fails if the node
        closes the connection first."""
        async with asyncio.timeout(timeout):
            while True:
                for i, m in enumerate(self.received):
                    if wanted(m):
                        return self.received.pop(i)
                chunk = await self.reader.read(65536)
                assert chunk, "the node closed the connection"
                self.received += self.parser.feed(chunk)

    async def still_open(self) -> bool:
        """Whether the node keeps the connection: a keep-alive goes out and no end of stream comes back."""
        await self.send(wire.KeepAlive())
        try:
            chunk = await asyncio.wait_for(self.reader.read(65536), 0.3)
        except TimeoutError:
            return True
        if not chunk:
            return False
        self.received += self.parser.feed(chunk)
        return True

    def close(self) -> None:
        self.writer.close()
