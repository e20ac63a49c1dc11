"""The daemon's service layer: one Node and the torrents it manages for its users, kept across restarts.

Everything the HTTP API (and so the web UI and the CLI) can do goes through `Daemon`: add by magnet,
.torrent or local path, pause/resume/remove, file selection, rate limits, status snapshots, events for
subscribers and the Prometheus metrics. What the user asked for is written to `DaemonStore` at once, so
a SIGKILL loses no decision; what the torrents have is in the engine's resume data.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from peerloom.api.roots import BadPath, OutsideRoots, Roots, check_files, inside, resolve
from peerloom.api.store import DaemonStore, Entry
from peerloom.codec.compact import format_address
from peerloom.errors import PeerloomError
from peerloom.node import DuplicateTorrent, Node
from peerloom.state import StateError
from peerloom.torrent.magnet import Magnet
from peerloom.torrent.metainfo import Metainfo
from peerloom.torrent.resume import pack_bits
from peerloom.torrent.state import State
from peerloom.torrent.swarm import Torrent
from peerloom.version import __version__

log = logging.getLogger(__name__)

EVENT_EVERY = 1.0  # seconds between snapshots pushed to subscribers
SAVE_PROGRESS_EVERY = 30.0  # seconds between saves of upload/download totals (pieces are saved as they verify)
SUBSCRIBER_QUEUE = 64  # events buffered for a slow subscriber before it is dropped
MAX_LIMIT = 1 << 40  # bytes/s; anything above is a typo


class ApiError(Exception):
    """A request the daemon refuses: `status` is the HTTP status it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Daemon:
    """The torrents of a long-running node, as its users manage them. Downloads go only under `save_dir`, and
    only paths under it or under `share_roots` are shared (see `roots`)."""

    def __init__(self, node: Node, save_dir: Path, share_roots: Iterable[Path] = ()) -> None:
        self.node = node
        self.roots = Roots.of(Path(save_dir), share_roots)
        self.store = DaemonStore(node.state)
        self.entries: dict[str, Entry] = {}
        self.started_at = time.time()
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._states: dict[str, str] = {}
        self._tasks: list[asyncio.Task] = []
        # counters for /metrics that only grow while the process lives (removed torrents keep their share)
        self._gone = {"downloaded": 0, "uploaded": 0, "hash_failures": 0, "wasted": 0, "banned": 0}
        self._upload_base: dict[str, int] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self.node.download_bucket.rate = self.store.setting("download_limit", 0)
        self.node.upload_bucket.rate = self.store.setting("upload_limit", 0)
        for entry in self.store.entries():
            try:
                self._confine_kept(entry)
                await self._start(entry, trusted=False)
            except PeerloomError as exc:  # e.g. a save path on a disk that is gone: the others still run
                log.warning("cannot restore torrent %s: %s", entry.id, exc)
                continue
            self.entries[entry.id] = entry
        self._tasks = [asyncio.create_task(self._event_loop()), asyncio.create_task(self._save_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.end_streams()

    def end_streams(self) -> None:
        """Tell every subscriber that the stream ends (so open WebSockets close and do not hold up a shutdown)."""
        for queue in list(self._subscribers):
            _offer(queue, None, force=True)  # even a full queue learns that the stream ends
        self._subscribers.clear()

    def _confine_kept(self, entry: Entry) -> None:
        """A torrent kept from an earlier run comes back only if its data still lies inside the daemon's folders:
        they may have changed since, and earlier versions did not confine paths. It stays in the store, so a
        start with folders that hold it brings it back."""
        data, roots = Path(entry.save_path), (self.roots.download,)
        if entry.shared and entry.torrent is not None:  # the user's own file or folder, seeded where it is
            data, roots = data / Metainfo.parse(entry.torrent).name, self.roots.share
        if not inside(resolve(data), roots):
            raise OutsideRoots(f"{data} is outside the daemon's folders ({', '.join(map(str, roots))}): start it "
                               "with a --save-dir or --share-root that holds it")

    async def _start(self, entry: Entry, *, trusted: bool, overwrite: bool = False) -> Torrent:
        source: Metainfo | str = Metainfo.parse(entry.torrent) if entry.torrent else entry.magnet or ""
        # a shared folder is the user's: checked when it comes back after a restart, never written
        torrent = await self.node.add(source, entry.save_path, files=entry.files, paused=entry.paused,
                                      trusted_complete=trusted, seed_only=entry.shared, overwrite=overwrite)
        torrent.download_bucket.rate = entry.download_limit
        torrent.upload_bucket.rate = entry.upload_limit
        self._upload_base[torrent.id] = torrent.uploaded
        self._states[torrent.id] = torrent.status().state
        return torrent

    # -- adding ----------------------------------------------------------------------------------
    async def add_magnet(self, link: str, save_path: str | None = None, *, paused: bool = False,
                         overwrite: bool = False) -> Torrent:
        try:
            magnet = Magnet.parse(link)
        except PeerloomError as exc:
            raise ApiError(400, f"not a magnet link: {exc}") from exc
        self._refuse_duplicate([magnet.info_hash_v1, magnet.info_hash_v2])
        with _path_errors():
            save = self.roots.save_path(save_path)
        return await self._add(Entry(id="", save_path=str(save), magnet=str(magnet), paused=paused),
                               overwrite=overwrite)

    async def add_torrent(self, data: bytes, save_path: str | None = None, *, paused: bool = False,
                          overwrite: bool = False) -> Torrent:
        try:
            meta = Metainfo.parse(data)
        except PeerloomError as exc:
            raise ApiError(400, f"not a torrent file: {exc}") from exc
        self._refuse_duplicate([meta.info_hash_v1, meta.info_hash_v2])
        with _path_errors():
            save = self.roots.save_path(save_path)
            await asyncio.to_thread(check_files, meta, save, [self.roots.download])
        return await self._add(Entry(id="", save_path=str(save), torrent=meta.to_bytes(), paused=paused),
                               overwrite=overwrite)

    async def share(self, path: str, version: str = "hybrid") -> Torrent:
        """Make a torrent of a local file or folder (inside a share root) and seed it from where it is."""
        if version not in ("v1", "v2", "hybrid"):
            raise ApiError(400, "version must be v1, v2 or hybrid")
        with _path_errors():
            target = self.roots.share_path(path)
        if not target.exists():
            raise ApiError(400, f"no such file or folder: {target}")
        from peerloom.torrent.create import create, seed_directory

        try:
            meta = await asyncio.to_thread(create, target, version=version)
        except PeerloomError as exc:
            raise ApiError(400, str(exc)) from exc
        folder = seed_directory(target, meta)  # a v2-only torrent of a one-file folder is seeded from inside it
        with _path_errors():
            await asyncio.to_thread(check_files, meta, folder, self.roots.share)
        self._refuse_duplicate([meta.info_hash_v1, meta.info_hash_v2])
        entry = Entry(id="", save_path=str(folder), torrent=meta.to_bytes(), shared=True)
        return await self._add(entry)

    async def _add(self, entry: Entry, *, overwrite: bool = False) -> Torrent:
        """`overwrite` holds for this first start only: once checked, the resume record vouches for the files."""
        try:
            torrent = await self._start(entry, trusted=entry.shared, overwrite=overwrite)
        except DuplicateTorrent as exc:  # added by a concurrent request since our check
            raise ApiError(409, str(exc)) from exc
        except PeerloomError as exc:
            raise ApiError(400, str(exc)) from exc
        entry.id = torrent.id
        self.entries[torrent.id] = entry
        self.store.save(entry)
        self._publish({"type": "added", "torrent": self.summary(torrent)})
        return torrent

    def _refuse_duplicate(self, hashes: list[bytes | None]) -> None:
        for h in hashes:
            if h and self.node.torrent_for_hash(h[:20]) is not None:
                raise ApiError(409, f"torrent {h[:20].hex()} is already added")

    # -- managing -------------------------------------------------------------------------------
    def torrent(self, torrent_id: str) -> Torrent:
        """The torrent with this id (its 40-hex wire info-hash) or a unique prefix of it."""
        key = torrent_id.lower()
        torrent = self.node.torrents.get(key)
        if torrent is not None:
            return torrent
        matches = [t for tid, t in self.node.torrents.items() if len(key) >= 4 and tid.startswith(key)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ApiError(400, f"{torrent_id!r} matches {len(matches)} torrents: give more of the id")
        raise ApiError(404, f"no torrent {torrent_id!r}")

    async def pause(self, torrent: Torrent) -> None:
        await torrent.pause()
        self._update(torrent.id, paused=True)

    def resume(self, torrent: Torrent) -> None:
        if torrent.state is State.ERROR:
            raise ApiError(409, f"the torrent failed ({torrent.error}); remove it and add it again")
        torrent.resume()
        self._update(torrent.id, paused=False)

    async def remove(self, torrent: Torrent, *, delete_data: bool = False, delete_source: bool = False) -> None:
        """Forget a torrent; with `delete_data`, delete its files too, but the files of a shared path are the
        user's own, not a download: those go only with `delete_source` as well."""
        if delete_source and not delete_data:
            raise ApiError(400, "delete_source goes with delete_data")
        entry = self.entries.get(torrent.id)
        if delete_data and entry is not None and entry.shared and not delete_source:
            raise ApiError(409, f"{torrent.name} was shared from your own files in {entry.save_path}, not "
                                "downloaded: add delete_source=true (`peerloom rm --delete-source`) to delete them "
                                "too, or remove it without delete_data")
        for key in ("hash_failures", "wasted"):
            self._gone[key] += getattr(torrent, key)
        self._gone["downloaded"] += torrent.session_downloaded
        self._gone["uploaded"] += torrent.uploaded - self._upload_base.pop(torrent.id, 0)
        self._gone["banned"] += torrent.banned_count
        await self.node.remove(torrent, delete_data=delete_data)
        self.entries.pop(torrent.id, None)
        self._states.pop(torrent.id, None)
        self.store.delete(torrent.id)
        self._publish({"type": "removed", "id": torrent.id})

    def set_priorities(self, torrent: Torrent, priorities: list[int]) -> None:
        """One priority per data file: 0 = do not download, 1 = download."""
        if torrent.meta is None:
            raise ApiError(409, "the torrent's metadata has not arrived yet: its files are not known")
        count = len(torrent.meta.data_files)
        if len(priorities) != count or any(p not in (0, 1) for p in priorities):
            raise ApiError(400, f"give one priority (0 or 1) for each of the {count} files")
        selected = None if all(priorities) else [i for i, p in enumerate(priorities) if p]
        torrent.select_files(selected)
        self._update(torrent.id, files=selected)

    def set_limits(self, torrent: Torrent | None, download: Any = None, upload: Any = None) -> None:
        """Rate limits in bytes/s (0: none) for a torrent, or for the whole node when `torrent` is None."""
        down, up = _limit(download, "download"), _limit(upload, "upload")
        if torrent is None:
            for value, bucket, key in ((down, self.node.download_bucket, "download_limit"),
                                       (up, self.node.upload_bucket, "upload_limit")):
                if value is not None:
                    bucket.rate = value
                    self.store.set_setting(key, value)
            return
        if down is not None:
            torrent.download_bucket.rate = down
            self._update(torrent.id, download_limit=down)
        if up is not None:
            torrent.upload_bucket.rate = up
            self._update(torrent.id, upload_limit=up)

    def _update(self, torrent_id: str, **changes: Any) -> None:
        entry = self.entries.get(torrent_id)
        if entry is None:
            return
        for key, value in changes.items():
            setattr(entry, key, value)
        self.store.save(entry)

    # -- views ----------------------------------------------------------------------------------
    def summary(self, torrent: Torrent) -> dict[str, Any]:
        st = torrent.status()
        left = st.wanted_bytes - st.have_bytes
        entry = self.entries.get(torrent.id)
        eta = left / st.download_rate if left > 0 and st.download_rate > 0 else None
        return {
            "id": torrent.id,
            "name": st.name,
            "state": st.state,
            "paused": st.paused,
            "progress": round(st.progress, 6),
            "size": st.wanted_bytes,
            "have_bytes": st.have_bytes,
            "download_rate": round(st.download_rate, 1),
            "upload_rate": round(st.upload_rate, 1),
            "downloaded": torrent.downloaded,
            "uploaded": torrent.uploaded,
            "peers": st.peers,
            "seeds": st.seeds,
            "eta": None if eta is None else round(eta, 1),
            "save_path": str(torrent.save_path),
            "shared": bool(entry and entry.shared),
            "error": st.error,
            "added_at": entry.added_at if entry else None,
            "limits": {"download": torrent.download_bucket.rate, "upload": torrent.upload_bucket.rate},
            "magnet": _magnet_of(torrent),
        }

    def detail(self, torrent: Torrent) -> dict[str, Any]:
        meta = torrent.meta
        files: list[dict[str, Any]] = []
        pieces: dict[str, Any] = {"count": 0, "have": ""}
        if meta is not None and torrent.picker is not None and torrent.pieces is not None:
            have = torrent.picker.have
            selected = None if torrent.selected is None else set(torrent.selected)
            data_index = 0
            for index, f in enumerate(meta.files):
                if f.is_pad:
                    continue
                span = list(torrent.pieces.pieces_of_file(index))
                done = sum(1 for p in span if have[p])
                files.append({
                    "index": data_index,
                    "path": "/".join(f.path),
                    "size": f.length,
                    "progress": round(done / len(span), 6) if span else 1.0,
                    "priority": 1 if selected is None or data_index in selected else 0,
                })
                data_index += 1
            pieces = {"count": len(have), "have": base64.b64encode(pack_bits(have)).decode()}
        return {
            "torrent": self.summary(torrent),
            "files": files,
            "trackers": [{"url": url, "tier": tier} for tier, urls in enumerate(torrent._tracker_tiers())
                         for url in urls],
            "pieces": pieces,
            "info_hash_v1": torrent.info_hash_v1.hex() if torrent.info_hash_v1 else None,
            "info_hash_v2": torrent.info_hash_v2.hex() if torrent.info_hash_v2 else None,
            "piece_length": meta.piece_length if meta else None,
            "web_seeds": [asdict(seed) for seed in torrent.status().web_seeds],
        }

    def peers(self, torrent: Torrent) -> list[dict[str, Any]]:
        count = torrent.picker.num_pieces if torrent.picker else 0
        out = []
        for p in torrent.peers:
            key = p.key
            flags = "".join(flag for flag, on in (
                ("D", p.am_interested and not p.peer_choking), ("d", p.am_interested and p.peer_choking),
                ("U", p.peer_interested and not p.am_choking), ("u", p.peer_interested and p.am_choking),
                ("S", p.snubbed), ("O", p.outgoing), ("E", p.secure_key is not None),
            ) if on)
            have = count if p.is_seed else sum(p.bits) if p.bits else 0
            out.append({
                "address": str(key) if not isinstance(key, tuple) else format_address(key),
                "client": p.client or "",
                "progress": round(have / count, 4) if count else 0.0,
                "download_rate": round(p.rate_down, 1),
                "upload_rate": round(p.rate_up, 1),
                "seed": p.is_seed,
                "secure": p.secure_key is not None,
                "flags": flags,
            })
        return out

    def node_info(self) -> dict[str, Any]:
        node = self.node
        torrents = list(node.torrents.values())
        dht_nodes = 0
        if node.dht is not None:
            dht_nodes = sum(v["table_size"] for v in node.dht.stats().values() if isinstance(v, dict))
        return {
            "peer_id": str(node.identity.peer_id),
            "version": __version__,
            "port": node.port,
            "secure_port": node.secure_port,
            "dht_port": node.dht.port if node.dht is not None else None,
            "dht_nodes": dht_nodes,
            "listen_addrs": [str(a) for a in node.secure_addrs],
            "download_rate": round(sum(t.rate_down for t in torrents), 1),
            "upload_rate": round(sum(t.rate_up for t in torrents), 1),
            "downloaded": sum(t.downloaded for t in torrents),
            "uploaded": sum(t.uploaded for t in torrents),
            "torrents": len(torrents),
            "limits": {"download": node.download_bucket.rate, "upload": node.upload_bucket.rate},
            "uptime": round(time.time() - self.started_at, 1),
            "download_root": str(self.roots.download),
            "share_roots": [str(p) for p in self.roots.share],
        }

    def metrics(self) -> str:
        """The node's figures in the Prometheus text exposition format (version 0.0.4)."""
        torrents = list(self.node.torrents.values())
        info = self.node_info()
        total = dict(self._gone)
        for t in torrents:
            total["downloaded"] += t.session_downloaded
            total["uploaded"] += t.uploaded - self._upload_base.get(t.id, 0)
            total["hash_failures"] += t.hash_failures
            total["wasted"] += t.wasted
            total["banned"] += t.banned_count
        by_state: dict[str, int] = {}
        for t in torrents:
            state = t.status().state
            by_state[state] = by_state.get(state, 0) + 1
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}"
                         for labels, value in samples)

        metric("peerloom_downloaded_bytes_total", "counter", "Payload bytes received since the daemon started.",
               [("", total["downloaded"])])
        metric("peerloom_uploaded_bytes_total", "counter", "Payload bytes sent since the daemon started.",
               [("", total["uploaded"])])
        metric("peerloom_wasted_bytes_total", "counter", "Payload bytes received and thrown away.",
               [("", total["wasted"])])
        metric("peerloom_hash_failures_total", "counter", "Pieces that failed their hash check.",
               [("", total["hash_failures"])])
        metric("peerloom_banned_peers_total", "counter", "Peers banned for sending bad data.", [("", total["banned"])])
        metric("peerloom_download_rate_bytes", "gauge", "Current download rate, bytes per second.",
               [("", float(info["download_rate"]))])
        metric("peerloom_upload_rate_bytes", "gauge", "Current upload rate, bytes per second.",
               [("", float(info["upload_rate"]))])
        metric("peerloom_peers", "gauge", "Connected BitTorrent peers.", [("", sum(len(t.peers) for t in torrents))])
        metric("peerloom_torrents", "gauge", "Torrents by state.",
               [(f'{{state="{s}"}}', n) for s, n in sorted(by_state.items())] or [("", 0)])
        metric("peerloom_dht_nodes", "gauge", "Nodes in the DHT routing table.", [("", info["dht_nodes"])])
        metric("peerloom_secure_connections", "gauge", "Open secure-layer (Noise + yamux) connections.",
               [("", len(self.node.secure_host.connections))])
        return "\n".join(lines) + "\n"

    # -- events ---------------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue of events (dicts; None when the daemon stops). Slow readers are dropped, not waited for."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        queue.put_nowait(self.snapshot())
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(queue)

    def snapshot(self) -> dict[str, Any]:
        return {"type": "snapshot", "node": self.node_info(),
                "torrents": [self.summary(t) for t in self.node.torrents.values()]}

    def broadcast(self, event: dict[str, Any]) -> None:
        """Push an app's event (a dict with a "type", e.g. "pubsub.message") to every subscriber of the stream."""
        self._publish(event)

    def _publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            if not _offer(queue, event):
                self._subscribers.discard(queue)
                _offer(queue, None, force=True)

    async def _event_loop(self) -> None:
        while True:
            await asyncio.sleep(EVENT_EVERY)
            for torrent in list(self.node.torrents.values()):
                state = torrent.status().state
                previous = self._states.get(torrent.id)
                if previous is not None and previous != state:
                    self._publish({"type": "state", "id": torrent.id, "state": state, "previous": previous})
                self._states[torrent.id] = state
            if self._subscribers:
                self._publish(self.snapshot())

    async def _save_loop(self) -> None:
        """Upload/download totals reach the resume data now and then (verified pieces are saved at once)."""
        while True:
            await asyncio.sleep(SAVE_PROGRESS_EVERY)
            for torrent in list(self.node.torrents.values()):
                try:
                    torrent.save_progress()
                except StateError as exc:  # totals only (pieces are saved as they verify, and fail their torrent)
                    log.warning("cannot save the totals of %s: %s", torrent.name, exc)


def _offer(queue: asyncio.Queue[Any], item: Any, *, force: bool = False) -> bool:
    if force:
        while queue.full():
            queue.get_nowait()
    try:
        queue.put_nowait(item)
    except asyncio.QueueFull:
        return False
    return True


@contextlib.contextmanager
def _path_errors() -> Iterator[None]:
    """A path from outside the daemon's folders is forbidden (403); one that is not a path is bad input (400)."""
    try:
        yield
    except OutsideRoots as exc:
        raise ApiError(403, str(exc)) from None
    except BadPath as exc:
        raise ApiError(400, str(exc)) from None


def _limit(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
        raise ApiError(400, f"{name} limit must be a whole number of bytes per second, 0 for none")
    return value


def _magnet_of(torrent: Torrent) -> str | None:
    if torrent.meta is not None:
        return str(Magnet.from_metainfo(torrent.meta))
    return str(torrent.magnet) if torrent.magnet else None
