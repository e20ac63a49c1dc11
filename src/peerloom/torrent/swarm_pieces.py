"""How pieces flow through a torrent: the start-up check of what is on disk, receiving blocks into piece buffers,
verifying each downloaded piece (off the loop) and finding the peers that sent bad blocks, and serving pieces from a
read cache. `PieceFlow` is a part of `Torrent`: it owns the piece buffers, the read cache, the pieces being verified
and the transfer totals, and reads and tells the torrent through `PieceFlowHost`."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from peerloom.errors import ProtocolError
from peerloom.state import StateError
from peerloom.torrent import wire
from peerloom.torrent.existing import files_written, refuse_foreign_files
from peerloom.torrent.ratelimit import TokenBucket, allowance, spend
from peerloom.torrent.resume import unpack_bits
from peerloom.torrent.state import State
from peerloom.torrent.storage import StorageError

if TYPE_CHECKING:
    from peerloom.torrent.context import SwarmContext
    from peerloom.torrent.metainfo import Metainfo
    from peerloom.torrent.peer import PeerConnection
    from peerloom.torrent.picker import PiecePicker
    from peerloom.torrent.resume import ResumeRecord
    from peerloom.torrent.storage import PieceMap, PieceVerifier, Storage

log = logging.getLogger(__name__)

MAX_FAILED_KEPT = 16  # failed pieces kept to find the culprit block when the piece later verifies
READ_AHEAD_PIECES = 4  # pieces loaded ahead of a peer's request queue
READ_AHEAD_REQUESTS = 512  # how far into the queue read-ahead looks
THROTTLE_WAIT = 0.05  # seconds an upload over its limit waits before trying again


class PieceFlowHost(Protocol):
    """What the piece flow reads of its torrent, and what it tells it."""

    meta: Metainfo | None
    pieces: PieceMap | None
    storage: Storage | None
    verifier: PieceVerifier | None
    picker: PiecePicker | None
    state: State
    peers: list[PeerConnection]
    record: ResumeRecord | None
    selected: list[int] | None
    trusted_complete: bool
    seed_only: bool
    overwrite: bool

    def fail(self, message: str) -> None: ...
    def strike(self, peer: PeerConnection, reason: str) -> None: ...
    def save_progress(self, passed: int | None = None) -> None: ...
    def completed(self) -> None: ...
    def request_more(self, peer: PeerConnection) -> None: ...
    def wake(self) -> None: ...  # `next_wakeup` is earlier than it was: the timer driver is to look again


class PieceFlow:
    def __init__(self, context: SwarmContext, torrent: PieceFlowHost, *, upload_bucket: TokenBucket,
                 downloaded: int = 0, uploaded: int = 0) -> None:
        self.context = context
        self.torrent = torrent
        self.upload_bucket = upload_bucket  # the torrent's own upload limit (the node's is the context's)
        self.buffers: dict[int, memoryview] = {}  # pieces being received (views: a block lands in one copy)
        self._free_buffers: dict[int, list[memoryview]] = {}
        self.block_senders: dict[int, dict[int, Any]] = {}
        self.failed: OrderedDict[int, tuple[bytes, dict[int, Any]]] = OrderedDict()
        self.in_flight: set[asyncio.Future] = set()  # blocking work under way (verify and write, finish, ...)
        self.verifying_bytes = 0
        self.cache: OrderedDict[int, memoryview] = OrderedDict()
        self.cache_bytes = 0
        self.loading: dict[int, asyncio.Future] = {}
        self._throttled: set[PeerConnection] = set()  # peers whose requests wait for upload tokens
        self.throttled_until: float | None = None  # when the throttled peers are served again (see `tick`)
        self.downloaded = downloaded  # over the torrent's life (kept in the resume data)
        self.uploaded = uploaded
        self.session_downloaded = 0
        self.wasted = 0
        self.hash_failures = 0
        self.checked = 0  # pieces hashed by the start-up check

    def track(self, fut: asyncio.Future) -> None:
        """Blocking work that `drain` waits for."""
        self.in_flight.add(fut)
        fut.add_done_callback(self.in_flight.discard)

    async def drain(self) -> None:
        """Stop serving, and wait until every piece verified is written."""
        self.throttled_until = None
        self._throttled.clear()
        if self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)

    def peer_lost(self, peer: PeerConnection) -> None:
        self._throttled.discard(peer)

    def on_piece(self, peer: PeerConnection, m: wire.Piece) -> None:
        # once per 16 KiB block received: no allocation or clock read that can be avoided
        index, begin, data = m
        n = len(data)
        peer.bytes_down += n
        self.downloaded += n
        self.session_downloaded += n
        peer.outstanding.pop((index, begin), None)
        picker = self.torrent.picker
        if picker is None or index >= picker.num_pieces:
            raise ProtocolError("piece message for a piece that does not exist")
        others = picker.block_received(peer, index, begin, n)
        if others is None:
            self.wasted += n
            return
        peer.block_arrived(peer.last_received)
        peer.snubbed = False
        buf = self.buffers.get(index)
        if buf is None:
            buf = self.buffers[index] = self._piece_buffer(picker.sizes[index])
            self.block_senders[index] = {}
        buf[begin : begin + n] = data
        self.block_senders[index][begin] = peer
        for other in others:
            if other.outstanding.pop((index, begin), None) is not None:
                other.send(wire.encode(wire.Cancel(index, begin, n)))
        if picker.piece_complete(index):
            picker.start_verifying(index)
            self._verify(index, self.buffers.pop(index), self.block_senders.pop(index))

    def add_piece(self, index: int, data: memoryview) -> asyncio.Future[bool]:
        """A whole piece from a source that is not a peer (a web seed, which claimed it with
        `PiecePicker.claim_pieces`): verified, written and announced as a peer's piece is. The future says whether
        it passed; a failure strikes no peer (the source keeps its own count)."""
        self.downloaded += len(data)
        self.session_downloaded += len(data)
        return self._verify(index, data, {})

    async def check(self) -> None:
        """Find what is on disk: trust the resume record where it allows, hash the rest, then make the files ready
        to be written (see `existing` for which existing files may be written into, and `_prepare_files`)."""
        t = self.torrent
        assert t.meta and t.storage and t.picker and t.pieces and t.verifier
        picker, pieces, storage = t.picker, t.pieces, t.storage
        n = pieces.num_pieces
        rec = t.record
        outcomes: list[bool | None] = [None] * n  # per piece: verified, failed, or not read whole
        to_check: set[int] = set()
        sizes: list[int] = []
        if self.torrent.trusted_complete:  # nothing to look at: seeding starts at once, before any peer can connect
            for i in range(n):
                picker.mark_have(i)
        else:
            # with a record, stat on the loop (one stat a file): a seed back from a clean stop is seeding before a
            # peer can connect and be told "none" first (a peerloom leecher without the metadata yet drops the
            # `have`s that follow)
            recorded = rec is not None and bool(rec.have)
            state = storage.file_state() if recorded else await self.context.run_blocking(storage.file_state)
            sizes = [size for size, _ in state]
            if rec is not None and rec.have:
                saved = unpack_bits(rec.have, n)
                if rec.clean and rec.file_state == [list(s) for s in state]:
                    for i in range(n):
                        if saved[i]:
                            picker.mark_have(i)
                            outcomes[i] = True
                else:
                    to_check = {i for i in range(n) if saved[i]}  # crashed: re-hash only what we had
            elif any(size > 0 for size in sizes):
                to_check = set(range(n))
        suspects = [] if self.torrent.trusted_complete or self.torrent.seed_only else self._unvouched_files(sizes)
        for index in suspects:  # the rule for existing files needs every piece covering them checked
            to_check.update(p for p in pieces.pieces_of_file(index) if not picker.have[p])
        self.checked = 0
        verifier = self.torrent.verifier

        def check(index: int) -> bool | None:
            data = storage.read(index)
            return None if data is None else verifier.verify(index, data)

        def checked(index: int, outcome: bool | None) -> None:
            outcomes[index] = outcome
            if outcome:
                picker.mark_have(index)
            self.checked += 1

        window = 2 * self.context.settings.hash_threads
        pending: dict[asyncio.Future, int] = {}
        for index in sorted(to_check):
            if len(pending) >= window:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    checked(pending.pop(fut), fut.result())
            pending[self.context.run_blocking_future(check, index)] = index
        for fut, index in pending.items():
            checked(index, await fut)
        if self.torrent.seed_only and not self.torrent.trusted_complete and not picker.complete:
            raise StorageError(self._changed_since_shared())
        if not self.torrent.trusted_complete and not self.torrent.seed_only:
            await self.context.run_blocking(self._prepare_files, suspects, sizes, outcomes)

    def _unvouched_files(self, sizes: list[int]) -> list[int]:
        """Existing, non-empty files the download may write into that the resume record does not vouch for (the
        record means peerloom created the files selected then)."""
        t = self.torrent
        assert t.pieces is not None and t.picker is not None
        vouched = t.pieces.file_mask(t.record.selected) if t.record is not None else None
        written = files_written(t.pieces, t.pieces.file_mask(t.selected), t.picker.wanted, [0] * t.pieces.num_pieces)
        return [i for i in written if sizes[i] > 0 and not (vouched is not None and vouched[i])]

    def _prepare_files(self, suspects: list[int], sizes: list[int], outcomes: list[bool | None]) -> None:
        """Blocking. Refuse to start over a user's file that is not this torrent's (unless told to overwrite), then
        give every selected file exactly its length: missing ones created sparse, bytes past the end cut. Files
        that are not selected are never created or cut."""
        t = self.torrent
        assert t.storage is not None and t.pieces is not None and t.picker is not None
        written = set(files_written(t.pieces, t.pieces.file_mask(t.selected), t.picker.wanted, t.picker.have))
        if not t.overwrite:
            refuse_foreign_files(t.storage, [i for i in suspects if i in written], sizes, outcomes)
        mask = t.pieces.file_mask(t.selected)
        t.storage.fit_files(i for i, chosen in enumerate(mask) if chosen)

    def _changed_since_shared(self) -> str:
        """Why a shared folder cannot be seeded: the first file holding a piece that no longer verifies."""
        t = self.torrent
        assert t.pieces is not None and t.picker is not None and t.storage is not None
        picker = t.picker
        index = next(i for i in range(picker.num_pieces) if picker.wanted[i] and not picker.have[i])
        file_index = next(s.file_index for s in t.pieces.segments(index) if s.file_index >= 0)
        return (f"{t.storage.path_of(file_index)} changed since it was shared (piece {index} no longer matches);"
                " share it again")

    def _piece_buffer(self, size: int) -> memoryview:
        """A buffer for an incoming piece, reused from a verified one when possible: fresh megabytes
        cost page faults, which at a gigabyte a few seconds add up to a good part of a core. It is a
        memoryview: `bytearray[a:b] = view` copies the block twice (through a temporary), a view once."""
        free = self._free_buffers.get(size)
        return free.pop() if free else memoryview(bytearray(size))

    def _recycle(self, buf: memoryview) -> None:
        """Keep a verified piece's buffer for the next piece: a few suffice (one is taken as soon as a piece starts);
        more would only hold memory."""
        free = self._free_buffers.setdefault(len(buf), [])
        if len(free) * len(buf) < self.context.settings.max_verify_bytes // 4:
            free.append(buf)

    def _verify(self, index: int, buf: memoryview, senders: dict[int, Any]) -> asyncio.Future[bool]:
        self.verifying_bytes += len(buf)
        storage, verifier = self.torrent.storage, self.torrent.verifier
        assert storage is not None and verifier is not None

        def verify_and_write() -> bool:
            if not verifier.verify(index, buf):
                return False
            storage.write_piece(index, buf)
            return True

        fut = self.context.run_blocking_future(verify_and_write)
        self.in_flight.add(fut)
        fut.add_done_callback(lambda f: self._piece_checked(f, index, buf, senders))
        return fut

    def _piece_checked(self, fut: asyncio.Future, index: int, buf: memoryview, senders: dict[int, Any]) -> None:
        self.in_flight.discard(fut)
        self.verifying_bytes -= len(buf)
        picker = self.torrent.picker
        assert picker is not None
        exc = fut.exception()
        if exc is not None:
            picker.piece_failed(index)
            if isinstance(exc, StorageError):
                self.torrent.fail(str(exc))
            else:
                log.error("verifying piece %d failed", index, exc_info=exc)
                self.torrent.fail(f"internal error while verifying: {exc!r}")
            return
        cached = False
        if fut.result():
            picker.piece_passed(index)
            # recorded before any peer or API client can see the piece: a kill -9 never costs a piece shown as had
            try:
                self.torrent.save_progress(index)
            except StateError as exc:  # the home's disk is full, say: stop here rather than go on unrecorded
                self.torrent.fail(str(exc))
                return
            self._find_culprits(index, buf)
            have = wire.encode_have(index)
            lacking = False
            for peer in self.torrent.peers:
                if not (peer.bits and peer.bits[index]):
                    peer.send(have)
                    lacking = lacking or peer.peer_interested
            if lacking and index not in self.cache:
                # peers that lack the piece will ask for it soon: serve them from memory, not from a read of the file
                # (the buffer is not reused for another piece then: queued writes may still hold views of it)
                self._cache_piece(index, buf)
                cached = True
            if picker.complete and self.torrent.state is State.DOWNLOADING:
                try:
                    self.torrent.completed()
                except StateError as exc:
                    self.torrent.fail(str(exc))
        else:
            picker.piece_failed(index)
            self.hash_failures += 1
            distinct = {id(p): p for p in senders.values()}
            if len(distinct) == 1:
                self.torrent.strike(next(iter(distinct.values())), f"piece {index} failed its hash check")
            elif distinct:
                self.failed[index] = (bytes(buf), senders)
                while len(self.failed) > MAX_FAILED_KEPT:
                    self.failed.popitem(last=False)
        if not cached:
            self._recycle(buf)
        if self.torrent.state is State.DOWNLOADING:
            for peer in self.torrent.peers:
                if not peer.peer_choking and peer.am_interested and not peer.snubbed:
                    self.torrent.request_more(peer)

    def _find_culprits(self, index: int, good: memoryview) -> None:
        """A piece that failed with blocks from several peers now verified: whoever sent a block that
        differs from the good data is proven to have sent bad data."""
        entry = self.failed.pop(index, None)
        if entry is None:
            return
        bad, senders = entry
        guilty = {}
        for begin, peer in senders.items():
            if bad[begin : begin + wire.BLOCK_SIZE] != good[begin : begin + wire.BLOCK_SIZE]:
                guilty[id(peer)] = peer
        for peer in guilty.values():
            self.torrent.strike(peer, f"sent bad data for piece {index}")

    def serve(self, peer: PeerConnection) -> None:
        """Answer queued requests from the piece cache, loading pieces from disk off the loop."""
        queued = 0
        buckets = (self.upload_bucket, self.context.upload_bucket)
        limited = self.upload_bucket.limited or self.context.upload_bucket.limited
        pending, cache, piece_header = peer.pending, self.cache, wire.piece_header
        parts: list[bytes | memoryview] = []  # each block's header and data, handed over in one go
        try:
            while pending and not peer.write_paused and not peer.closed and not peer.am_choking:
                index, begin, length = pending[0]
                data = cache.get(index)
                if data is None:
                    if peer.awaiting_piece != index:  # once per piece: later calls find it loading already
                        peer.awaiting_piece = index
                        self._load_piece(index).add_done_callback(lambda _f, p=peer: self._piece_loaded(p))
                        self._read_ahead(peer)
                    return
                if index != peer.serving_piece:  # on to the next piece: keep the ones after it loading meanwhile
                    peer.serving_piece = index
                    self._read_ahead(peer)
                if limited:
                    if allowance(time.monotonic(), *buckets) < length:
                        self._throttle(peer)
                        return
                    spend(length, *buckets)
                pending.popleft()
                parts += (piece_header(index, begin, length), data[begin : begin + length])
                queued += length
                if queued >= 4 * 1024 * 1024 and pending:
                    asyncio.get_running_loop().call_soon(self.serve, peer)  # after this batch is flushed
                    return
        finally:
            if parts:
                peer.bytes_up += queued
                self.uploaded += queued
                peer.send_parts(parts)  # joined into one write with whatever else is queued

    def _throttle(self, peer: PeerConnection) -> None:
        """The upload limit is reached: serve the peer again once the buckets have refilled a little."""
        self._throttled.add(peer)
        if self.throttled_until is None:
            self.throttled_until = time.monotonic() + THROTTLE_WAIT
            self.torrent.wake()

    def next_wakeup(self) -> float:
        """When `tick` has work next: serving the throttled peers."""
        return math.inf if self.throttled_until is None else self.throttled_until

    def tick(self, now: float) -> None:
        if self.throttled_until is not None and now >= self.throttled_until:
            self.throttled_until = None
            peers, self._throttled = self._throttled, set()
            for peer in peers:
                self.serve(peer)

    def _piece_loaded(self, peer: PeerConnection) -> None:
        peer.awaiting_piece = -1
        self.serve(peer)

    def _read_ahead(self, peer: PeerConnection) -> None:
        """Start loading the next pieces the peer has asked for, so they are cached by the time its queue
        reaches them instead of stalling it once per piece. Runs each time the queue moves on to another piece;
        a piece's requests are queued together, so a sample of the queue finds the next pieces cheaply."""
        assert self.torrent.meta is not None and self.torrent.pieces is not None
        budget = self.context.settings.read_cache_bytes // 2  # never so much that it evicts what it loaded
        pending = peer.pending
        step = max(1, self.torrent.meta.piece_length // wire.BLOCK_SIZE // 4)
        seen = 0
        last = -1
        for k in range(0, min(len(pending), READ_AHEAD_REQUESTS), step):
            index = pending[k][0]
            if index == last:
                continue
            last = index
            seen += 1
            if seen > READ_AHEAD_PIECES:
                break
            if index not in self.cache and index not in self.loading:
                budget -= self.torrent.pieces.piece_size(index)
                if budget < 0:
                    break
                self._load_piece(index)

    def _load_piece(self, index: int) -> asyncio.Future:
        fut = self.loading.get(index)
        if fut is not None:
            return fut
        assert self.torrent.storage is not None
        fut = self.context.run_blocking_future(self.torrent.storage.read, index)
        self.loading[index] = fut

        def loaded(f: asyncio.Future) -> None:
            self.loading.pop(index, None)
            if f.cancelled() or f.exception() is not None or f.result() is None:
                self.torrent.fail(f"cannot read piece {index} from disk: the files changed or vanished")
                return
            self._cache_piece(index, memoryview(f.result()))  # blocks are served as slices of it

        fut.add_done_callback(loaded)
        return fut

    def _cache_piece(self, index: int, data: memoryview) -> None:
        """Keep a verified piece for serving; the least recently added go when the cache is over its size."""
        self.cache[index] = data
        self.cache_bytes += len(data)
        while self.cache_bytes > self.context.settings.read_cache_bytes and len(self.cache) > 1:
            _, old = self.cache.popitem(last=False)
            self.cache_bytes -= len(old)
