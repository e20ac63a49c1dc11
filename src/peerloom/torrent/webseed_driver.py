"""Web seeds (BEP 19) over aiohttp: a part of `Torrent` that downloads pieces from HTTP servers as a source like any
peer.

Each usable server gets `settings.web_seed_requests` workers. A worker claims a run of pieces from the torrent's
picker (`PiecePicker.claim_pieces`: whole pieces nobody else is fetching, up to `webseed.RUN_BYTES`), asks the server
for the byte ranges of the files they lie in (`webseed.plan_ranges`), and hands each piece, as soon as its bytes are
in, to the piece flow, which verifies it (SHA-1 or the v2 merkle layer) before writing it. What the server did wrong
goes to its `webseed.WebSeed`, which backs it off or drops it. Every request has a connect timeout, a read timeout
(the longest silence) and a total timeout; redirects are limited; a body is never read past the length asked for.

`update` (called from the torrent's `tick` and when it pauses or fails) runs the workers exactly while the torrent is
downloading; pieces a worker claimed and did not hand over go back to the picker when it stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sized
from typing import TYPE_CHECKING, Protocol

import aiohttp
from yarl import URL

from peerloom.torrent.state import State, WebSeedStatus
from peerloom.torrent.webseed import Fault, RangeRequest, WebSeed, WebSeedError, check_response, plan_ranges, seed_urls

if TYPE_CHECKING:
    from peerloom.settings import Settings
    from peerloom.torrent.metainfo import Metainfo
    from peerloom.torrent.picker import PiecePicker
    from peerloom.torrent.storage import PieceMap

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
MIN_RATE = 16 * 1024  # bytes/s: a request may take its timeout plus its length at this rate, no longer


class PieceSink(Protocol):
    """Where whole pieces go to be verified and written (`swarm_pieces.PieceFlow`)."""

    verifying_bytes: int

    def add_piece(self, index: int, data: memoryview) -> asyncio.Future[bool]: ...


class LayerFetches(Protocol):
    missing_layers: Sized  # v2 piece layers still to fetch: until they are in, no piece can be verified


class WebSeedsHost(Protocol):
    """What the web seeds read of their torrent."""

    name: str
    state: State
    paused: bool
    picker: PiecePicker | None
    pieces: PieceMap | None
    exchange: LayerFetches


class WebSeeds:
    """The web seeds of one torrent and the workers that download from them."""

    def __init__(self, settings: Settings, host: WebSeedsHost, sink: PieceSink, *, user_agent: str) -> None:
        self.settings = settings
        self.host = host
        self.sink = sink
        self.user_agent = user_agent
        self.seeds: list[WebSeed] = []
        self._workers: set[asyncio.Task[None]] = set()
        self._work = asyncio.Event()  # set (and cleared at once) to wake idle workers
        self._session: aiohttp.ClientSession | None = None
        self._rate_at = 0.0
        self._rate_total = 0

    def metadata_known(self, meta: Metainfo, pieces: PieceMap, magnet_urls: Iterable[str] = ()) -> None:
        """The torrent's `url-list`, and a magnet link's `ws` URLs."""
        self.seeds = [WebSeed(url, meta, pieces) for url in seed_urls((*meta.web_seeds, *magnet_urls))]

    def update(self) -> None:
        """Run the workers while the torrent downloads, and stop them when it does not (paused, seeding, failed)."""
        host = self.host
        if host.state is State.DOWNLOADING and not host.paused:
            if not self._workers:
                for seed in self.seeds:
                    for _ in range(max(1, self.settings.web_seed_requests)):
                        if not seed.dropped:
                            task = asyncio.create_task(self._worker(seed), name=f"web seed {seed.url}")
                            self._workers.add(task)
                            task.add_done_callback(self._worker_done)
            else:
                self._wake()
        else:
            for task in self._workers:
                task.cancel()

    async def stop(self) -> None:
        """Stop every worker (their claimed pieces go back to the picker) and close the HTTP session."""
        workers = list(self._workers)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def rate(self, now: float) -> float:
        """Bytes per second of verified pieces from every web seed since the last call."""
        total = sum(seed.downloaded for seed in self.seeds)
        elapsed = now - self._rate_at
        rate = (total - self._rate_total) / elapsed if self._rate_at and elapsed > 0 else 0.0
        self._rate_at, self._rate_total = now, total
        return rate

    def status(self, now: float) -> tuple[WebSeedStatus, ...]:
        return tuple(seed.status(now) for seed in self.seeds)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self._workers.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a bug: this seed stops, the torrent goes on
            log.error("%s: web seed worker failed", self.host.name, exc_info=task.exception())

    def _wake(self) -> None:
        self._work.set()
        self._work.clear()

    # -- workers -------------------------------------------------------------------------------
    async def _worker(self, seed: WebSeed) -> None:
        while not seed.dropped:
            now = time.monotonic()
            if not seed.ready(now):
                await asyncio.sleep(seed.retry_at - now)
                continue
            run = self._claim(seed)
            if not run:
                await self._work.wait()  # woken by `update`, at each of the torrent's ticks
                continue
            await self._fetch_run(seed, run)

    def _claim(self, seed: WebSeed) -> list[int]:
        host = self.host
        if (host.state is not State.DOWNLOADING or host.paused or host.picker is None or host.exchange.missing_layers
                or self.sink.verifying_bytes > self.settings.max_verify_bytes):
            return []
        return host.picker.claim_pieces(seed.available, seed.run_length)

    async def _fetch_run(self, seed: WebSeed, run: list[int]) -> None:
        """Fetch consecutive pieces `run` into one buffer, handing each to the piece flow once its bytes are in."""
        picker, pieces = self.host.picker, self.host.pieces
        assert picker is not None and pieces is not None
        ends: list[int] = []
        for index in run:
            ends.append((ends[-1] if ends else 0) + pieces.piece_size(index))
        buf = memoryview(bytearray(ends[-1]))  # zeros: pad files are not fetched
        requests = plan_ranges(pieces, run[0], len(run))
        handed = 0
        checks: list[tuple[int, asyncio.Future[bool]]] = []
        try:
            for k in range(len(requests) + 1):
                ready_to = requests[k].offset if k < len(requests) else len(buf)
                while handed < len(run) and ends[handed] <= ready_to:
                    start = ends[handed - 1] if handed else 0
                    checks.append((run[handed], self.sink.add_piece(run[handed], buf[start : ends[handed]])))
                    handed += 1
                if k < len(requests):
                    req = requests[k]
                    await self._get(seed, req, buf[req.offset : req.offset + req.length])
            seed.request_succeeded()
        except WebSeedError as exc:
            self._failed(seed, exc, requests[k].file_index)
        finally:
            for index in run[handed:]:
                picker.piece_failed(index)  # not fetched: free for anyone again
        for index, fut in checks:
            try:
                passed = await asyncio.shield(fut)  # the flow owns the check; cancelling us must not cancel it
            except Exception:  # the flow has failed the torrent (a disk error): nothing to judge
                return
            if passed:
                seed.piece_passed(pieces.piece_size(index))
            else:
                seed.hash_failed(index)
                log.info("%s: web seed %s sent a bad piece %d", self.host.name, seed.url, index)
                if seed.dropped:
                    log.warning("%s: web seed %s dropped: %s", self.host.name, seed.url, seed.error)

    def _failed(self, seed: WebSeed, exc: WebSeedError, file_index: int) -> None:
        seed.request_failed(time.monotonic(), exc)
        if exc.fault is Fault.MISSING:
            seed.file_missing(file_index)
        if seed.dropped:
            log.warning("%s: web seed %s dropped: %s", self.host.name, seed.url, seed.error)
        else:
            log.info("%s: web seed %s: %s", self.host.name, seed.url, exc)

    async def _get(self, seed: WebSeed, req: RangeRequest, into: memoryview) -> None:
        """One range request, its body read into `into` (exactly its length, never more)."""
        limit = self.settings.web_seed_timeout
        timeout = aiohttp.ClientTimeout(total=limit + req.length / MIN_RATE, sock_connect=limit, sock_read=limit)
        headers = {"Range": req.range_header, "Accept-Encoding": "identity"}
        file_length = seed.meta.files[req.file_index].length
        try:
            async with self._http().get(URL(seed.url_of(req.file_index), encoded=True), headers=headers,
                                        timeout=timeout, max_redirects=MAX_REDIRECTS) as resp:
                h = resp.headers
                check_response(req, file_length, resp.status, content_range=h.get("Content-Range"),
                               content_length=h.get("Content-Length"), content_encoding=h.get("Content-Encoding"),
                               retry_after=h.get("Retry-After"))
                got = 0
                while got < req.length:
                    chunk = await resp.content.read(req.length - got)
                    if not chunk:
                        raise WebSeedError(f"the body ended after {got} of {req.length} bytes", Fault.BROKEN)
                    into[got : got + len(chunk)] = chunk
                    got += len(chunk)
        except aiohttp.TooManyRedirects as exc:
            raise WebSeedError(f"more than {MAX_REDIRECTS} redirects", Fault.BROKEN) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise WebSeedError(f"request failed: {exc!r}", Fault.TRANSIENT) from exc

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # bodies as sent (we ask for identity; a compressed body is refused, not inflated past its length)
            self._session = aiohttp.ClientSession(auto_decompress=False, headers={"User-Agent": self.user_agent})
        return self._session
