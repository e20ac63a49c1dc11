"""A scripted Bitcoin peer for misbehaviour tests: it completes the handshake with a real `PeerSession`, then
sends whatever a test tells it — well-formed messages carrying invalid blocks, or raw bytes that break the
framing — and reports whether the node hung up on it."""

from __future__ import annotations

import asyncio
import secrets
import time

from peerloom.apps.btc.p2p import Message, encode_message
from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.session import LocalInfo, PeerSession


class RoguePeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: PeerSession) -> None:
        self.reader, self.writer, self.session = reader, writer, session
        self.inbox: list[Message] = []

    @classmethod
    async def connect(cls, port: int, timeout: float = 10.0) -> RoguePeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = PeerSession(REGTEST.magic, LocalInfo(nonce=secrets.randbits(64)), outbound=True,
                              peer_address=("127.0.0.1", port))
        peer = cls(reader, writer, session)
        session.start(int(time.time()))
        await peer._flush()
        async with asyncio.timeout(timeout):
            while not session.established:
                await peer._read()
        return peer

    async def send(self, message: Message) -> None:
        self.session.send(message)
        await self._flush()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def frame(self, message: Message) -> bytes:
        return encode_message(REGTEST.magic, message)

    async def expect(self, kind: type[Message], timeout: float = 30.0) -> Message:
        """The next message of type `kind` (others are kept in `inbox`)."""
        async with asyncio.timeout(timeout):
            while True:
                for i, message in enumerate(self.inbox):
                    if isinstance(message, kind):
                        return self.inbox.pop(i)
                await self._read()

    async def hung_up(self, timeout: float = 30.0) -> bool:
        """Whether the node closes the connection within `timeout` seconds (reading and discarding meanwhile)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(1 << 16):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    async def _read(self) -> None:
        data = await self.reader.read(1 << 16)
        if not data:
            raise ConnectionError("the node closed the connection")
        self.inbox += self.session.receive_data(data, int(time.time()))
        await self._flush()

    async def _flush(self) -> None:
        if out := self.session.data_to_send():
            self.writer.write(out)
            await self.writer.drain()
