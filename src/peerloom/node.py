"""The peerloom node: the composition root. One home directory, the parts every service shares, and the services.

    async with Node(home=...) as node:
        t = await node.add(magnet_or_torrent_path, save="downloads")
        await t.wait_done()

The node builds what the services share — the worker threads for disk and hashing, its identity (an Ed25519 key in
the home), the secure peer layer's host, the Mainline DHT (UDP, its routing table kept in the home) and local service
discovery — and starts each service in order inside an `AsyncExitStack`: a start that fails unwinds everything that
started before it (services stopped in reverse, their tasks cancelled, sockets and the state database closed, worker
threads joined). `stop` (or leaving the `async with`) unwinds the same way. The BitTorrent engine
(`torrent.engine.BitTorrentEngine`) is the first service; others join through `Node(..., services=[...])`, the one
registration point. Each service's protocols are routed to it on the secure layer, to the peers its `admits` takes.

Torrent methods (`add`, `share`, `remove`, `torrents`, ...) are the engine's, reached through the node for the CLI,
the daemon and Python users.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import platformdirs

from peerloom.apps.compute.service import ComputeService
from peerloom.apps.docs.service import DocsService
from peerloom.apps.exit.service import ExitService
from peerloom.apps.nat.service import NatService
from peerloom.apps.pubsub.service import PubSubService
from peerloom.codec.multiaddr import Multiaddr
from peerloom.discovery.peerstore import PeerStore
from peerloom.discovery.peerstore_driver import PeerStoreKeeper
from peerloom.errors import PeerloomError
from peerloom.identity import Identity, PeerId
from peerloom.net.host import Host
from peerloom.service import NodeContext, Service, ServiceTasks
from peerloom.settings import Settings
from peerloom.state import State
from peerloom.torrent.engine import BITTORRENT_PROTOCOL, BitTorrentEngine, DuplicateTorrent
from peerloom.torrent.magnet import Magnet
from peerloom.torrent.metainfo import Metainfo
from peerloom.torrent.ratelimit import TokenBucket
from peerloom.torrent.resume import ResumeStore
from peerloom.torrent.swarm import Torrent
from peerloom.version import __version__
from peerloom.workers import WorkerPool

if TYPE_CHECKING:
    from peerloom.dht.driver import Dht
    from peerloom.discovery.lsd_driver import LsdGroups
    from peerloom.discovery.mdns import MdnsService
    from peerloom.discovery.peer_record_driver import PeerRecords
    from peerloom.net.nat.dcutr_driver import HolePuncher
    from peerloom.net.relay.client import RelayClient
    from peerloom.net.relay.server import RelayServer
    from peerloom.torrent.tracker_client import TrackerClient

__all__ = ["BITTORRENT_PROTOCOL", "DuplicateTorrent", "Node", "ServiceStartError", "Settings", "default_home"]

T = TypeVar("T")
log = logging.getLogger(__name__)


class ServiceStartError(PeerloomError):
    """A service raised while it started; what had started was stopped again."""


def default_home() -> Path:
    env = os.environ.get("PEERLOOM_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("peerloom"))


class Node:
    """A peer node. Use as `async with Node(...) as node`."""

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        port: int = 0,
        host: str = "0.0.0.0",
        settings: Settings | None = None,
        services: Iterable[Service] = (),
    ) -> None:
        self.home = Path(home) if home is not None else default_home()
        self.host = host
        self.requested_port = port
        self.settings = settings or Settings()
        self.client_name = f"peerloom/{__version__}"
        self.engine = BitTorrentEngine(self.settings, client_name=self.client_name)
        # pub/sub (GossipSub) is a service like the others, built by default: `node.pubsub`
        self.pubsub: PubSubService | None = PubSubService() if self.settings.pubsub else None
        # volunteer computing, built by default (a volunteer only when the settings opt in): `node.compute`
        self.compute: ComputeService | None = (
            ComputeService.from_settings(self.settings, self.pubsub) if self.settings.compute else None)
        # NAT (AutoNAT, port mapping) likewise: `node.nat`
        nat_on = self.settings.autonat or self.settings.autonat_server or self.settings.port_mapping
        self.nat: NatService | None = NatService(lambda: self.port) if nat_on else None
        # the exit (apps/exit): serves the peers `settings.exit_allow` names, and opens exit streams for SOCKS
        self.exit = ExitService()
        # collaborative documents (issue 15), found through pub/sub topics when it runs: `node.docs`
        self.docs = DocsService(pubsub=self.pubsub)
        self.services: list[Service] = [self.engine, *([self.pubsub] if self.pubsub else []), self.docs,
                                        *([self.compute] if self.compute else []),
                                        *([self.nat] if self.nat else []), self.exit, *services]
        names = [s.name for s in self.services]
        if len(set(names)) != len(names):
            raise ValueError(f"two services share a name: {names}")
        self.workers: WorkerPool | None = None  # threads hashing and doing disk I/O (made at start)
        self.identity: Identity
        self.secure_host: Host
        self.dht: Dht | None = None  # the Mainline DHT node (None when `settings.dht` is off)
        self.lsd: LsdGroups | None = None  # local service discovery (None when `settings.lsd` is off)
        self.mdns: MdnsService | None = None  # libp2p mDNS (None when off, on loopback, or without multicast)
        self.state: State | None = None  # HOME/state.sqlite (opened at start): every store is a schema of it
        self.peers: PeerStore  # the peer store (made at start): what the node knows of secure-layer peers
        self.peer_records: PeerRecords | None = None  # signed peer records in the DHT (None when the DHT is off)
        self.relay_server: RelayServer | None = None  # Circuit Relay v2 hop server (when `settings.relay_server`)
        self.relay_client: RelayClient | None = None  # reservations on relays and the stop protocol (made at start)
        self.hole_puncher: HolePuncher | None = None  # DCUtR: relayed connections upgraded (when `hole_punch`)
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Build the shared parts and start the services; on any failure, undo what was done and raise."""
        async with contextlib.AsyncExitStack() as stack:
            await self._start(stack)
            self._stack = stack.pop_all()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        state = self.state = State(self.home / "state.sqlite")  # first: a bad home fails here
        stack.callback(state.close)
        self.engine.resume = ResumeStore(state)
        workers = self.workers = WorkerPool(self.settings.hash_threads)
        stack.callback(workers.close)
        self.identity = await self.run_blocking(Identity.load_or_create, self.home)
        secure_host = self.secure_host = Host(self.identity, agent_version=self.client_name)
        stack.push_async_callback(secure_host.close)
        # the BitTorrent port first: the DHT takes its number and LSD announces it
        stack.push_async_callback(self.engine.close_listener)
        await self.engine.listen(self.host, self.requested_port)
        family = "ip6" if ":" in self.host else "ip4"
        try:
            await secure_host.listen(f"/{family}/{self.host}/tcp/{self.settings.secure_port}")
        except OSError as exc:
            raise PeerloomError(f"cannot listen on {self.host}:{self.settings.secure_port}: {exc.strerror}") from exc
        if self.settings.dht:
            await self._start_dht(stack)
        if self.settings.utp:  # on the DHT's socket when it has the BitTorrent port's number (libtorrent's way)
            await self.engine.listen_utp(self.host, self.dht)
            stack.callback(self.engine.close_utp)
        if self.settings.lsd:
            await self._start_lsd(stack)
        await self._start_peer_store(stack)
        if self.settings.mdns:
            await self._start_mdns(stack)
        await self._start_relay(stack)
        for service in self.services:
            await self._start_service(stack, service)

    async def _start_service(self, stack: contextlib.AsyncExitStack, service: Service) -> None:
        """Start one service with its own context and route its protocols to it. Its stop and the cancelling of its
        tasks go on the stack before it starts: a start that fails part way is stopped too."""
        assert self.workers is not None and self.state is not None
        tasks = ServiceTasks(service.name)
        stack.push_async_callback(tasks.close)
        stack.push_async_callback(service.stop)
        ctx = NodeContext(identity=self.identity, settings=self.settings, home=self.home, host=self.secure_host,
                          workers=self.workers, dht=self.dht, lsd=self.lsd, state=self.state, tasks=tasks,
                          peers=self.peers)
        try:
            await service.start(ctx)
        except Exception as exc:
            raise ServiceStartError(f"service {service.name} failed to start: {exc}") from exc
        limited = getattr(service, "limited_protocols", ())  # those it serves over relayed connections too
        for protocol in service.protocols:
            self.secure_host.set_handler(protocol, functools.partial(service.handle, protocol=protocol),
                                         admits=service.admits, limited=protocol in limited)
            stack.callback(self.secure_host.remove_handler, protocol)

    async def _start_dht(self, stack: contextlib.AsyncExitStack) -> None:
        """The DHT on UDP (the BitTorrent port's number unless told otherwise), its table kept in the home; it joins
        through the saved nodes, then the configured bootstrap nodes. The public routers serve only when none are
        configured, and never a node on loopback (it could not reach them)."""
        from peerloom.dht.driver import PUBLIC_BOOTSTRAP, Dht  # loaded only by nodes that run it

        settings = self.settings
        public = settings.public_bootstrap and not _is_loopback(self.host)
        bootstrap = list(settings.bootstrap) or (list(PUBLIC_BOOTSTRAP) if public else [])
        host, host6 = self.host, None
        if self.engine.dual_stack:  # BEP 32: a node that takes IPv4 and IPv6 peers joins both DHTs
            host, host6 = "0.0.0.0", "::"
        elif settings.dht_ipv6 and ":" not in self.host:
            host6 = "::1" if self.host.startswith("127.") else "::"
        dht = Dht(state=self.state)
        stack.push_async_callback(dht.close)
        try:
            await dht.start(settings.dht_port or self.port, host, bootstrap=bootstrap, host6=host6)
        except OSError as exc:
            raise PeerloomError(f"cannot start the DHT on {self.host}: {exc.strerror}") from exc
        self.dht = dht

    async def _start_lsd(self, stack: contextlib.AsyncExitStack) -> None:
        """Local service discovery on the interface the node listens on (the default one when it listens on all),
        over each address family the BitTorrent port takes (BEP 14's IPv4 and IPv6 groups), announcing the engine's
        public torrents and handing it the LAN peers of theirs."""
        from peerloom.discovery.lsd import LSD_GROUP, LSD_GROUP6
        from peerloom.discovery.lsd_driver import LsdGroups, LsdService  # loaded only by nodes that run it

        v4 = ":" not in self.host or self.engine.dual_stack
        # not on IPv6 loopback: Linux's lo carries no IPv6 multicast (IPv4's does, through 127.0.0.1)
        v6 = (":" in self.host and not _is_loopback(self.host)) or self.engine.dual_stack
        groups: list[tuple[str, str]] = []
        if v4:
            groups.append(("0.0.0.0" if ":" in self.host or not self.host else self.host, LSD_GROUP))
        if v6:
            groups.append(("", LSD_GROUP6))
        started = []
        for interface, group in groups:
            lsd = LsdService(self.port, self.engine.local_hashes, self.engine.local_peer, interface=interface,
                             group=group, group_port=self.settings.lsd_port, interval=self.settings.lsd_interval)
            try:
                await lsd.start()
            except PeerloomError as exc:  # a host without multicast still runs; it only misses LAN peers
                # many hosts have no IPv6 multicast route: only a failed IPv4 group is worth a warning
                log.log(logging.WARNING if group == LSD_GROUP else logging.INFO, "%s", exc)
                continue
            stack.push_async_callback(lsd.close)
            started.append(lsd)
        if started:
            self.lsd = LsdGroups(started)

    async def _start_peer_store(self, stack: contextlib.AsyncExitStack) -> None:
        """The peer store, loaded from the state database, fed by the host's peer events and saved by its keeper.
        With the DHT on, `peer_records` resolves other nodes' signed peer records, and publishes ours unless
        `settings.peer_records` is off."""
        assert self.state is not None
        peers = self.peers = await self.run_blocking(PeerStore, self.state)
        keeper = PeerStoreKeeper(peers, self.secure_host, self.run_blocking)
        stack.push_async_callback(keeper.close)
        await keeper.start()
        if self.dht is not None:
            from peerloom.discovery.peer_record_driver import PeerRecords

            records = PeerRecords(self.identity, self.dht, peers, lambda: self.secure_addrs,
                                  publish=self.settings.peer_records)
            stack.push_async_callback(records.close)
            await records.start()
            self.peer_records = records

    async def _start_mdns(self, stack: contextlib.AsyncExitStack) -> None:
        """libp2p mDNS: advertise the secure layer's addresses on the LAN and dial the peers found there (a few at a
        time, each at most once a minute, none already connected). Not on a node listening on loopback only: LAN
        peers could not dial it, and nodes of tests on loopback must not find each other by surprise."""
        if _is_loopback(self.host):
            return
        from peerloom.discovery.mdns import MdnsDialer, MdnsService  # loaded only by nodes that run it

        host = self.secure_host
        dialer = MdnsDialer(host.connect, lambda peer: peer in host.connections)
        stack.push_async_callback(dialer.close)
        peers = self.peers

        def found(peer: PeerId, addrs: list[Multiaddr], source: str) -> None:
            peers.add_addrs(peer, addrs, source, time.time())
            dialer.offer(peer, addrs, source)

        mdns = MdnsService(host.peer_id, lambda: host.listen_addrs, found, host=self.host)
        try:
            await mdns.start()
        except PeerloomError as exc:  # a host without multicast still runs; it only misses LAN peers
            log.warning("%s", exc)
            return
        stack.push_async_callback(mdns.close)
        self.mdns = mdns

    async def _start_relay(self, stack: contextlib.AsyncExitStack) -> None:
        """Circuit Relay v2 (see `peerloom.net.relay`): the relay server when `settings.relay_server`; the stop side
        always (a peer reachable only through relays needs it), holding a reservation on each of `settings.relays`."""
        from peerloom.net.relay.client import RelayClient
        from peerloom.net.relay.reservations import RelayLimits
        from peerloom.net.relay.server import RelayServer

        if self.settings.relay_server:
            limits = RelayLimits(circuit_duration=self.settings.relay_circuit_seconds,
                                 circuit_data=self.settings.relay_circuit_bytes)
            server = self.relay_server = RelayServer(self.secure_host, limits)
            server.start()
            stack.push_async_callback(server.close)
        client = self.relay_client = RelayClient(self.secure_host)
        client.start()
        stack.push_async_callback(client.close)
        for relay in self.settings.relays:
            client.keep(relay)
        if self.settings.hole_punch:
            from peerloom.net.nat.dcutr_driver import HolePuncher

            puncher = self.hole_puncher = HolePuncher(self.secure_host)
            puncher.start()
            stack.push_async_callback(puncher.close)

    async def stop(self) -> None:
        """Stop the services in reverse order, then close what they shared."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # -- blocking work -------------------------------------------------------------------------
    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in one of the node's worker threads (the loop's default executor before they exist)."""
        if self.workers is None:
            return await self.engine.run_blocking(fn, *args)
        return await self.workers.submit(fn, *args)

    # -- the BitTorrent engine, for the CLI, the daemon and Python users ----------------------
    @property
    def port(self) -> int:
        """The plain BitTorrent TCP port (0 before the node starts)."""
        return self.engine.port

    @property
    def peer_id(self) -> bytes:
        return self.engine.peer_id

    @property
    def torrents(self) -> dict[str, Torrent]:
        return self.engine.torrents

    @property
    def resume(self) -> ResumeStore:
        return self.engine.resume

    @property
    def download_bucket(self) -> TokenBucket:
        return self.engine.download_bucket

    @property
    def upload_bucket(self) -> TokenBucket:
        return self.engine.upload_bucket

    @property
    def tracker_client(self) -> TrackerClient:
        return self.engine.tracker_client

    async def add(self, source: str | Path | Metainfo | Magnet, save: str | Path = ".", **options: Any) -> Torrent:
        """Add a torrent and start it: see `BitTorrentEngine.add` for the options. Secure-layer peers given by the
        user (`peers=[Multiaddr]`) go to the peer store as "user" addresses."""
        for peer in options.get("peers") or ():
            if isinstance(peer, Multiaddr) and peer.peer_id is not None:
                self.peers.add_addrs(peer.peer_id, [peer], "user", time.time())
        return await self.engine.add(source, save, **options)

    async def share(self, path: str | Path, **options: Any) -> Torrent:
        """Make a torrent of a file or folder and seed it from where it is: see `BitTorrentEngine.share`."""
        return await self.engine.share(path, **options)

    async def remove(self, torrent: Torrent, *, delete_data: bool = False) -> None:
        await self.engine.remove(torrent, delete_data=delete_data)

    def torrent_for_hash(self, info_hash: bytes) -> Torrent | None:
        return self.engine.torrent_for_hash(info_hash)

    def is_banned(self, address: tuple[str, int], peer_id: bytes | None = None) -> bool:
        return self.engine.is_banned(address, peer_id)

    # -- the secure layer ----------------------------------------------------------------------
    @property
    def secure_addrs(self) -> list[Multiaddr]:
        """Where the secure layer listens, each ending in this node's /p2p/ PeerId."""
        return self.secure_host.listen_addrs

    @property
    def secure_port(self) -> int | None:
        """The secure layer's TCP port (None before it listens)."""
        addrs = self.secure_addrs
        return int(addrs[0].value_for("tcp") or 0) if addrs else None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"

