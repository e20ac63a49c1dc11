"""The asyncio driver of libp2p mDNS discovery (libp2p/specs discovery/mdns.md), on `zeroconf`, and the dialler the
node hands the peers it finds to.

`MdnsService` registers our instance `<random peer-name>._p2p._udp.local.` with a TXT record of our `dnsaddr=`
addresses (zeroconf then answers `_p2p._udp.local PTR` questions and announces the instance at start), browses
`_p2p._udp.local.` (zeroconf sends the PTR queries and caches every answer), and on each instance that appears or
changes reads all its TXT records from zeroconf's cache, turns them into (PeerId, addresses) with the sans-I/O
`mdns_records.MdnsPeers`, and calls `on_peer(peer, addrs, "mdns")`. Every `refresh` seconds it reports again the
instances still alive, so that a peer we lost the connection to is dialled again (the dialler keeps that to once a
minute).

Zeroconf runs on the caller's event loop (it attaches to the running one): it starts no thread, and `close` sends
the goodbye packets and closes its sockets.

Which interfaces: a node listening on one IPv4 address runs mDNS on that interface only and advertises that address;
a node listening on all (0.0.0.0 or ::) runs it on every interface and advertises each interface's address. The
node does not run mDNS at all when it listens on loopback only: LAN peers could not dial it, and node tests on
loopback must not find each other by surprise (see `Node._start_mdns`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import ifaddr
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from peerloom.codec.multiaddr import Multiaddr
from peerloom.discovery.mdns_records import (
    CLASS_IN,
    MAX_TXT_RECORDS,
    SERVICE_TYPE,
    TYPE_TXT,
    MdnsPeers,
    advertised_addrs,
    encode_txt,
    instance_name,
    new_peer_name,
)
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId

log = logging.getLogger(__name__)

OnPeer = Callable[[PeerId, list[Multiaddr], str], None]
SOURCE = "mdns"
REFRESH_INTERVAL = 30.0  # report the live instances again this often
MAX_INSTANCES = 256  # instances followed at once; more on one LAN are ignored until some leave
TTL = 120  # seconds, the TTL js-libp2p and zeroconf give these records


def interface_ips() -> list[str]:
    """Every IP address of this host's interfaces (IPv6 ones without their zone)."""
    ips = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            ips.append(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
    return ips


class MdnsService:
    """libp2p mDNS on the LAN: advertise `listen_addrs()` (each ending in our /p2p/) for `peer_id`, and report the
    other peers found to `on_peer(peer, addrs, "mdns")` (addresses without their /p2p/ part)."""

    def __init__(
        self,
        peer_id: PeerId,
        listen_addrs: Callable[[], list[Multiaddr]],
        on_peer: OnPeer,
        *,
        host: str = "0.0.0.0",
        refresh: float = REFRESH_INTERVAL,
    ) -> None:
        self.peer_id = peer_id
        self.listen_addrs = listen_addrs
        self.on_peer = on_peer
        self.host = host
        self.refresh = refresh
        self.peer_name = new_peer_name()
        self.peers = MdnsPeers(peer_id, self.peer_name)
        self.advertised: list[Multiaddr] = []
        self.instances: set[str] = set()  # instance names of other peers seen and not gone
        self.discovered: dict[PeerId, tuple[Multiaddr, ...]] = {}  # latest addresses of each peer found
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the mDNS sockets and start browsing and registering our instance; PeerloomError when the host has no
        usable multicast (the node then runs without LAN discovery)."""
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            raise PeerloomError(f"mDNS needs an IP address to run on, not {self.host!r}") from None
        ips = interface_ips() if ip.is_unspecified else [self.host]
        self.advertised = advertised_addrs(self.listen_addrs(), ips)
        try:
            if ip.is_unspecified:  # every interface (IPv4 only for 0.0.0.0; both for ::, which is dual-stack)
                version = IPVersion.V4Only if ip.version == 4 else IPVersion.All
                self._zc = AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=version)
            else:  # the one interface that holds the address
                self._zc = AsyncZeroconf(interfaces=[self.host])
        except (OSError, ValueError) as exc:
            raise PeerloomError(f"mDNS cannot start on {self.host}: {exc}") from exc
        try:
            self._browser = AsyncServiceBrowser(self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change])
        except BaseException:
            await self.close()
            raise
        self._task = asyncio.create_task(self._run(), name="mdns")

    async def _run(self) -> None:
        """Register our instance, then report the live instances again every `refresh` seconds. Zeroconf probes the
        name for about a second before it announces it (RFC 6762 §8.1): the node's start does not wait for that."""
        if self.advertised:
            try:
                await self._register()
            except Exception as exc:  # zeroconf's own errors (a name taken, a blocked loop): we still browse
                log.warning("mDNS: cannot advertise this node: %r", exc)
        else:
            log.info("mDNS: no LAN address to advertise on %s; only looking for peers", self.host)
        while True:
            await asyncio.sleep(self.refresh)
            for name in list(self.instances):
                self._report(name)

    async def _register(self) -> None:
        assert self._zc is not None
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            instance_name(self.peer_name),
            port=int(self.advertised[0].value_for("tcp") or 0),
            properties=encode_txt(self.advertised),
            server=f"{self.peer_name}.p2p.local.",  # spec: the host-name comes from the peer name and p2p.local
            parsed_addresses=sorted({addr.components[0][1] or "" for addr in self.advertised}),
            host_ttl=TTL,
            other_ttl=TTL,
        )
        await self._zc.async_register_service(self._info)

    def _on_change(self, zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        """zeroconf's browser callback (on the event loop): an instance appeared, changed or left."""
        if state_change is ServiceStateChange.Removed:
            self.instances.discard(name)
            return
        if name not in self.instances and len(self.instances) >= MAX_INSTANCES:
            return
        self.instances.add(name)
        self._report(name)

    def _report(self, name: str) -> None:
        """Read every TXT record of `name` from zeroconf's cache and report the peer they describe."""
        if self._zc is None:
            return
        records = self._zc.zeroconf.cache.async_all_by_details(name, TYPE_TXT, CLASS_IN)[:MAX_TXT_RECORDS]
        found = self.peers.receive(name, [record.text for record in records])  # type: ignore[attr-defined]
        if found is None:
            return
        if len(self.discovered) < MAX_INSTANCES or found.peer in self.discovered:
            self.discovered[found.peer] = found.addrs
        try:
            self.on_peer(found.peer, list(found.addrs), SOURCE)
        except Exception:
            log.exception("mDNS: handling peer %s failed", found.peer)

    async def close(self) -> None:
        """Stop browsing, say goodbye (TTL 0 records), close the sockets."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        zc, self._zc = self._zc, None
        if zc is not None:
            if self._info is not None:
                with contextlib.suppress(Exception):  # a goodbye that cannot be sent does not stop the close
                    await zc.async_unregister_all_services()
                self._info = None
            await zc.async_close()


class MdnsDialer:
    """Dials the peers mDNS finds, within bounds: at most `max_dials` at once (more wait in a bounded queue, newest
    kept), each peer at most once per `retry_after` seconds, none already connected.

    `connect(addr)` is the secure host's dial (an address ending in /p2p/, so Noise checks the key);
    `connected(peer)` says whether a connection to it is open."""

    def __init__(
        self,
        connect: Callable[[Multiaddr], Awaitable[object]],
        connected: Callable[[PeerId], bool],
        *,
        max_dials: int = 4,
        retry_after: float = 60.0,
        max_waiting: int = 64,
        addrs_per_peer: int = 4,
    ) -> None:
        self.connect = connect
        self.connected = connected
        self.max_dials = max_dials
        self.retry_after = retry_after
        self.max_waiting = max_waiting
        self.addrs_per_peer = addrs_per_peer
        self.last_tried: dict[PeerId, float] = {}
        self.waiting: OrderedDict[PeerId, list[Multiaddr]] = OrderedDict()
        self.dialling: dict[PeerId, asyncio.Task[None]] = {}
        self.dialled = 0
        self.failed = 0

    def offer(self, peer: PeerId, addrs: list[Multiaddr], source: str = SOURCE) -> None:
        """A peer was found (`source` names how): dial it now, later, or not at all (see the class)."""
        if self.connected(peer) or peer in self.dialling:
            return
        now = asyncio.get_running_loop().time()
        last = self.last_tried.get(peer)
        if last is not None and now - last < self.retry_after:
            return
        self.waiting[peer] = addrs
        self.waiting.move_to_end(peer)
        while len(self.waiting) > self.max_waiting:
            self.waiting.popitem(last=False)
        self._start_dials()

    def _start_dials(self) -> None:
        now = asyncio.get_running_loop().time()
        while self.waiting and len(self.dialling) < self.max_dials:
            peer, addrs = self.waiting.popitem(last=False)
            if self.connected(peer):
                continue
            self.last_tried[peer] = now
            self._forget_old(now)
            self.dialling[peer] = asyncio.create_task(self._dial(peer, addrs), name=f"mdns dial {peer}")

    def _forget_old(self, now: float) -> None:
        """Drop the attempts older than `retry_after`: they no longer hold a peer back, and the table stays small."""
        for peer in [p for p, t in self.last_tried.items() if now - t >= self.retry_after]:
            del self.last_tried[peer]

    async def _dial(self, peer: PeerId, addrs: list[Multiaddr]) -> None:
        try:
            for addr in addrs[: self.addrs_per_peer]:
                try:
                    await self.connect(addr.encapsulate(f"/p2p/{peer}"))
                except (PeerloomError, OSError) as exc:  # the peer's fault or the network's: try the next address
                    log.debug("mDNS: dialling %s at %s failed: %s", peer, addr, exc)
                    continue
                self.dialled += 1
                return
            self.failed += 1
        finally:
            self.dialling.pop(peer, None)
            self._start_dials()

    async def close(self) -> None:
        """Cancel the dials under way and forget the waiting ones."""
        self.waiting.clear()
        tasks = list(self.dialling.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.dialling.clear()
