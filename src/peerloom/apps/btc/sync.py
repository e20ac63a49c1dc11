"""The block sync driver: headers-first from one peer, then the missing blocks by `getdata` with a bounded
number in flight, each handed to the `ChainState` in a worker thread in chain order; afterwards it follows the
peer's announcements (`headers` after BIP 130's `sendheaders`, or `inv`) and answers its `getheaders`.

One coroutine per peer does all of this; the chain state is used under one lock, from one task at a time.
Whatever the peer sends that breaks a rule raises `BtcError` out of `run`: the caller disconnects and bans the
peer, and the chain state has written nothing for the offending block. A block the peer has not got
(`notfound`) is not asked of it again; one it does not deliver within `STALL_TIMEOUT` ends `run` with
`TimeoutError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .block import Block
from .chainstate import Activation, ChainState
from .headers import HeaderChain
from .p2p import (
    MAX_HEADERS_RESULTS,
    MSG_BLOCK,
    MSG_WITNESS_BLOCK,
    PROTOCOL_VERSION,
    BlockMessage,
    GetBlocks,
    GetData,
    GetHeaders,
    Headers,
    Inv,
    InvItem,
    Message,
    NotFound,
)
from .peer_driver import BtcPeer

MAX_GETBLOCKS_RESULTS = 500  # Core's answer to getblocks
BLOCKS_IN_FLIGHT = 16  # Core's MAX_BLOCKS_IN_TRANSIT_PER_PEER
STALL_TIMEOUT = 60.0  # seconds without a block we asked for before giving up on the peer

Offload = Callable[..., Awaitable[Any]]


class BlockSync:
    """Syncs `chain` from peers. `offload(fn, *args)` runs blocking work off the event loop (a worker pool's
    `submit`, or `asyncio.to_thread`); `on_message` receives what the sync does not handle (transactions...)."""

    def __init__(self, chain: ChainState, offload: Offload = asyncio.to_thread,
                 on_message: Callable[[BtcPeer, Message], Awaitable[None]] | None = None,
                 window: int = BLOCKS_IN_FLIGHT) -> None:
        self.chain = chain
        self._offload = offload
        self._on_message = on_message
        self._window = window
        self.lock = asyncio.Lock()
        self.on_activation: list[Callable[[Activation], None]] = []
        self._continue: dict[int, bytes] = {}  # per peer (by id): the block after which to announce the tip

    async def run(self, peer: BtcPeer, until_height: int | None = None) -> None:
        """Sync from `peer` and keep following it; returns once the chain reaches `until_height` (if given) or
        raises when the peer fails or misbehaves."""
        try:
            await self.sync_headers(peer)
            unavailable: set[bytes] = set()  # blocks this peer said it has not got
            while True:
                await self.fetch_blocks(peer, unavailable)
                if until_height is not None and self.chain.height >= until_height:
                    return
                message = await peer.receive()
                await self.handle(peer, message)
        finally:
            self._continue.pop(id(peer), None)

    async def sync_headers(self, peer: BtcPeer) -> None:
        """Ask for headers after our best header until the peer has no more (messages meanwhile are handled)."""
        headers: HeaderChain = self.chain.headers
        while True:
            await peer.send(GetHeaders(PROTOCOL_VERSION, tuple(headers.locator())))
            while True:
                reply = await asyncio.wait_for(peer.receive(), STALL_TIMEOUT)
                if isinstance(reply, Headers):
                    break
                await self.handle(peer, reply)
            async with self.lock:
                self.chain.add_headers(reply.headers, int(time.time()))
            if len(reply.headers) < MAX_HEADERS_RESULTS:
                return

    async def fetch_blocks(self, peer: BtcPeer, unavailable: set[bytes] | None = None) -> None:
        """Download and connect every block of the best header chain that is missing, `window` at a time, but
        those in `unavailable` (a `notfound` adds to it: the peer has not got them)."""
        inflight: dict[bytes, Block | None] = {}  # insertion order is chain order
        unavailable = set() if unavailable is None else unavailable
        while True:
            if len(inflight) < self._window:
                wanted = [e for e in self.chain.blocks_to_fetch(self._window * 2)
                          if e.hash not in inflight and e.hash not in unavailable]
                wanted = wanted[: self._window - len(inflight)]
                if wanted:
                    await peer.send(GetData(tuple(InvItem(MSG_WITNESS_BLOCK, e.hash) for e in wanted)))
                    inflight.update((e.hash, None) for e in wanted)
            if not inflight:
                return
            message = await asyncio.wait_for(peer.receive(), STALL_TIMEOUT)
            if isinstance(message, BlockMessage) and message.block.hash in inflight:
                inflight[message.block.hash] = message.block
                while inflight and (block := next(iter(inflight.values()))) is not None:
                    del inflight[block.hash]
                    await self.add_block(block)
            elif isinstance(message, NotFound) and any(i.hash in inflight for i in message.items):
                for item in message.items:
                    if inflight.get(item.hash, b"") is None:
                        del inflight[item.hash]
                        unavailable.add(item.hash)
            else:
                await self.handle(peer, message)

    async def add_block(self, block: Block) -> Activation:
        async with self.lock:
            result = await self._offload(self.chain.add_block, block, int(time.time()))
        for callback in self.on_activation:
            callback(result)
        return result

    async def handle(self, peer: BtcPeer, message: Message) -> None:
        """A message outside the block download: announcements, `getheaders`, `getdata` for blocks."""
        if isinstance(message, Headers):
            if message.headers and self.chain.headers.get(message.headers[0].prev_hash) is None:
                # an announcement that does not connect (a reorg's new tip): ask for the headers in between,
                # as Core does for unconnecting headers, instead of treating it as misbehaviour
                await peer.send(GetHeaders(PROTOCOL_VERSION, tuple(self.chain.headers.locator())))
                return
            async with self.lock:
                self.chain.add_headers(message.headers, int(time.time()))
        elif isinstance(message, Inv) and any(i.type & 0xFF == MSG_BLOCK for i in message.items):
            blocks = [i for i in message.items if i.type & 0xFF == MSG_BLOCK]
            if any(self.chain.headers.get(i.hash) is None for i in blocks):
                await peer.send(GetHeaders(PROTOCOL_VERSION, tuple(self.chain.headers.locator())))
        elif isinstance(message, GetBlocks):
            found = self.chain.headers.headers_after(message.locator, message.hash_stop, MAX_GETBLOCKS_RESULTS)
            if found:
                await peer.send(Inv(tuple(InvItem(MSG_BLOCK, h.hash) for h in found)))
                if len(found) == MAX_GETBLOCKS_RESULTS:
                    self._continue[id(peer)] = found[-1].hash
        elif isinstance(message, GetHeaders):
            found = self.chain.headers.headers_after(message.locator, message.hash_stop, MAX_HEADERS_RESULTS)
            await peer.send(Headers(tuple(found)))
        elif isinstance(message, GetData):
            await self._serve_blocks(peer, message)
            others = tuple(i for i in message.items if i.type & 0xFF != MSG_BLOCK)
            if others and self._on_message is not None:
                await self._on_message(peer, GetData(others))  # transactions: the mempool's owner answers
        elif self._on_message is not None:
            await self._on_message(peer, message)

    async def _serve_blocks(self, peer: BtcPeer, request: GetData) -> None:
        missing = []
        for item in request.items:
            if item.type & 0xFF == MSG_BLOCK and self.chain.has_block(item.hash):
                block = await self._offload(self.chain.read_block, item.hash)
                await peer.send(BlockMessage(block))
                if self._continue.get(id(peer)) == item.hash:
                    # Core's hashContinue: the last block of a full getblocks answer is followed by an inv of the
                    # tip, so that the peer asks for the next batch (bcoin relies on it)
                    del self._continue[id(peer)]
                    await peer.send(Inv((InvItem(MSG_BLOCK, self.chain.tip.hash),)))
            elif item.type & 0xFF == MSG_BLOCK:
                missing.append(item)
        if missing:
            await peer.send(NotFound(tuple(missing)))
