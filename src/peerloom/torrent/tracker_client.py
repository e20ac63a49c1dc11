"""Talking to trackers: the client (HTTP and UDP announce and scrape) and the per-torrent announce loop
(BEP 3, BEP 12 tiers, BEP 15 UDP, BEP 48 scrape)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

from peerloom.torrent.tracker import (
    MAX_BODY,
    AnnounceRequest,
    AnnounceResponse,
    ScrapeStats,
    TrackerError,
    http_announce_url,
    http_scrape_url,
    parse_http_announce,
    parse_http_scrape,
)
from peerloom.torrent.udp_tracker import MAX_SCRAPE_HASHES, RETRANSMIT_BASE
from peerloom.torrent.udp_tracker_client import UdpTrackerClient

log = logging.getLogger(__name__)


class TrackerClient:
    """Announces and scrapes for every torrent of a node: `http(s)://` over aiohttp, `udp://` over one
    shared UDP socket per address family. `timeout` bounds each call."""

    def __init__(
        self, *, timeout: float = 15.0, udp_timeout: float = 60.0, udp_retransmit_base: float = RETRANSMIT_BASE,
        families: frozenset[int] = frozenset(),
    ) -> None:
        self.timeout = timeout
        # the address families our BitTorrent port takes (empty: any): trackers are reached over those only, since
        # a tracker hands out the address it saw us come from
        self.families = families
        self._session: aiohttp.ClientSession | None = None
        # BEP 15 resends after 15 s, then 30 s more: a minute allows three sends before the announce loop's backoff
        self.udp = UdpTrackerClient(timeout=udp_timeout, retransmit_base=udp_retransmit_base, families=families)

    async def announce(self, url: str, req: AnnounceRequest) -> AnnounceResponse:
        if _scheme(url) == "udp":
            return await self.udp.announce(url, req)
        return parse_http_announce(await self._http_get(http_announce_url(url, req)))

    async def scrape(self, url: str, info_hashes: list[bytes]) -> dict[bytes, ScrapeStats]:
        """Seeders, completed downloads and leechers per info-hash (20 bytes each; a v2 torrent is asked
        by its info-hash truncated to 20 bytes). An HTTP tracker may leave out torrents it does not know."""
        hashes = list(dict.fromkeys(info_hashes))
        if any(len(h) != 20 for h in hashes):
            raise ValueError("info-hashes must be 20 bytes")
        if not hashes:
            return {}
        if _scheme(url) == "udp":
            return await self.udp.scrape(url, hashes)
        out: dict[bytes, ScrapeStats] = {}
        for i in range(0, len(hashes), MAX_SCRAPE_HASHES):  # keeps each scrape URL a few KiB long
            batch = hashes[i : i + MAX_SCRAPE_HASHES]
            out.update(parse_http_scrape(await self._http_get(http_scrape_url(url, batch)), batch))
        return out

    async def _http_get(self, url: str) -> bytes:
        if self._session is None:
            (family,) = self.families if len(self.families) == 1 else (0,)  # 0: either, happy eyeballs
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                                  connector=aiohttp.TCPConnector(family=family))
        try:
            async with self._session.get(url) as resp:
                if resp.status != 200:
                    raise TrackerError(f"tracker answered HTTP {resp.status}")
                return await resp.content.read(MAX_BODY + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TrackerError(f"tracker unreachable: {exc!r}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self.udp.close()


def _scheme(url: str) -> str:
    """"udp", "http" or "https"; TrackerError for any other URL."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise TrackerError(f"bad tracker URL {url!r}: {exc}") from exc
    if scheme not in ("udp", "http", "https"):
        raise TrackerError(f"unsupported tracker scheme: {scheme or url}")
    return scheme


class Announcer:
    """One torrent's announce loop over its tracker tiers."""

    def __init__(
        self,
        client: TrackerClient,
        tiers: list[list[str]],
        make_request: Callable[[str], AnnounceRequest],
        on_peers: Callable[[list[tuple[str, int]]], None],
        *,
        min_wait: float = 30.0,
    ) -> None:
        self.client = client
        self.tiers = [random.sample(t, len(t)) for t in tiers]  # BEP 12: shuffle each tier once
        self.make_request = make_request
        self.on_peers = on_peers
        self.min_wait = min_wait
        self._last_url: str | None = None
        self._event = "started"
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def completed(self) -> None:
        self._event = "completed"
        self._wake.set()

    async def _announce_once(self, event: str) -> AnnounceResponse | None:
        for tier in self.tiers:
            for url in list(tier):
                try:
                    resp = await self.client.announce(url, self.make_request(event))
                except TrackerError as exc:
                    log.info("announce to %s failed: %s", url, exc)
                    continue
                tier.remove(url)
                tier.insert(0, url)  # BEP 12: a tracker that answered moves to the front of its tier
                self._last_url = url
                return resp
        return None

    async def _run(self) -> None:
        backoff = self.min_wait
        while True:
            event, self._event = self._event, ""
            resp = await self._announce_once(event)
            if resp is None:
                if event:
                    self._event = event
                wait = backoff
                backoff = min(backoff * 2, 1800.0)
            else:
                backoff = self.min_wait
                self.on_peers(resp.peers)
                wait = max(resp.min_interval or 0, min(resp.interval, 1800), 1)
            self._wake.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that races a wake-up
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def stop(self) -> None:
        if self._task is not None:
            while not self._task.done():  # cancel again should a cancel ever be lost in a library's wait
                self._task.cancel()
                await asyncio.wait([self._task], timeout=1.0)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._last_url is not None:
            with contextlib.suppress(TrackerError, TimeoutError):
                async with asyncio.timeout(3.0):
                    await self.client.announce(self._last_url, self.make_request("stopped"))
