"""The asyncio side of the peer store: feeds it from the secure host's peer events and saves it in the background.

    keeper = PeerStoreKeeper(store, host, run_blocking)
    await keeper.start()     # from now on: connected, identified (protocols, agent, listen addresses), disconnected
    await keeper.close()     # stops listening and saves what changed since the last save

The store is saved every `SAVE_INTERVAL` in a worker thread (one transaction for everything that changed), one save
at a time and in the order their snapshots were taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from peerloom.codec.multiaddr import Multiaddr, MultiaddrError
from peerloom.discovery.peerstore import SAVE_INTERVAL, Changes, PeerStore, usable_addrs
from peerloom.errors import PeerloomError
from peerloom.net.host import Host, PeerConnected, PeerDisconnected, PeerEvent, PeerIdentified

log = logging.getLogger(__name__)

RunBlocking = Callable[[Callable[[Changes], None], Changes], Awaitable[Any]]


class PeerStoreKeeper:
    """Keeps `store` up to date with `host`'s peer events and saved through `run_blocking` (a worker thread)."""

    def __init__(self, store: PeerStore, host: Host, run_blocking: RunBlocking, *, interval: float = SAVE_INTERVAL,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.host = host
        self.run_blocking = run_blocking
        self.interval = interval
        self.clock = clock
        self._saving = asyncio.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._unsubscribe = self.host.subscribe(self.on_event)
        self._task = asyncio.create_task(self._save_every(), name="peer store saver")

    async def close(self) -> None:
        """Stop listening and saving, then save what is left (after a save under way has ended)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.save()

    def on_event(self, event: PeerEvent) -> None:
        now = self.clock()
        if isinstance(event, PeerConnected):
            self.store.connected(event.peer, _tcp_addr(event.address), now)
        elif isinstance(event, PeerIdentified):
            conn = self.host.connections.get(event.peer)
            remote = conn.remote_address[0] if conn is not None and conn.remote_address is not None else None
            self.store.set_protocols(event.peer, event.protocols, event.agent_version, now)
            self.store.add_addrs(event.peer, usable_addrs(event.listen_addrs, remote), "identify", now)
        elif isinstance(event, PeerDisconnected):
            self.store.disconnected(event.peer, now)

    async def save(self) -> None:
        """Write what changed since the last save (in a worker thread; StateError when the disk fails)."""
        async with self._saving:
            changes = self.store.changes()
            if changes:
                try:
                    await self.run_blocking(self.store.save, changes)
                except PeerloomError:
                    self.store.unsaved(changes)  # written with the next save
                    raise

    async def _save_every(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:  # shielded: a close in the middle lets this save end before the last one starts
                await asyncio.shield(self.save())
            except PeerloomError as exc:  # a full disk: the store stays in memory and is saved again later
                log.warning("saving the peer store failed: %s", exc)


def _tcp_addr(address: tuple[str, int] | None) -> Multiaddr | None:
    if address is None:
        return None
    host, port = address
    try:
        return Multiaddr(f"/{'ip6' if ':' in host else 'ip4'}/{host}/tcp/{port}")
    except MultiaddrError:  # an IPv6 address with a zone, say: not one the store keeps
        return None
