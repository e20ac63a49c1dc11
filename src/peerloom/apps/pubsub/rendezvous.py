"""Rendezvous by topic through the Mainline DHT: the peers of a topic meet under the topic's key.

A subscriber announces `sha1("peerloom:topic:" + name)` on the DHT (BEP 5 announce_peer) with its secure layer's TCP
port, again every `interval` while it stays subscribed (DHT nodes forget announces after a while), and dials the
peers the announce's lookup met on the way. A node that knows only the topic's name asks for the key's peers
(`find`) and dials each at /ip4/H/tcp/P without a /p2p/ part: the Noise handshake tells us who answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from peerloom.codec.multiaddr import Multiaddr
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.host import Host
from peerloom.service import ServiceTasks

if TYPE_CHECKING:
    from peerloom.dht.driver import Dht

log = logging.getLogger(__name__)

TOPIC_KEY_PREFIX = b"peerloom:topic:"
ANNOUNCE_INTERVAL = 5 * 60.0  # BEP 5 nodes keep an announce for ~30 min; every 5 min keeps us findable
MAX_DIALS = 8  # addresses dialled at once per lookup
MAX_PEERS_DIALLED = 32  # the most addresses one lookup dials

Address = tuple[str, int]
PeerCallback = Callable[[PeerId, list[Multiaddr], str], None]


def topic_key(topic: str) -> bytes:
    """The 20-byte DHT key the peers of `topic` announce themselves under."""
    return hashlib.sha1(TOPIC_KEY_PREFIX + topic.encode()).digest()


class TopicRendezvous:
    """Announces the topics we subscribe to and dials the peers announced for a topic. Without a DHT it does
    nothing (`find` finds nobody). `on_peer` hears of each peer a dial reached, with the address it answered at."""

    def __init__(
        self,
        dht: Dht | None,
        host: Host,
        tasks: ServiceTasks,
        *,
        interval: float = ANNOUNCE_INTERVAL,
        on_peer: PeerCallback | None = None,
    ) -> None:
        self.dht = dht
        self.host = host
        self.tasks = tasks
        self.interval = interval
        self.on_peer = on_peer
        self.announced: dict[str, int] = {}  # topic -> announces done (for tests and the stats)
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(MAX_DIALS)

    def join(self, topic: str) -> None:
        """Announce `topic` now and every `interval` until `leave`."""
        if self.dht is None or topic in self._loops:
            return
        self._loops[topic] = self.tasks.spawn(self._announce_loop(topic), name=f"pubsub rendezvous {topic}")

    def leave(self, topic: str) -> None:
        task = self._loops.pop(topic, None)
        if task is not None:
            task.cancel()

    async def _announce_loop(self, topic: str) -> None:
        assert self.dht is not None
        while True:
            port = self.secure_port()
            if port:
                try:
                    result = await self.dht.announce(topic_key(topic), port)
                    self.announced[topic] = self.announced.get(topic, 0) + 1
                    await self.dial(result.peers)
                except PeerloomError as exc:
                    log.debug("pubsub: announcing %r on the DHT failed: %s", topic, exc)
            await asyncio.sleep(self.interval)

    async def find(self, topic: str) -> int:
        """Dial the peers announced for `topic`; how many answered (new connections and ones we already had)."""
        if self.dht is None:
            return 0
        try:
            peers = await self.dht.get_peers(topic_key(topic))
        except PeerloomError as exc:
            log.debug("pubsub: looking %r up on the DHT failed: %s", topic, exc)
            return 0
        return await self.dial(peers)

    async def dial(self, peers: Iterable[Address]) -> int:
        """Connect to each address that is not ours and not a peer we are connected to; how many answered."""
        known = self._connected_addresses()
        targets = [a for a in dict.fromkeys(peers) if not self._is_own(a)][:MAX_PEERS_DIALLED]
        reached = sum(a in known for a in targets)
        fresh = [a for a in targets if a not in known]
        if fresh:
            results = await asyncio.gather(*(self._connect(a) for a in fresh))
            reached += sum(results)
        return reached

    async def _connect(self, address: Address) -> bool:
        host, port = address
        family = "ip6" if ":" in host else "ip4"
        addr = Multiaddr(f"/{family}/{host}/tcp/{port}")
        async with self._slots:
            try:
                conn = await self.host.connect(addr)
            except (PeerloomError, TimeoutError) as exc:
                log.debug("pubsub: rendezvous peer %s unreachable: %s", addr, exc)
                return False
        if self.on_peer is not None and conn.remote_peer is not None:
            with contextlib.suppress(Exception):
                self.on_peer(conn.remote_peer, [addr], "rendezvous")
        return True

    def secure_port(self) -> int | None:
        addrs = self.host.listen_addrs
        return int(addrs[0].value_for("tcp") or 0) if addrs else None

    def _is_own(self, address: Address) -> bool:
        host, port = address
        if port != self.secure_port():
            return False
        ours = {a.to_host_port()[0] for a in self.host.listen_addrs}
        return host in ours or _is_local(host)

    def _connected_addresses(self) -> set[Address]:
        """Where the peers we are connected to listen (identify) or were dialled."""
        found: set[Address] = set()
        for conn in self.host.connections.values():
            if conn.initiator and conn.remote_address is not None:
                found.add(conn.remote_address)
            if conn.info is not None:
                for addr in conn.info.listen_addrs:
                    with contextlib.suppress(PeerloomError, ValueError):
                        found.add(addr.to_host_port())
        return found


def _is_local(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
