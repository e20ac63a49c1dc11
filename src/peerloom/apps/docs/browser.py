"""The WebSocket bridge between a browser editor and a document this node holds (GET /api/v1/docs/{id}/ws, mounted
by `api`).

The page's editor (web/editor/editor.js) speaks y-protocols over it (`bridge` has the messages). On connect the
daemon sends sync step 1 (its state vector); the browser answers with step 2 (what it holds that the daemon lacks,
usually nothing) and its own step 1, which the daemon answers with step 2 (the whole document for a fresh page).
Then:

- the browser's updates go through `DocHandle.apply_local` (checked, signed, stored durably, sent to the peers), one
  at a time in the order sent; after each, the daemon sends `ack(n)`: n of the connection's step-2 and update
  messages are stored. A refused update (a read-only document, or a malformed one) gets y-protocols' "permission
  denied" with the reason, and the connection is closed: the page's copy has diverged and must reload;
- the document's other updates (from peers, other pages, the Python API) are forwarded as sync updates;
- awareness (cursors, names) goes both ways: the browser's to `handle.awareness` (so the peers and other pages see
  it), everyone else's to the browser; when the browser goes away, abruptly or not, its clients are removed.

Every browser message is bounded (`MAX_MESSAGE_SIZE`, also the WebSocket's frame limit) and checked before use. Each
connection has its own send queue, bounded in messages and bytes: a page that cannot keep up is disconnected (it
reconnects and catches up with step 1 / step 2) instead of holding the daemon's memory or slowing anyone else.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode, WSMsgType, web

from peerloom.apps.docs.awareness import AwarenessEntry, encode_awareness, parse_awareness
from peerloom.apps.docs.bridge import (
    MAX_MESSAGE_SIZE,
    Changes,
    Presence,
    StateVector,
    decode_browser_message,
    encode_ack,
    encode_denied,
    encode_step1,
    encode_step2,
    encode_update,
)
from peerloom.apps.docs.bridge import encode_awareness as awareness_message
from peerloom.apps.docs.keys import DocError

if TYPE_CHECKING:
    from peerloom.apps.docs.handle import DocHandle

log = logging.getLogger(__name__)

MAX_QUEUE_MESSAGES = 4096  # messages waiting to go to one page
MAX_QUEUE_BYTES = 16 * 1024 * 1024  # their bytes: a page this far behind is dropped and catches up on reconnect
MAX_CLIENTS = 64  # awareness clients one page may announce (one per editor it shows)
HEARTBEAT = 30.0  # seconds between WebSocket pings: a vanished page is noticed


class SendQueue:
    """The messages waiting to go to one page, bounded in count and bytes; `put` is False once it overflowed."""

    def __init__(self, max_messages: int | None = None, max_bytes: int | None = None) -> None:
        self.max_messages = max_messages or MAX_QUEUE_MESSAGES
        self.max_bytes = max_bytes or MAX_QUEUE_BYTES
        self._items: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def put(self, data: bytes) -> bool:
        if self.closed or self.overflowed:
            return False
        if len(self._items) >= self.max_messages or self._bytes + len(data) > self.max_bytes:
            self.overflowed = True
            self._ready.set()
            return False
        self._items.append(data)
        self._bytes += len(data)
        self._ready.set()
        return True

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def get(self) -> bytes | None:
        """The next message; None once closed or overflowed (the connection then ends)."""
        while not self._items:
            if self.closed or self.overflowed:
                return None
            self._ready.clear()
            await self._ready.wait()
        if self.overflowed:
            return None
        data = self._items.popleft()
        self._bytes -= len(data)
        return data


class EditorConnection:
    """One browser editor attached to one document (see the module docstring)."""

    def __init__(self, handle: DocHandle, ws: web.WebSocketResponse, queue: SendQueue | None = None) -> None:
        self.handle = handle
        self.ws = ws
        self.queue = queue or SendQueue()
        self.acked = 0
        self.clients: dict[int, int] = {}  # awareness client ids this page announced → their latest clock
        self._applying = False  # while the browser's own update is applied, its "local" echo is not sent back

    def _on_update(self, update: bytes, origin: str) -> None:
        if not (self._applying and origin == "local"):
            self._send(encode_update(update))

    def _on_awareness(self, update: bytes, origin: object) -> None:
        if origin is not self:
            self._send(awareness_message(update))

    def _send(self, data: bytes) -> None:
        behind = self.queue.overflowed
        if not self.queue.put(data) and self.queue.overflowed and not behind:
            log.info("docs: an editor of %s fell too far behind; disconnecting it", self.handle.id)

    async def run(self) -> None:
        """Serve the page until it goes away or breaks the protocol."""
        unsubscribe = [self.handle.subscribe(self._on_update), self.handle.awareness.subscribe(self._on_awareness)]
        writer = asyncio.create_task(self._write(), name=f"docs editor writer {self.handle.id[:8]}")
        try:
            self._send(encode_step1(self.handle.state_vector()))
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY:
                    if msg.type == WSMsgType.TEXT:
                        await self.ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"binary messages only")
                    break
                if writer.done() or not await self._receive(msg.data):
                    break
        finally:
            for stop in unsubscribe:
                stop()
            self._leave()
            self.queue.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 5.0)  # flush what is queued (a denial's reason) unless stuck
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await self.ws.close()

    async def _receive(self, data: bytes) -> bool:
        """Handle one browser message; False when the connection must end."""
        try:
            message = decode_browser_message(data)
            if isinstance(message, StateVector):
                self._send(encode_step2(self.handle.diff(message.vector)))
            elif isinstance(message, Changes):
                if not message.empty:
                    await self._apply(message.update)
                self.acked += 1
                self._send(encode_ack(self.acked))
            elif isinstance(message, Presence):
                self._presence(message.update)
        except DocError as exc:
            log.info("docs: an editor of %s was refused: %s", self.handle.id, exc)
            self._send(encode_denied(str(exc)))
            return False
        return True

    async def _apply(self, update: bytes) -> None:
        self._applying = True
        try:
            await self.handle.apply_local(update)
        finally:
            self._applying = False

    def _presence(self, update: bytes) -> None:
        entries = parse_awareness(update)
        for entry in entries:
            if entry.state == "null":
                self.clients.pop(entry.client, None)
            elif entry.client in self.clients or len(self.clients) < MAX_CLIENTS:
                self.clients[entry.client] = max(entry.clock, self.clients.get(entry.client, 0))
        self.handle.awareness.apply(update, self)

    def _leave(self) -> None:
        """The page is gone: its awareness clients leave (y-protocols: a newer clock with a null state)."""
        if not self.clients:
            return
        gone = [AwarenessEntry(client, clock + 1, "null") for client, clock in self.clients.items()]
        self.clients.clear()
        with contextlib.suppress(DocError):
            self.handle.awareness.apply(encode_awareness(gone), self)

    async def _write(self) -> None:
        try:
            while (data := await self.queue.get()) is not None:
                await self.ws.send_bytes(data)
        except (ConnectionResetError, RuntimeError):
            pass  # the page went away mid-send
        finally:
            if self.queue.overflowed:
                await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too far behind: reconnect")


async def serve_editor(request: web.Request, handle: DocHandle) -> web.WebSocketResponse:
    """Upgrade `request` to the editor WebSocket of `handle` and serve it until the page goes away."""
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_MESSAGE_SIZE)
    await ws.prepare(request)
    await EditorConnection(handle, ws).run()
    return ws
