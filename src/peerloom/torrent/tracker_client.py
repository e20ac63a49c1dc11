"""Announcing to trackers: the HTTP client and the per-torrent announce loop (BEP 3, BEP 12 tiers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

import aiohttp

from peerloom.torrent.tracker import (
    AnnounceRequest,
    AnnounceResponse,
    TrackerError,
    http_announce_url,
    parse_http_announce,
)

log = logging.getLogger(__name__)


class TrackerClient:
    def __init__(self, *, timeout: float = 15.0) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def announce(self, url: str, req: AnnounceRequest) -> AnnounceResponse:
        if not url.startswith(("http://", "https://")):
            raise TrackerError(f"unsupported tracker scheme: {url.split(':', 1)[0]}")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.get(http_announce_url(url, req)) as resp:
                if resp.status != 200:
                    raise TrackerError(f"tracker answered HTTP {resp.status}")
                body = await resp.content.read(4 * 1024 * 1024 + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TrackerError(f"tracker unreachable: {exc!r}") from exc
        return parse_http_announce(body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


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
        self.last_error: str | None = None
        self.last_response: AnnounceResponse | None = None
        self._last_url: str | None = None
        self._event = "started"
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def completed(self) -> None:
        self._event = "completed"
        self._wake.set()

    def announce_now(self) -> None:
        self._wake.set()

    async def _announce_once(self, event: str) -> AnnounceResponse | None:
        for tier in self.tiers:
            for url in list(tier):
                try:
                    resp = await self.client.announce(url, self.make_request(event))
                except TrackerError as exc:
                    self.last_error = f"{url}: {exc}"
                    log.info("announce to %s failed: %s", url, exc)
                    continue
                tier.remove(url)
                tier.insert(0, url)  # BEP 12: a tracker that answered moves to the front of its tier
                self._last_url = url
                self.last_error = None
                self.last_response = resp
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._last_url is not None:
            with contextlib.suppress(TrackerError, TimeoutError):
                await asyncio.wait_for(self.client.announce(self._last_url, self.make_request("stopped")), 3.0)
