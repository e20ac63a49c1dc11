"""The swarm engine: one torrent's state machine, its peers, and the flow of pieces.

A `Torrent` fetches its metadata (magnet links), checks what is already on disk, then downloads
(picker -> requests -> blocks -> piece buffer -> verify and write in a worker thread) and seeds
(requests -> piece cache read in a worker thread -> coalesced writes). Every piece is verified before
it is written, announced or served. Peers whose data fails verification are found out block by block
and banned; stalled peers are snubbed and their requests handed to others.

`Torrent` is the facade that builds its parts and wires them (each owns its state and is handed what it needs):
`swarm_peers.Peers` (the connected peers and one record per known address), `swarm_discovery.PeerSources` (DHT,
LSD), `swarm_exchange.Exchange` (metadata, piece layers, peer exchange), `swarm_pieces.PieceFlow` (the start-up
check, blocks into pieces, verify, serve) and `webseed_driver.WebSeeds` (BEP 19 web seeds: whole pieces). This
module keeps the lifecycle, the wire messages, requesting, the timers (`tick`/`next_wakeup`, driven by one task),
trackers and status. Parts read the torrent through a small host protocol each and never one another's private state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peerloom.codec.multiaddr import Multiaddr
from peerloom.errors import AccessRefused, PeerloomError, ProtocolError
from peerloom.state import StateError
from peerloom.torrent import extensions as ext
from peerloom.torrent import wire
from peerloom.torrent.choker import ROUND, Choker, PeerView
from peerloom.torrent.magnet import Magnet
from peerloom.torrent.metainfo import Metainfo
from peerloom.torrent.peer import MAX_PENDING_REQUESTS
from peerloom.torrent.picker import PiecePicker
from peerloom.torrent.ratelimit import TokenBucket, allowance, spend
from peerloom.torrent.resume import ResumeRecord, pack_bits
from peerloom.torrent.state import State, TorrentStatus
from peerloom.torrent.storage import PieceMap, PieceVerifier, Storage
from peerloom.torrent.swarm_discovery import PeerSources
from peerloom.torrent.swarm_exchange import Exchange
from peerloom.torrent.swarm_peers import BAN_AFTER, Peers
from peerloom.torrent.swarm_pieces import PieceFlow
from peerloom.torrent.webseed_driver import WebSeeds

if TYPE_CHECKING:
    from peerloom.torrent.context import SwarmContext
    from peerloom.torrent.peer import PeerConnection
    from peerloom.torrent.tracker import AnnounceRequest
    from peerloom.torrent.tracker_client import Announcer

log = logging.getLogger(__name__)



class Torrent:
    """One torrent in a node: metadata, files, peers, trackers."""

    def __init__(
        self,
        engine: SwarmContext,
        *,
        meta: Metainfo | None,
        magnet: Magnet | None,
        save_path: Path,
        selected: list[int] | None = None,
        sequential: bool = False,
        record: ResumeRecord | None = None,
        trusted_complete: bool = False,
        seed_only: bool = False,
        overwrite: bool = False,
        allowed_keys: set[Any] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.meta: Metainfo | None = None
        self.magnet = magnet
        self.save_path = Path(save_path)
        self.selected = selected
        self.sequential = sequential
        self.record = record
        self.trusted_complete = trusted_complete
        # the user's own files (a shared folder): checked and seeded, never created, cut or written
        self.seed_only = seed_only
        self.overwrite = overwrite  # write over existing files that are not this torrent's (see `existing`)
        source = meta or magnet
        assert source is not None
        self.info_hash_v1 = source.info_hash_v1
        self.info_hash_v2 = source.info_hash_v2
        self.wire_hash: bytes = self.info_hash_v1 or (self.info_hash_v2 or b"")[:20]
        self.id = self.wire_hash.hex()
        self.private = bool(meta and meta.private)
        # a private swarm of the secure layer: only these keys, only over encrypted streams (None: public)
        self.allowed_keys = allowed_keys
        self.secure = allowed_keys is not None
        self.name = (meta.name if meta else None) or (magnet.name if magnet else None) or self.id
        self.state = State.METADATA
        self.error: str | None = None

        self.peer_table = Peers(
            max_known=self.settings.max_candidates, max_connected=self.settings.max_peers, secure=self.secure,
            excluded=lambda addr: engine.is_banned(addr) or engine.is_self(addr),
        )
        # the connected peers: the peer table's list, read here (changed only through `peer_table`)
        self.peers: list[PeerConnection] = self.peer_table.connected
        self.choker = Choker(self.settings.upload_slots)
        self._next_housekeeping = -math.inf  # when `tick` next does its per-`settings.tick` work
        self._last_rechoke = -math.inf  # the last choke round

        self.pieces: PieceMap | None = None
        self.storage: Storage | None = None
        self.verifier: PieceVerifier | None = None
        self.picker: PiecePicker | None = None

        self.rate_down = 0.0
        self.rate_up = 0.0
        self._have_bits: bytearray | None = None  # the pieces as last written by save_progress (packed bitfield)
        self.download_bucket = TokenBucket(self.settings.download_rate_limit)  # this torrent's own limits
        self.upload_bucket = TokenBucket(0)
        self.flow = PieceFlow(engine, self, upload_bucket=self.upload_bucket,
                              downloaded=record.downloaded if record else 0, uploaded=record.uploaded if record else 0)
        # what a peer connection calls for each block it receives and to be served (bound once: the hot path)
        self.on_piece: Callable[[PeerConnection, wire.Piece], None] = self.flow.on_piece
        self.serve: Callable[[PeerConnection], None] = self.flow.serve
        self.paused = False
        self.snubs = 0
        self.started_at = time.monotonic()
        self.first_peer_after: float | None = None  # seconds from start to the first peer connected
        self._done = asyncio.Event()
        self._wakeup = asyncio.Event()  # set by `wake`
        self._metadata_ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._connect_tasks: set[asyncio.Task] = set()
        self.announcers: list[Announcer] = []
        self.sources = PeerSources(engine, self)
        self.exchange = Exchange(engine, self)
        self.web_seeds = WebSeeds(self.settings, self, self.flow, user_agent=engine.client_name)
        # the handler of each message but piece and request (the peer calls those directly, see `on_message`)
        self._handlers: dict[type, Callable[[PeerConnection, Any], None]] = {
            wire.Cancel: self._on_cancel,
            wire.RejectRequest: self._on_reject,
            wire.Choke: self._on_choke,
            wire.Unchoke: self._on_unchoke,
            wire.Interested: self._on_interested,
            wire.NotInterested: self._on_not_interested,
            wire.Have: self._on_have,
            wire.Bitfield: self._on_bitfield,
            wire.HaveAll: self._on_have_all,
            wire.HaveNone: self._on_have_none,
            wire.Extended: self.exchange.on_extended,
            wire.HashRequest: self.exchange.on_hash_request,
            wire.Hashes: self.exchange.on_hashes,
            wire.HashReject: self.exchange.on_hash_reject,
            wire.Port: self.sources.on_port,
        }
        if meta is not None:
            self._setup(meta)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def hashes(self) -> list[bytes]:
        """Info-hashes (20-byte wire form) under which peers may reach this torrent."""
        return [h for h in (self.info_hash_v1, self.info_hash_v2 and self.info_hash_v2[:20]) if h]

    def _setup(self, meta: Metainfo) -> None:
        self.meta = meta
        self.name = meta.name
        self.private = meta.private
        self.pieces = PieceMap(meta)
        self.storage = Storage(meta, self.save_path, self.pieces,
                               writable=not (self.seed_only or self.trusted_complete))
        self.verifier = PieceVerifier(meta, self.pieces)
        _check_file_numbers(meta, self.selected)
        wanted = self.pieces.wanted_pieces(self.selected)
        sizes = [self.pieces.piece_size(i) for i in range(self.pieces.num_pieces)]
        self.picker = PiecePicker(sizes, wanted=wanted, sequential=self.sequential)
        self.exchange.metadata_known(meta)
        self.web_seeds.metadata_known(meta, self.pieces, self.magnet.web_seeds if self.magnet else ())
        self._metadata_ready.set()

    async def start(self, *, paused: bool = False) -> None:
        """Start the torrent: check its data, then (unless `paused`) find peers and transfer."""
        self.started_at = time.monotonic()
        self.paused = paused
        self._task = asyncio.create_task(self._run(), name=f"torrent {self.name}")
        if not paused:
            self._make_announcers()

    def _make_announcers(self) -> None:
        trackers = self._tracker_tiers()
        if trackers and self.settings.trackers:
            from peerloom.torrent.tracker_client import Announcer

            # a hybrid is announced under both info-hashes, so v1-only and v2 peers find it (BEP 52)
            self.announcers = [
                Announcer(
                    self.engine.tracker_client, trackers, functools.partial(self._announce_request, info_hash=h),
                    self.add_peers, min_wait=self.settings.tracker_min_wait,
                )
                for h in self.hashes
            ]

    async def pause(self) -> None:
        """Stop transferring: close every peer, tell the trackers `stopped`, stop looking for peers, save
        resume data. Data checking (and a magnet's pending metadata) resume with `resume`."""
        if self.paused or self.state in (State.ERROR, State.STOPPED):
            return
        self.paused = True
        self.sources.stop()
        self.web_seeds.update()
        self._drop_peers("paused")
        announcers, self.announcers = self.announcers, []
        await asyncio.gather(*(a.stop() for a in announcers))
        if self.state in (State.DOWNLOADING, State.SEEDING):
            self.save_resume(clean=False)

    def _drop_peers(self, reason: str) -> None:
        """Stop dialling and close every peer."""
        for task in list(self._connect_tasks):
            task.cancel()
        for peer in list(self.peers):
            peer.close(reason)

    def resume(self) -> None:
        """Start transferring again after `pause`."""
        if not self.paused or self.state in (State.ERROR, State.STOPPED):
            return
        self.paused = False
        self.web_seeds.update()
        self._make_announcers()
        for announcer in self.announcers:
            announcer.start()
        self.sources.start()
        now = time.monotonic()
        self.peer_table.retry_all(now)
        self._connect_more(now)

    def _tracker_tiers(self) -> list[list[str]]:
        if self.meta is not None and self.meta.trackers:
            return [list(t) for t in self.meta.trackers]
        if self.magnet is not None and self.magnet.trackers:
            return [[t] for t in self.magnet.trackers]
        return []

    async def _run(self) -> None:
        ticker = asyncio.create_task(self._ticker())
        if not self.paused:
            self.sources.start()
        try:
            for announcer in self.announcers:
                announcer.start()
            if self.magnet is not None:
                self.add_peers(list(self.magnet.peers))
            await self._metadata_ready.wait()
            self.state = State.CHECKING
            await self.flow.check()
            self._checked()
            await ticker
        except asyncio.CancelledError:
            raise
        except PeerloomError as exc:
            self.fail(str(exc))
        except Exception as exc:  # a bug must not take the node down; it stops this torrent
            log.exception("torrent %s failed", self.name)
            self.fail(f"internal error: {exc!r}")
        finally:
            ticker.cancel()
            self.sources.stop()

    def _checked(self) -> None:
        """The start-up check is over: download or seed, and tell the peers what we have."""
        assert self.picker is not None
        self.state = State.SEEDING if self.picker.complete else State.DOWNLOADING
        self.save_resume(clean=False)
        if self.picker.complete:
            self._done.set()
        self.web_seeds.update()
        for peer in self.peers:
            self._send_have_pieces(peer)
            self._update_interest(peer)

    async def _ticker(self) -> None:
        """The one driver of the swarm's timers: `tick` at each `next_wakeup`, sooner when a part calls `wake`."""
        while True:
            self.tick(time.monotonic())
            self._wakeup.clear()
            delay = self.next_wakeup() - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), delay)

    def wake(self) -> None:
        """A part has work due sooner than `next_wakeup` said before: the driver looks again."""
        self._wakeup.set()

    def fail(self, message: str) -> None:
        self.state = State.ERROR
        self.error = message
        self.web_seeds.update()
        for peer in list(self.peers):
            peer.close("torrent stopped")
        self._done.set()

    async def stop(self) -> None:
        """Stop transfers, tell the trackers, write everything verified, save resume data."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._drop_peers("shutting down")
        await self.web_seeds.stop()
        await self.flow.drain()
        await asyncio.gather(*(a.stop() for a in self.announcers))
        if self.state not in (State.ERROR, State.METADATA, State.CHECKING):
            try:
                self.save_resume(clean=True)
            except StateError as exc:  # stopping goes on (files closed, waiters woken); the torrent says why
                self.fail(str(exc))
        if self.storage is not None:
            await self.engine.run_blocking(self.storage.close)
        if self.state is not State.ERROR:
            self.state = State.STOPPED
        self._done.set()

    def select_files(self, selected: list[int] | None) -> None:
        """Download only these files (indexes among the data files; None: all), changed while running. A torrent
        that had everything it wanted goes back to downloading when a file is added, and seeds when the last
        missing one is dropped."""
        if self.meta is None or self.picker is None or self.pieces is None:
            self.selected = selected  # applied when the metadata arrives
            return
        _check_file_numbers(self.meta, selected)
        self.selected = None if selected is None else sorted(set(selected))
        self.picker.set_wanted(self.pieces.wanted_pieces(self.selected))
        if self.state is State.SEEDING and not self.picker.complete:
            self.state = State.DOWNLOADING
            self._done.clear()
        elif self.state is State.DOWNLOADING and self.picker.complete:
            self.completed()
        for peer in self.peers:
            self._update_interest(peer)
        if self.state in (State.DOWNLOADING, State.SEEDING):
            self.save_resume(clean=False)

    @property
    def finished(self) -> asyncio.Event:
        """Set when every selected byte is verified, or when the torrent failed or was stopped (see `wait_done`)."""
        return self._done

    async def wait_done(self) -> None:
        """Until every selected byte is verified; raises when the torrent failed or was stopped first."""
        await self._done.wait()
        if self.state is State.ERROR:
            raise PeerloomError(self.error or "torrent failed")
        if not (self.picker and self.picker.complete):
            raise PeerloomError("torrent stopped before it was complete")

    def metadata_received(self, meta: Metainfo) -> None:
        """A magnet's metadata arrived from the peers, and matches its info-hash."""
        if self.selected is None and self.magnet is not None and self.magnet.select_only is not None:
            self.selected = [i for i in range(len(meta.data_files)) if self.magnet.selects(i)]
        self._setup(meta)
        # a magnet may carry one hash of a hybrid: the other now routes peers too (BEP 52), and answers upgrades
        self.info_hash_v1 = self.info_hash_v1 or meta.info_hash_v1
        self.info_hash_v2 = self.info_hash_v2 or meta.info_hash_v2
        assert self.picker is not None
        for peer in list(self.peers):
            try:
                peer.holdings.metadata_known(self.picker)  # what it announced before we knew the piece count
            except ProtocolError as exc:
                peer.close(f"protocol error: {exc}")
        self.engine.metadata_received(self)

    def piece_layers_received(self, layers: dict[bytes, bytes]) -> None:
        """Every v2 piece layer the torrent file lacked has been fetched and checked (BEP 52): downloading starts."""
        assert self.meta is not None
        self.meta = replace(self.meta, piece_layers=layers)
        self.save_resume(clean=False)
        for peer in self.peers:
            self.after_messages(peer)

    async def wait_metadata(self) -> Metainfo:
        await self._metadata_ready.wait()
        assert self.meta is not None
        return self.meta

    # -- peers ---------------------------------------------------------------------------------
    def add_peers(self, addresses: list[tuple[str, int] | Multiaddr]) -> None:
        """Peers to try: (host, port) for plain BitTorrent, multiaddrs for the secure layer."""
        self.peer_table.add(addresses, time.monotonic())

    @property
    def discoverable(self) -> bool:
        """Whether the torrent may be found through the DHT, LSD and peer exchange: not private (BEP 27)."""
        return not self.private and not self.secure

    @property
    def dht_enabled(self) -> bool:
        return self.sources.dht_enabled

    @property
    def dht_found(self) -> int:
        """Peers the DHT handed us, over every lookup."""
        return self.sources.dht_found

    def peers_discovered(self, addresses: list[tuple[str, int]]) -> None:
        """Peers from the DHT or the LAN: dial them now rather than at the next tick."""
        self.add_peers(addresses)
        self._connect_more(time.monotonic())

    @property
    def downloaded(self) -> int:
        """Bytes of pieces received over the torrent's life (kept in the resume data)."""
        return self.flow.downloaded

    @property
    def uploaded(self) -> int:
        return self.flow.uploaded

    @property
    def session_downloaded(self) -> int:
        return self.flow.session_downloaded

    @property
    def wasted(self) -> int:
        return self.flow.wasted

    @property
    def hash_failures(self) -> int:
        return self.flow.hash_failures

    @property
    def banned_count(self) -> int:
        return self.peer_table.banned_count

    @property
    def refusals(self) -> dict[Any, AccessRefused]:
        """The peers that refused our key when we last dialled them, by address."""
        return self.peer_table.refusals

    def _connect_more(self, now: float) -> None:
        if self.paused or self.state in (State.ERROR, State.STOPPED):
            return
        for addr in self.peer_table.to_dial(now):
            task = asyncio.create_task(self._connect(addr))
            self._connect_tasks.add(task)
            task.add_done_callback(self._connect_tasks.discard)

    async def _connect(self, addr: tuple[str, int] | Multiaddr, punch: bool = False) -> None:
        try:
            if isinstance(addr, Multiaddr):
                peer = await self.engine.connect_secure(self, addr)
            elif punch:
                peer = await self.engine.connect_utp(self, addr)
            else:
                peer = await self.engine.connect(self, addr)
            await asyncio.wait_for(asyncio.shield(peer.connected), self.settings.connect_timeout)
            self.peer_table.dial_succeeded(addr, time.monotonic())
        except (OSError, TimeoutError, ConnectionError, PeerloomError) as exc:
            log.debug("connecting to %s failed: %r", addr, exc)
            now = time.monotonic()
            self.peer_table.dial_failed(addr, now, exc if isinstance(exc, AccessRefused) else None)
            if not punch and not isinstance(addr, Multiaddr):
                self.exchange.dial_failed(addr, now)  # BEP 55: a peer connected to both may introduce us
        finally:
            self.peer_table.dial_abandoned(addr)  # cancelled (paused, stopped): no longer being dialled
            if punch:
                self.exchange.holepunch.done(addr)

    def punch(self, address: tuple[str, int]) -> None:
        """A relay introduced us to `address` (BEP 55): dial it over uTP now, as it dials us, so that both NATs let
        the other's packets in."""
        if self.paused or self.state in (State.ERROR, State.STOPPED):
            self.exchange.holepunch.done(address)
            return
        task = asyncio.create_task(self._connect(address, punch=True))
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    @property
    def refused_everywhere(self) -> bool:
        """A private swarm of the secure layer whose every known peer refused our key, with no peer connected: it
        has no other way to find peers (no DHT, PEX or trackers), so waiting is pointless until an owner allows us."""
        return self.secure and self.peer_table.refused_everywhere

    def admits(self, peer: PeerConnection) -> str | None:
        """Why the peer may not join this swarm (None: it may). A private swarm takes only its allowed
        keys, over the secure layer; checked before we answer a handshake."""
        if self.paused:
            return "the torrent is paused"
        if self.secure:
            if peer.secure_key is None:
                return "this torrent is private to the secure peer layer"
            if self.allowed_keys is not None and peer.secure_key not in self.allowed_keys:
                return f"{peer.secure_key} is not allowed in this private swarm"
        return None

    def peer_ready(self, peer: PeerConnection) -> bool:
        """Handshake done: admit the peer (or refuse it) and greet it."""
        if self.state in (State.STOPPED, State.ERROR):
            peer.close("torrent stopped")
            return False
        refusal = self.admits(peer)
        if refusal is not None:
            peer.close(refusal)
            return False
        if self.engine.is_banned(peer.key, peer.peer_id):
            peer.close("banned")
            return False
        for other in self.peers:
            if other.peer_id == peer.peer_id:
                # both sides dialled: keep the connection opened by the lower peer id, on both ends
                mine = self.engine.peer_id < (peer.peer_id or b"")
                keep_new = peer.outgoing == mine
                loser = other if keep_new else peer
                loser.close("duplicate connection")
                if loser is peer:
                    return False
        if len(self.peers) >= self.settings.max_peers:
            peer.close("too many peers")
            return False
        self.peer_table.joined(peer)
        if self.first_peer_after is None:
            self.first_peer_after = time.monotonic() - self.started_at
        hs = peer.handshake
        assert hs is not None
        self._send_have_pieces(peer, first=True)  # BEP 3: the bitfield comes first, before any other message
        if hs.supports_extensions:
            peer.send_message(wire.Extended(0, ext.encode_ext_handshake(self.exchange.ext_handshake(peer))))
        self.sources.send_dht_port(peer)
        return True

    def _send_have_pieces(self, peer: PeerConnection, first: bool = False) -> None:
        """The first message after the handshake says what we have (BEP 3 bitfield / BEP 6 have_all/none)."""
        hs = peer.handshake
        if hs is None:
            return
        picker = self.picker
        fast = hs.supports_fast
        if first:
            if picker is None or self.state is State.CHECKING or not any(picker.have):
                if fast:
                    peer.send_message(wire.HaveNone())
            elif fast and all(picker.have):
                peer.send_message(wire.HaveAll())
            else:
                peer.send_message(wire.Bitfield(pack_bits(picker.have)))
        elif picker is not None:
            for i, h in enumerate(picker.have):
                if h:
                    peer.send(wire.encode_have(i))

    def peer_lost(self, peer: PeerConnection) -> None:
        self.peer_table.left(peer)
        self.flow.peer_lost(peer)
        picker = self.picker
        peer.holdings.forget(picker)
        if picker is not None:
            for index, begin in peer.outstanding:
                picker.abort(peer, index, begin)
        peer.outstanding.clear()
        self.exchange.peer_lost(peer)

    def strike(self, peer: PeerConnection, reason: str) -> None:
        """The peer is proven to have sent bad data: banned the second time."""
        if self.engine.is_banned(peer.key, peer.peer_id):
            return
        key = peer.peer_id or peer.key
        strikes = self.peer_table.strike(key)
        log.info("%r: %s (strike %d)", peer, reason, strikes)
        if strikes >= BAN_AFTER:
            self.ban(peer, reason)

    def ban(self, peer: PeerConnection, reason: str) -> None:
        log.info("banning %r: %s", peer, reason)
        self.peer_table.banned(peer.key)
        self.engine.ban(peer.key, peer.peer_id)
        peer.close(f"banned: {reason}")

    # -- messages ------------------------------------------------------------------------------
    def on_message(self, peer: PeerConnection, m: wire.Message) -> None:
        """Any message but a piece or a request. BEP 3 says the bitfield comes first, but that binds senders
        (`_send_have_pieces` keeps it): as libtorrent does, we take every message at any point after the handshake."""
        handler = self._handlers.get(type(m))
        if handler is not None:
            handler(peer, m)

    def on_request(self, peer: PeerConnection, m: wire.Request) -> None:
        index, begin, length = m
        picker = self.picker
        if picker is not None and (index >= picker.num_pieces or begin + length > picker.sizes[index]):
            raise ProtocolError("request outside the torrent")
        if picker is None or peer.am_choking or not picker.have[index]:  # before the metadata too, as libtorrent
            if peer.handshake and peer.handshake.supports_fast:
                peer.send_message(wire.RejectRequest(index, begin, length))
            return
        if len(peer.pending) >= MAX_PENDING_REQUESTS:
            raise ProtocolError("too many outstanding requests")
        peer.pending.append(m)  # the request is the (index, begin, length) tuple the queue keeps

    def _on_cancel(self, peer: PeerConnection, m: wire.Cancel) -> None:
        with contextlib.suppress(ValueError):
            peer.pending.remove((m.index, m.begin, m.length))

    def _on_reject(self, peer: PeerConnection, m: wire.RejectRequest) -> None:
        if peer.outstanding.pop((m.index, m.begin), None) is not None and self.picker is not None:
            self.picker.abort(peer, m.index, m.begin)

    def _on_choke(self, peer: PeerConnection, m: wire.Choke) -> None:
        peer.peer_choking = True
        if self.picker is not None:
            for index, begin in peer.outstanding:
                self.picker.abort(peer, index, begin)
        peer.outstanding.clear()

    def _on_unchoke(self, peer: PeerConnection, m: wire.Unchoke) -> None:
        peer.peer_choking = False

    def _on_interested(self, peer: PeerConnection, m: wire.Interested) -> None:
        peer.peer_interested = True
        unchoked = sum(1 for p in self.peers if not p.am_choking)
        if unchoked < self.settings.upload_slots and self.picker is not None:
            peer.unchoke()

    def _on_not_interested(self, peer: PeerConnection, m: wire.NotInterested) -> None:
        peer.peer_interested = False

    # A peer's pieces: bitfield, have, have_all and have_none are taken in any order, any number of times, before
    # or after the metadata (see `peer_pieces`); each bitfield, have_all or have_none replaces the peer's whole set.
    def _on_have(self, peer: PeerConnection, m: wire.Have) -> None:
        picker = self.picker
        if peer.holdings.have(m.index, picker) and not peer.am_interested:
            assert picker is not None
            if picker.wanted[m.index] and not picker.have[m.index]:
                peer.set_interested(True)

    def _on_bitfield(self, peer: PeerConnection, m: wire.Bitfield) -> None:
        peer.holdings.bitfield(m.bits, self.picker)
        self._update_interest(peer)

    def _on_have_all(self, peer: PeerConnection, m: wire.HaveAll) -> None:
        peer.holdings.have_all(self.picker)
        self._update_interest(peer)

    def _on_have_none(self, peer: PeerConnection, m: wire.HaveNone) -> None:
        peer.holdings.have_none(self.picker)
        self._update_interest(peer)

    # -- downloading ---------------------------------------------------------------------------
    def after_messages(self, peer: PeerConnection) -> None:
        """After a batch of messages from `peer`: keep its request pipeline full, serve its requests."""
        if self.picker is None or self.state is not State.DOWNLOADING:
            if peer.pending and self.state is State.SEEDING:
                self.serve(peer)
            return
        if self.exchange.missing_layers:
            self.exchange.request_layers(peer)
        elif not peer.peer_choking and peer.am_interested and not peer.snubbed:
            self.request_more(peer)
        if peer.pending:
            self.serve(peer)

    def request_more(self, peer: PeerConnection, now: float | None = None) -> None:
        """Fill `peer`'s request pipeline. `now` is the clock of a `tick(now)` that asks (its stall clock must be the
        same clock that later judges it); message handling leaves it out and the real clock stamps the requests."""
        picker = self.picker
        assert picker is not None
        if not peer.is_seed and len(peer.bits) != picker.num_pieces:
            return  # it has told us of no piece yet (have_none, or no bitfield)
        want = peer.pipeline - len(peer.outstanding)
        if want < max(1, peer.pipeline // 8) or self.flow.verifying_bytes > self.settings.max_verify_bytes:
            return
        buckets = (self.download_bucket, self.engine.download_bucket)
        limited = self.download_bucket.limited or self.engine.download_bucket.limited
        if limited:
            want = min(want, int(allowance(time.monotonic(), *buckets) // wire.BLOCK_SIZE))
            if want <= 0:
                return
        requests = picker.pick(peer, peer.bits, want, peer.is_seed)
        if limited:
            spend(sum(r[2] for r in requests), *buckets)
        if not requests:
            if not peer.outstanding and not picker.interesting(peer.bits, peer.is_seed):
                peer.set_interested(False)
            return
        if now is None:
            now = time.monotonic()
        out = []
        for index, begin, length in requests:
            peer.outstanding[(index, begin)] = now
            out.append(wire.encode_request(index, begin, length))
        if len(peer.outstanding) == len(requests):
            peer.last_block_at = now  # the stall clock starts when we start waiting
        peer.send(b"".join(out))

    # -- BEP 52 piece layers ---------------------------------------------------------------------

    def _update_interest(self, peer: PeerConnection) -> None:
        if self.picker is None or peer.closed:
            return
        if not peer.is_seed and len(peer.bits) != self.picker.num_pieces:
            peer.set_interested(False)
        elif self.state in (State.DOWNLOADING, State.CHECKING):
            peer.set_interested(self.picker.interesting(peer.bits, peer.is_seed))
        else:
            peer.set_interested(False)

    def completed(self) -> None:
        """Every wanted piece is verified: seed."""
        self.state = State.SEEDING
        log.info("%s: download complete", self.name)
        for announcer in self.announcers:
            announcer.completed()
        self.save_resume(clean=False)
        for peer in list(self.peers):
            if peer.is_seed:
                peer.close("both complete")  # two seeds have nothing to trade
            else:
                peer.set_interested(False)
        if self.storage is None:
            self._done.set()
            return
        # done once the files are exactly the torrent's (a file selected while running may have been longer) and
        # on disk; `stop` waits for this too
        storage, pieces = self.storage, self.pieces
        assert pieces is not None
        mask = pieces.file_mask(self.selected)

        def finish() -> None:
            storage.fit_files((i for i, chosen in enumerate(mask) if chosen), grow=False)
            storage.sync()

        fut = self.engine.run_blocking_future(finish)
        self.flow.track(fut)
        fut.add_done_callback(self._finished_writing)

    def _finished_writing(self, fut: asyncio.Future) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None:
            self.fail(str(exc) if isinstance(exc, PeerloomError) else f"internal error while finishing: {exc!r}")
        elif self.state is State.SEEDING and self.picker is not None and self.picker.complete:
            self._done.set()

    # -- periodic work -------------------------------------------------------------------------
    # Sans-I/O timers: the driver (`_ticker`) calls `tick(now)` at `next_wakeup()`; tests call them with a clock of
    # their own. Every `settings.tick`: rates, snubbing, idle peers, re-requests, peer exchange,
    # dialling; every choke round (`choker.ROUND`): choking; and the parts' own deadlines (upload throttling).
    def next_wakeup(self) -> float:
        """The monotonic time at which `tick` has work next."""
        return min(self._next_housekeeping, self._last_rechoke + ROUND, self.flow.next_wakeup())

    def tick(self, now: float) -> None:
        """Do the periodic work that is due at `now` (monotonic seconds)."""
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + self.settings.tick
            self._housekeeping(now)
        if now - self._last_rechoke >= ROUND:
            self._last_rechoke = now
            self._rechoke()
        self.flow.tick(now)
        self.web_seeds.update()

    def _housekeeping(self, now: float) -> None:
        total_down = total_up = 0.0
        for peer in list(self.peers):
            peer.update_rates(now)
            total_down += peer.rate_down
            total_up += peer.rate_up
            if peer.outstanding and now - peer.last_block_at > self.settings.snub_timeout:
                self._snub(peer, now)
            elif peer.snubbed and not peer.outstanding and now - peer.last_block_at > 2 * self.settings.snub_timeout:
                peer.snubbed = False  # give it another chance
                peer.last_block_at = now
            if now - peer.last_received > self.settings.idle_timeout:
                peer.close("idle")  # (keep-alives are the peer wire's own timer)
            if self.state is State.DOWNLOADING and self.exchange.missing_layers:
                self.exchange.request_layers(peer)
            elif self.state is State.DOWNLOADING and not peer.peer_choking and peer.am_interested and not peer.snubbed:
                self.request_more(peer, now)
            if self.exchange.assembler is not None and self.meta is None:
                self.exchange.request_metadata(peer)
        self.rate_down, self.rate_up = total_down + self.web_seeds.rate(now), total_up
        if not self.private:
            self.exchange.send_pex(now)
        self._connect_more(now)

    def _snub(self, peer: PeerConnection, now: float) -> None:
        log.info("%r snubbed: no data for %.0f s", peer, self.settings.snub_timeout)
        peer.snubbed = True
        self.snubs += 1
        assert self.picker is not None
        for index, begin in peer.outstanding:
            self.picker.abort(peer, index, begin)
            length = min(wire.BLOCK_SIZE, self.picker.sizes[index] - begin)
            peer.send(wire.encode(wire.Cancel(index, begin, length)))
        peer.outstanding.clear()
        for other in self.peers:
            if other is not peer and not other.peer_choking and other.am_interested and not other.snubbed:
                self.request_more(other, now)

    def _rechoke(self) -> None:
        seeding = self.state is State.SEEDING
        views = [PeerView(p, p.peer_interested, p.rate_down, p.rate_up, p.snubbed) for p in self.peers]
        unchoke = self.choker.rechoke(views, seeding)
        for peer in self.peers:
            if peer in unchoke:
                peer.unchoke()
            else:
                peer.choke()

    # -- trackers and resume data ------------------------------------------------------------
    def _announce_request(self, event: str, info_hash: bytes) -> AnnounceRequest:
        from peerloom.torrent.tracker import AnnounceRequest

        return AnnounceRequest(
            info_hash=info_hash,
            peer_id=self.engine.peer_id,
            port=self.engine.port,
            uploaded=self.uploaded,
            downloaded=self.downloaded,
            left=self.left(),
            event=event,
            key=self.engine.tracker_key,
            ipv6=self.engine.ipv6_address,
        )

    def left(self) -> int:
        if self.picker is None:
            return 1
        return sum(s for i, s in enumerate(self.picker.sizes) if self.picker.wanted[i] and not self.picker.have[i])

    def save_progress(self, passed: int | None = None) -> None:
        """Write the pieces and the upload/download totals to the resume data now (~20 us: WAL, no fsync); raises
        `StateError` when the state file cannot be written (as `save_resume` does).
        `passed`: the one piece verified since the last call, set in the kept bitfield instead of packing all
        pieces again (that costs O(pieces), too much per piece for torrents of tens of thousands of pieces)."""
        if self.picker is None:
            return
        bits = self._have_bits
        if bits is None or passed is None:
            bits = self._have_bits = bytearray(pack_bits(self.picker.have))
        else:
            bits[passed >> 3] |= 0x80 >> (passed & 7)
        self.engine.resume.update_have(self.id, bytes(bits), self.downloaded, self.uploaded)

    def save_resume(self, clean: bool) -> None:
        if self.meta is None or self.picker is None or self.storage is None:
            return
        self._have_bits = None  # packed afresh at the next save_progress
        rec = ResumeRecord(
            id=self.id,
            name=self.name,
            save_path=str(self.save_path),
            torrent=self.meta.to_bytes(),
            magnet=str(self.magnet) if self.magnet else None,
            have=pack_bits(self.picker.have),
            clean=clean,
            file_state=[list(s) for s in self.storage.file_state()] if clean else [],
            selected=self.selected,
            uploaded=self.uploaded,
            downloaded=self.downloaded,
            added_at=self.record.added_at if self.record else time.time(),
        )
        self.engine.resume.save(rec)

    # -- status --------------------------------------------------------------------------------
    def status(self) -> TorrentStatus:
        picker = self.picker
        wanted = have = 0
        if picker is not None:
            for i, size in enumerate(picker.sizes):
                if picker.wanted[i]:
                    wanted += size
                    if picker.have[i]:
                        have += size
        return TorrentStatus(
            name=self.name,
            info_hash=self.id,
            state="paused" if self.paused and self.state in (State.DOWNLOADING, State.SEEDING, State.METADATA)
            else self.state.value,
            paused=self.paused,
            progress=(have / wanted) if wanted else (1.0 if picker is not None else 0.0),
            wanted_bytes=wanted,
            have_bytes=have,
            download_rate=self.rate_down,
            upload_rate=self.rate_up,
            downloaded=self.session_downloaded,
            uploaded=self.uploaded,
            wasted=self.wasted,
            hash_failures=self.hash_failures,
            peers=len(self.peers),
            seeds=sum(1 for p in self.peers if p.is_seed),
            banned=self.peer_table.banned_count,
            snubs=self.snubs,
            checked_pieces=self.flow.checked,
            error=self.error,
            first_peer_after=self.first_peer_after,
            web_seeds=self.web_seeds.status(time.monotonic()),
        )


def _check_file_numbers(meta: Metainfo, selected: list[int] | None) -> None:
    count = len(meta.data_files)
    bad = [i for i in selected or [] if not 0 <= i < count]
    if bad:
        raise PeerloomError(f"no file number {bad[0]} in the torrent (it has {count} files)")
