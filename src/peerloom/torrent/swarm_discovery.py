"""Finding a public torrent's peers without a tracker: the node's DHT (BEP 5) and local service discovery (BEP 14).

A part of `Torrent`. Every public torrent asks the DHT for peers and announces itself (get_peers, then
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
from typing import TYPE_CHECKING, Protocol

from peerloom.errors import PeerloomError
from peerloom.torrent import wire

if TYPE_CHECKING:
    from peerloom.torrent.context import SwarmContext
    from peerloom.torrent.peer import PeerConnection

log = logging.getLogger(__name__)


class DiscoveryHost(Protocol):
    """What the peer sources read of their torrent."""

    name: str
    hashes: list[bytes]  # the info-hashes to look up (20-byte wire form)
    discoverable: bool  # not private (BEP 27): may be looked up and announced at all
    peers: list[PeerConnection]  # the connected peers: few of them, and the DHT is asked more often

    def peers_discovered(self, addresses: list[tuple[str, int]]) -> None: ...


class PeerSources:
    """The DHT and LSD for one torrent (see the module docstring): a part of `Torrent`."""

    def __init__(self, context: SwarmContext, torrent: DiscoveryHost) -> None:
        self.context = context
        self.torrent = torrent
        self.dht_found = 0  # peers the DHT handed us, over every lookup
        self._task: asyncio.Task[None] | None = None

    @property
    def dht_enabled(self) -> bool:
        return self.torrent.discoverable and self.context.dht is not None

    def start(self) -> None:
        """Announce on the LAN now, and start asking the DHT (until `stop`)."""
        if not self.torrent.discoverable or self._task is not None:
            return
        if self.context.lsd is not None:
            self.context.lsd.announce_soon()
        if self.context.dht is not None:
            self._task = asyncio.create_task(self._dht_loop(), name=f"dht {self.torrent.name}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _dht_loop(self) -> None:
        settings = self.context.settings
        while self.dht_enabled:  # a magnet's metadata may turn out to be private: then we stop
            # A hybrid's v1 and v2 swarms are looked up side by side: neither waits for the other's slow nodes.
            await asyncio.gather(*(self._dht_announce(info_hash) for info_hash in self.torrent.hashes))
            few = len(self.torrent.peers) < settings.dht_few_peers
            await asyncio.sleep(settings.dht_interval_few if few else settings.dht_interval)

    async def _dht_announce(self, info_hash: bytes) -> None:
        dht = self.context.dht
        assert dht is not None
        try:
            result = await dht.announce(info_hash, self.context.port, on_peers=self._dht_peers)
        except PeerloomError as exc:
            log.debug("%s: DHT announce failed: %s", self.torrent.name, exc)
            return
        log.debug("%s: DHT gave %d peers, %d nodes took our announce", self.torrent.name, len(result.peers),
                  result.stored)

    def _dht_peers(self, addresses: list[tuple[str, int]]) -> None:
        """Peers from one DHT reply, while the lookup goes on."""
        if self.dht_enabled:
            self.dht_found += len(addresses)
            self.torrent.peers_discovered(addresses)

    def send_dht_port(self, peer: PeerConnection) -> None:
        """BEP 5: tell a peer that set the DHT bit in its handshake where our DHT node listens."""
        hs = peer.handshake
        dht = self.context.dht
        if self.dht_enabled and dht is not None and hs is not None and hs.supports_dht:
            peer.send_message(wire.Port(dht.port))

    def on_port(self, peer: PeerConnection, m: wire.Port) -> None:
        """BEP 5 PORT: the peer runs a DHT node there; ping it into our table."""
        dht = self.context.dht
        if self.dht_enabled and dht is not None and peer.remote is not None and 0 < m.port < 65536:
            dht.add_node((peer.remote[0], m.port))
