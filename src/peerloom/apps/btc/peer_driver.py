"""A thin asyncio driver for one outbound Bitcoin peer: it moves bytes between a TCP stream and a sans-I/O
`PeerSession`, and syncs a `HeaderChain` with `getheaders` until the peer has no more headers.

    async with await BtcPeer.connect("127.0.0.1", 18444, REGTEST) as peer:
        chain = HeaderChain(REGTEST)
        await peer.sync_headers(chain)
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from types import TracebackType

from .block import Block
from .headers import HeaderChain, HeaderEntry
from .p2p import (
    MAX_HEADERS_RESULTS,
    MSG_WITNESS_BLOCK,
    PROTOCOL_VERSION,
    BlockMessage,
    GetData,
    GetHeaders,
    Headers,
    InvItem,
    Message,
    NotFound,
)
from .params import NetworkParams
from .serialize import hash_hex
from .session import LocalInfo, PeerSession

READ_SIZE = 1 << 16


class BtcPeer:
    """An established connection (the handshake is done when `connect` returns)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: PeerSession) -> None:
        self.session = session
        self._reader = reader
        self._writer = writer
        self._inbox: deque[Message] = deque()

    @classmethod
    async def connect(
        cls, host: str, port: int, params: NetworkParams, start_height: int = 0, timeout: float = 10.0
    ) -> BtcPeer:
        """Dial `host:port` and complete the version handshake within `timeout` seconds."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        local = LocalInfo(nonce=secrets.randbits(64), start_height=start_height)
        session = PeerSession(params.magic, local, outbound=True, peer_address=(host, port))
        peer = cls(reader, writer, session)
        try:
            session.start(int(time.time()))
            await peer._flush()
            async with asyncio.timeout(timeout):
                while not session.established:
                    await peer._read_some()
        except BaseException:
            await peer.close()
            raise
        return peer

    @classmethod
    async def accept(
        cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, params: NetworkParams,
        start_height: int = 0, timeout: float = 10.0,
    ) -> BtcPeer:
        """Complete the handshake of an inbound connection (the peer speaks first)."""
        host, port = writer.get_extra_info("peername")[:2]
        local = LocalInfo(nonce=secrets.randbits(64), start_height=start_height)
        peer = cls(reader, writer, PeerSession(params.magic, local, outbound=False, peer_address=(host, port)))
        try:
            async with asyncio.timeout(timeout):
                while not peer.session.established:
                    await peer._read_some()
        except BaseException:
            await peer.close()
            raise
        return peer

    async def __aenter__(self) -> BtcPeer:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    async def send(self, message: Message) -> None:
        self.session.send(message)
        await self._flush()

    async def receive(self) -> Message:
        """The next application message from the peer."""
        while not self._inbox:
            await self._read_some()
        return self._inbox.popleft()

    async def sync_headers(self, chain: HeaderChain, timeout: float = 30.0) -> HeaderEntry:
        """Ask for headers after `chain`'s tip until a reply holds fewer than the maximum (the peer has no
        more); returns the tip. Messages other than `headers` meanwhile are dropped."""
        async with asyncio.timeout(timeout):
            while True:
                await self.send(GetHeaders(PROTOCOL_VERSION, tuple(chain.locator())))
                reply = await self.receive()
                while not isinstance(reply, Headers):
                    reply = await self.receive()
                chain.connect_headers(reply.headers, int(time.time()))
                if len(reply.headers) < MAX_HEADERS_RESULTS:
                    return chain.tip

    async def get_block(self, block_hash: bytes, timeout: float = 30.0) -> Block:
        """Fetch one block with its witnesses (`getdata` MSG_WITNESS_BLOCK); other messages meanwhile are dropped."""
        await self.send(GetData((InvItem(MSG_WITNESS_BLOCK, block_hash),)))
        async with asyncio.timeout(timeout):
            while True:
                reply = await self.receive()
                if isinstance(reply, BlockMessage) and reply.block.hash == block_hash:
                    return reply.block
                if isinstance(reply, NotFound) and any(item.hash == block_hash for item in reply.items):
                    raise LookupError(f"the peer does not have block {hash_hex(block_hash)}")

    async def serve_headers(self, chain: HeaderChain) -> None:
        """Answer the peer's `getheaders` from `chain` until it disconnects; other messages are dropped."""
        try:
            while True:
                request = await self.receive()
                if isinstance(request, GetHeaders):
                    found = chain.headers_after(request.locator, request.hash_stop, MAX_HEADERS_RESULTS)
                    await self.send(Headers(tuple(found)))
        except ConnectionError:
            return

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass

    async def _read_some(self) -> None:
        data = await self._reader.read(READ_SIZE)
        if not data:
            raise ConnectionError("peer closed the connection")
        self._inbox.extend(self.session.receive_data(data, int(time.time())))
        await self._flush()

    async def _flush(self) -> None:
        if out := self.session.data_to_send():
            self._writer.write(out)
            await self._writer.drain()
