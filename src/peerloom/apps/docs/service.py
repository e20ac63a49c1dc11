"""The documents service (`node.docs`): the asyncio driver of the sans-I/O `DocSync` of each held document.

    doc = await node.docs.create("notes")
    doc.text().insert(0, "hello")
    other = await node.docs.open(doc.link)      # on another node

One `/peerloom/doc/1.0.0` stream per (peer, document): its opener writes the document id, then both sides write
frames (syncproto). When a peer that speaks the protocol (identify) connects, the side with the smaller peer id opens
a stream for every document it holds, and a document opened later gets a stream to every such peer from the side
that opened it; a peer that does not hold the document resets it. When both sides open one at once, the stream
opened by the smaller peer id wins on both sides.

Each link has its own bounded send queue and writer task: a slow or vanished peer is dropped when its queue passes
SEND_QUEUE_BYTES or its stream fails, and a broadcast only ever appends to queues, so one peer's abrupt disconnect
never breaks delivery to the others (the failure `pycrdt-websocket` had). One timer task ticks every document
(re-sync, expiry). With pub/sub, each document joins the topic `peerloom-doc/<id hex>`, which announces it on the
DHT, and the peers found there are dialled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from peerloom.apps.docs.handle import DocHandle, DocInfo
from peerloom.apps.docs.held import DocCatalog, Held, HeldDoc
from peerloom.apps.docs.keys import KEY_SIZE, DocError, DocKeys, parse_link
from peerloom.apps.docs.store import DocStore
from peerloom.apps.docs.sync import Applied, AwarenessIn, CaughtUp, DocSync, Refused, Send
from peerloom.apps.docs.syncproto import MAX_MESSAGE_SIZE
from peerloom.codec.varint import VarintError, read_frame
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.host import PeerDisconnected, PeerEvent, PeerIdentified
from peerloom.net.stream import Stream
from peerloom.service import NodeContext

log = logging.getLogger(__name__)

PROTOCOL = "/peerloom/doc/1.0.0"
SEND_QUEUE_BYTES = 16 * 1024 * 1024  # queued for one link past this: the peer is too slow and is dropped
OPEN_TIMEOUT = 10.0  # seconds for the opener of a stream to name its document
TICK = 1.0  # seconds between two ticks of the documents (re-sync is every sync.RESYNC_INTERVAL)
TOPIC_PREFIX = "peerloom-doc/"
MAX_REFUSED = 32  # refused updates after which a link is dropped (not reopened: the peer may open it again)
FIND_INTERVAL = 60.0  # seconds between two searches of the DHT for the peers of a document that has none
REOPEN_DELAY = 1.0  # seconds before a dropped link is opened again (doubling with each try)...
MAX_REOPENS = 4  # ...and tries without a catch-up in between, after which the peer is left alone


class DocsStopped(DocError):
    """The documents service is not running."""


class TopicPeers(Protocol):
    """What the service uses of pub/sub to find a document's peers (PubSubService)."""

    def subscribe(self, topic: str) -> Any: ...
    async def find_topic_peers(self, topic: str) -> int: ...


class _Link:
    """Our stream with one peer for one document, and what waits to be written to it."""

    def __init__(self, peer: PeerId, doc_id: bytes, stream: Stream, opener: PeerId) -> None:
        self.peer, self.doc_id, self.stream, self.opener = peer, doc_id, stream, opener
        self.queue: list[bytes] = []
        self.queued = 0
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.synced = asyncio.Event()  # the peer sent everything our first step 1 said we lacked
        self.refused = 0  # updates of this peer refused (bad signature, no right to write, garbage)

    def close(self) -> None:
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.stream.reset()


class DocsService:
    """Collaborative documents as a node service (name "docs"): see the module docstring."""

    name = "docs"
    protocols = (PROTOCOL,)

    def __init__(self, *, pubsub: TopicPeers | None = None, compact_after: int | None = None,
                 send_queue_bytes: int = SEND_QUEUE_BYTES) -> None:
        self.pubsub = pubsub
        self.compact_after = compact_after
        self.send_queue_bytes = send_queue_bytes
        self._ctx: NodeContext | None = None
        self._store: DocStore | None = None
        self._catalog: DocCatalog | None = None
        self._docs: dict[bytes, DocHandle] = {}
        self._links: dict[tuple[PeerId, bytes], _Link] = {}
        self._topics: dict[bytes, Any] = {}
        self._reopens: dict[tuple[PeerId, bytes], int] = {}  # tries to reopen a link since its last catch-up
        self._unsubscribe_host: Callable[[], None] | None = None
        self.counters = {"refused": 0, "slow_peers_dropped": 0, "bad_frames": 0}

    # -- the service ----------------------------------------------------------------------------------------------
    async def start(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._store = DocStore(ctx.state)
        self._catalog = DocCatalog(self._store)
        for held in self._catalog.all():
            try:
                self._hold(held)
            except DocError as exc:  # a tampered log: that document stays closed, the node runs
                log.error("docs: cannot load document %s: %s", held.keys.doc_id.hex(), exc)
        self._unsubscribe_host = ctx.host.subscribe(self._peer_event)
        for peer, conn in list(ctx.host.connections.items()):
            if conn.info is not None and PROTOCOL in conn.info.protocols and self._opens_to(peer):
                self._connect_docs(peer, list(self._docs))
        ctx.tasks.spawn(self._ticker(), name="docs ticker")

    def admits(self, peer: PeerId, protocol: str) -> bool:
        return True

    async def stop(self) -> None:
        if self._unsubscribe_host is not None:
            self._unsubscribe_host()
            self._unsubscribe_host = None
        for link in list(self._links.values()):
            link.close()
        self._links.clear()
        for sub in self._topics.values():
            sub.close()
        self._topics.clear()
        self._docs.clear()
        self._ctx = None

    async def handle(self, stream: Stream, protocol: str) -> None:
        """An incoming stream: it names its document, then carries frames until it ends."""
        ctx = self._ctx
        if ctx is None:
            stream.reset()
            return
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                doc_id = await stream.readexactly(KEY_SIZE)
        except (PeerloomError, TimeoutError):
            stream.reset()
            return
        peer = stream.remote_peer
        if doc_id not in self._docs:
            stream.reset()
            return
        link = self._add_link(peer, doc_id, stream, opener=peer)
        if link is not None:
            await self._read(link)

    # -- links ----------------------------------------------------------------------------------------------------
    def _running(self) -> NodeContext:
        if self._ctx is None:
            raise DocsStopped("the documents service is not running")
        return self._ctx

    def _add_link(self, peer: PeerId, doc_id: bytes, stream: Stream, opener: PeerId) -> _Link | None:
        """Register a stream; when one already exists for (peer, doc), the one the smaller peer id opened wins."""
        ctx = self._running()
        key = (peer, doc_id)
        old = self._links.get(key)
        if old is not None:
            if old.opener.to_bytes() <= opener.to_bytes():
                stream.reset()
                return None
            self._drop(old, "replaced by the other side's stream")
        link = self._links[key] = _Link(peer, doc_id, stream, opener)
        link.tasks.append(ctx.tasks.spawn(self._write(link), name=f"docs writer {peer}"))
        handle = self._docs[doc_id]
        handle.sync.add_peer(peer, time.monotonic())
        self._drain(handle)
        return link

    def _drop(self, link: _Link, reason: str, *, reopen: bool = False) -> None:
        """Forget a link; with `reopen`, open the document's stream to the peer again after a while if it is still
        connected (a slow peer's queue starts afresh and it catches up by state; one that keeps failing before it
        catches up is given up after MAX_REOPENS)."""
        if self._links.get((link.peer, link.doc_id)) is not link:
            return
        del self._links[(link.peer, link.doc_id)]
        log.debug("docs: dropping %s for %s (%s)", link.peer, link.doc_id.hex()[:12], reason)
        link.close()
        handle = self._docs.get(link.doc_id)
        if handle is not None:
            handle.sync.remove_peer(link.peer)
        key = (link.peer, link.doc_id)
        tries = self._reopens.get(key, 0)
        if reopen and self._ctx is not None and handle is not None and tries < MAX_REOPENS:
            self._reopens[key] = tries + 1
            self._ctx.tasks.spawn(self._reopen(link.peer, link.doc_id, REOPEN_DELAY * 2 ** tries),
                                  name=f"docs reopen {link.peer}")

    async def _reopen(self, peer: PeerId, doc_id: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        ctx = self._ctx
        if ctx is None or (peer, doc_id) in self._links or doc_id not in self._docs:
            return
        conn = ctx.host.connections.get(peer)
        if conn is not None and not conn.closed:
            await self._open_link(peer, doc_id)

    async def _open_link(self, peer: PeerId, doc_id: bytes) -> None:
        ctx = self._running()
        try:
            stream = await ctx.host.new_stream(peer, [PROTOCOL])
            await stream.write(doc_id)
        except (PeerloomError, TimeoutError) as exc:
            log.debug("docs: no stream to %s: %r", peer, exc)
            return
        if self._ctx is None or doc_id not in self._docs:
            stream.reset()
            return
        link = self._add_link(peer, doc_id, stream, opener=ctx.identity.peer_id)
        if link is not None:
            await self._read(link)

    def _opens_to(self, peer: PeerId) -> bool:
        """Whether we open the streams of the documents we hold when `peer` connects: the smaller peer id does (the
        other side would lose the tie anyway), so two peers do not both open one and then drop one; a document
        opened later gets its stream from whichever side opens it."""
        return self._running().identity.peer_id.to_bytes() < peer.to_bytes()

    def _connect_docs(self, peer: PeerId, doc_ids: list[bytes]) -> None:
        ctx = self._running()
        for doc_id in doc_ids:
            if (peer, doc_id) not in self._links:
                ctx.tasks.spawn(self._open_link(peer, doc_id), name=f"docs open {peer}")

    def _peer_event(self, event: PeerEvent) -> None:
        if self._ctx is None:
            return
        if isinstance(event, PeerIdentified) and PROTOCOL in event.protocols and self._opens_to(event.peer):
            self._connect_docs(event.peer, list(self._docs))
        elif isinstance(event, PeerDisconnected):
            for link in [link for (peer, _), link in self._links.items() if peer == event.peer]:
                self._drop(link, f"disconnected: {event.reason}")

    async def _read(self, link: _Link) -> None:
        buffer = bytearray()
        try:
            while chunk := await link.stream.read():
                buffer += chunk
                handle = self._docs.get(link.doc_id)
                if handle is None or self._links.get((link.peer, link.doc_id)) is not link:
                    return
                now = time.monotonic()
                pos = 0
                while (frame := read_frame(buffer, MAX_MESSAGE_SIZE, pos)) is not None:
                    body, pos = frame
                    handle.sync.receive(link.peer, body, now)
                del buffer[:pos]
                handle.sync.settle(now)
                self._drain(handle)
        except (VarintError, DocError) as exc:  # a malformed frame: this stream goes, the peer stays
            self.counters["bad_frames"] += 1
            log.info("docs: %s sent a bad frame (%s); resetting its stream", link.peer, exc)
        except PeerloomError as exc:
            log.debug("docs: stream with %s failed: %s", link.peer, exc)
        finally:
            self._drop(link, "stream ended", reopen=True)

    async def _write(self, link: _Link) -> None:
        try:
            while True:
                while link.queue:
                    data = b"".join(link.queue)
                    link.queue.clear()
                    link.queued = 0
                    await link.stream.write(data)
                link.wake.clear()
                await link.wake.wait()
        except PeerloomError as exc:
            self._drop(link, f"write failed: {exc}", reopen=True)

    def _send(self, link: _Link, data: bytes) -> None:
        if link.queued + len(data) > self.send_queue_bytes:
            self.counters["slow_peers_dropped"] += 1
            log.warning("docs: %s reads too slowly (%d bytes queued); dropping it", link.peer, link.queued)
            self._drop(link, "send queue full", reopen=True)
            return
        link.queue.append(data)
        link.queued += len(data)
        link.wake.set()

    # -- the cores' events ----------------------------------------------------------------------------------------
    def _drain(self, handle: DocHandle) -> None:
        doc_id = handle.held.doc_id
        for event in handle.sync.take_events():
            if isinstance(event, Send):
                link = self._links.get((event.peer, doc_id))  # type: ignore[arg-type]
                if link is not None:
                    self._send(link, event.data)
            elif isinstance(event, Applied):
                if event.update is not None:
                    handle.notify(event.update, "remote")
            elif isinstance(event, AwarenessIn):
                handle.awareness.notify(event.update, "remote")
            elif isinstance(event, CaughtUp):
                link = self._links.get((event.peer, doc_id))  # type: ignore[arg-type]
                if link is not None:
                    link.synced.set()
                    self._reopens.pop((link.peer, doc_id), None)
            elif isinstance(event, Refused):
                self.counters["refused"] += 1
                log.info("docs: refused an update from %s: %s", event.peer, event.error)
                link = self._links.get((event.peer, doc_id))  # type: ignore[arg-type]
                if link is not None:
                    link.refused += 1
                    if link.refused > MAX_REFUSED:  # a peer that keeps sending what no writer signed: gone
                        self._drop(link, f"{link.refused} refused updates")

    async def _ticker(self) -> None:
        last_find = time.monotonic()
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            for handle in list(self._docs.values()):
                handle.sync.tick(now)
                self._drain(handle)
            if self.pubsub is not None and now - last_find >= FIND_INTERVAL:
                last_find = now  # documents without a peer look for one again (they may have announced since)
                for doc_id, handle in list(self._docs.items()):
                    if not handle.sync.peers:
                        self._running().tasks.spawn(self._find_peers(TOPIC_PREFIX + doc_id.hex()),
                                                    name="docs find peers")

    # -- the Python API -------------------------------------------------------------------------------------------
    def _hold(self, held: Held) -> DocHandle:
        assert self._store is not None and self._catalog is not None
        doc = HeldDoc(self._catalog, self._store, held, compact_after=self.compact_after)
        handle = DocHandle(doc, DocSync(doc), self._drain, held.title)
        doc_id = held.keys.doc_id
        self._docs[doc_id] = handle
        if self.pubsub is not None:
            topic = TOPIC_PREFIX + doc_id.hex()
            self._topics[doc_id] = self.pubsub.subscribe(topic)
            self._running().tasks.spawn(self._find_peers(topic), name="docs find peers")
        return handle

    async def _find_peers(self, topic: str) -> None:
        if self.pubsub is None:
            return
        try:
            await self.pubsub.find_topic_peers(topic)
        except (PeerloomError, TimeoutError) as exc:
            log.debug("docs: finding the peers of %s failed: %s", topic, exc)

    async def create(self, title: str | None = None) -> DocHandle:
        """A new document, writable by this node (its document key is the first writer)."""
        ctx = self._running()
        keys, _ = DocKeys.new()
        assert self._catalog is not None
        handle = self._hold(self._catalog.put(keys, title, time.time()))
        self._connect_docs_all(ctx, keys.doc_id)
        return handle

    def _connect_docs_all(self, ctx: NodeContext, doc_id: bytes) -> None:
        for peer, conn in list(ctx.host.connections.items()):
            if conn.info is not None and PROTOCOL in conn.info.protocols:
                self._connect_docs(peer, [doc_id])

    async def open(self, link_or_id: str) -> DocHandle:
        """The document a link (with or without keys) or a hex id names; held from now on. A link with more keys
        than this node had upgrades what it holds. DocLinkError for text that is neither."""
        ctx = self._running()
        keys = _parse(link_or_id)
        assert self._catalog is not None
        handle = self._docs.get(keys.doc_id)
        if handle is not None:
            known = handle.held.keys
            if not ((keys.read_key and not known.read_key) or (keys.writer and not known.writer)):
                return handle
            self._close(keys.doc_id)  # more keys than before: held again with them
        handle = self._hold(self._catalog.put(keys, None, time.time()))
        self._connect_docs_all(ctx, keys.doc_id)
        return handle

    def _close(self, doc_id: bytes) -> None:
        for link in [link for (_, d), link in self._links.items() if d == doc_id]:
            self._drop(link, "document reopened")
        sub = self._topics.pop(doc_id, None)
        if sub is not None:
            sub.close()
        self._docs.pop(doc_id, None)

    def get(self, doc_id: str) -> DocHandle | None:
        """The open document with this hex id or link, if held."""
        try:
            return self._docs.get(_parse(doc_id).doc_id)
        except DocError:
            return None

    def list(self) -> list[DocInfo]:
        return [handle.info() for handle in self._docs.values()]

    async def connect(self, addr: str) -> None:
        """Dial a peer (`--peer` multiaddr); its streams for our documents open once it is identified."""
        await self._running().host.connect(addr)

    async def wait_synced(self, handle: DocHandle, peer: PeerId, timeout: float = 10.0) -> None:
        """Wait until `peer` sent everything our first step 1 for `handle` said we lacked."""
        async with asyncio.timeout(timeout):
            while (link := self._links.get((peer, handle.held.doc_id))) is None:
                await asyncio.sleep(0.02)
            await link.synced.wait()

    def link_count(self) -> int:
        return len(self._links)


def _parse(text: str) -> DocKeys:
    text = text.strip()
    if len(text) == 2 * KEY_SIZE and all(c in "0123456789abcdef" for c in text.lower()):
        return DocKeys(bytes.fromhex(text))
    return parse_link(text)


__all__ = ["PROTOCOL", "DocHandle", "DocInfo", "DocsService", "DocsStopped"]
