"""Finding a public torrent's peers without a tracker: the node's DHT (BEP 5) and local service discovery (BEP 14).

A mixin of `Torrent`. Every public torrent asks the DHT for peers and announces itself (get_peers, then
announce_peer with our BitTorrent port) under each of its info-hashes at once when it starts, then every
`dht_interval` (`dht_interval_few` while it has few peers). Peers are dialled as each DHT reply brings them, not when
the lookup is over: a departed node among the closest holds a lookup up for seconds (issue 12: the first peer came
after 14 s instead of 16 ms). Peers that tell us their DHT port (the PORT message)
are pinged into the node's table. Private torrents (BEP 27) and private swarms of the secure layer stay out of both.
The node's DHT and LSD are reached through the engine (`SwarmContext.dht`/`.lsd`), typed by small protocols.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from peerloom.errors import PeerloomError
from peerloom.torrent import wire

if TYPE_CHECKING:
    from peerloom.torrent.context import SwarmContext
    from peerloom.torrent.peer import PeerConnection

log = logging.getLogger(__name__)


class DiscoveryMixin:
    """DHT and LSD for `Torrent` (see the module docstring)."""

    engine: SwarmContext
    settings: Any
    private: bool
    secure: bool
    name: str
    peers: list[PeerConnection]
    hashes: list[bytes]
    dht_found = 0  # peers the DHT handed us, over every lookup

    @property
    def discoverable(self) -> bool:
        """Whether the torrent may be found through the DHT, LSD and peer exchange: not private (BEP 27)."""
        return not self.private and not self.secure

    @property
    def dht_enabled(self) -> bool:
        return self.discoverable and self.engine.dht is not None

    def _start_discovery(self) -> asyncio.Task[None] | None:
        """Announce on the LAN now, and start asking the DHT; returns the DHT task (the caller owns it)."""
        if not self.discoverable:
            return None
        if self.engine.lsd is not None:
            self.engine.lsd.announce_soon()
        if self.engine.dht is None:
            return None
        return asyncio.create_task(self._dht_loop(), name=f"dht {self.name}")

    async def _dht_loop(self) -> None:
        settings = self.settings
        while self.dht_enabled:  # a magnet's metadata may turn out to be private: then we stop
            # A hybrid's v1 and v2 swarms are looked up side by side: neither waits for the other's slow nodes.
            await asyncio.gather(*(self._dht_announce(info_hash) for info_hash in self.hashes))
            few = len(self.peers) < settings.dht_few_peers
            await asyncio.sleep(settings.dht_interval_few if few else settings.dht_interval)

    async def _dht_announce(self, info_hash: bytes) -> None:
        try:
            result = await self.engine.dht.announce(info_hash, self.engine.port, on_peers=self._dht_peers)
        except PeerloomError as exc:
            log.debug("%s: DHT announce failed: %s", self.name, exc)
            return
        log.debug("%s: DHT gave %d peers, %d nodes took our announce", self.name, len(result.peers), result.stored)

    def _dht_peers(self, addresses: list[tuple[str, int]]) -> None:
        """Peers from one DHT reply, while the lookup goes on."""
        if self.dht_enabled:
            self.dht_found += len(addresses)
            self.peers_discovered(addresses)

    def peers_discovered(self, addresses: list[tuple[str, int]]) -> None:
        """Peers from the DHT or the LAN: dial them now rather than at the next tick."""
        self.add_peers(addresses)  # type: ignore[attr-defined]
        self._connect_more(time.monotonic())  # type: ignore[attr-defined]

    def _send_dht_port(self, peer: PeerConnection) -> None:
        """BEP 5: tell a peer that set the DHT bit in its handshake where our DHT node listens."""
        hs = peer.handshake
        if self.dht_enabled and hs is not None and hs.supports_dht:
            peer.send_message(wire.Port(self.engine.dht.port))

    def _on_port(self, peer: PeerConnection, m: wire.Port) -> None:
        """BEP 5 PORT: the peer runs a DHT node there; ping it into our table."""
        if self.dht_enabled and peer.remote is not None and 0 < m.port < 65536:
            self.engine.dht.add_node((peer.remote[0], m.port))
