"""The node as a host of services: admission per protocol, a service registered from outside, a failed start."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest
from support.swarm import fast_settings, make_single, node

from peerloom.errors import PeerloomError
from peerloom.identity import Identity, PeerId
from peerloom.net.connection import PeerRefused
from peerloom.net.host import Host
from peerloom.net.stream import Stream
from peerloom.node import Node, ServiceStartError
from peerloom.service import NodeContext
from peerloom.torrent.engine import BITTORRENT_PROTOCOL

pytestmark = pytest.mark.timeout(120)
ECHO = "/peerloom-test/echo/1.0.0"


class EchoService:
    """A toy service: echoes what a stream sends, to the peers `allowed` names (everyone when None)."""

    name = "echo"
    protocols = (ECHO,)

    def __init__(self, allowed: set[PeerId] | None = None) -> None:
        self.allowed = allowed
        self.ctx: NodeContext | None = None
        self.stopped = False
        self.background: asyncio.Task[None] | None = None

    async def start(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.background = ctx.tasks.spawn(asyncio.sleep(3600), name="echo idle")

    async def handle(self, stream: Stream, protocol: str) -> None:
        assert protocol == ECHO
        while data := await stream.read():
            await stream.write(data)
        await stream.close()

    def admits(self, peer: PeerId, protocol: str) -> bool:
        return self.allowed is None or peer in self.allowed

    async def stop(self) -> None:
        self.stopped = True


async def echo_once(host: Host, addr: object, payload: bytes) -> bytes:
    stream = await host.new_stream(addr, [ECHO])  # type: ignore[arg-type]
    await stream.write(payload)
    await stream.close()
    received = b""
    while chunk := await stream.read():
        received += chunk
    return received


async def test_a_private_torrent_leaves_ping_and_identify_open_and_gates_bittorrent_only(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src")
    friend_identity, stranger_identity = Identity.generate(), Identity.generate()
    async with node(tmp_path, "seed") as seeder, Host(stranger_identity) as stranger, Host(friend_identity) as friend:
        await seeder.share(data, allow=[friend_identity.peer_id])
        addr = seeder.secure_addrs[0]
        assert await stranger.ping(addr)  # ping is served to a key no private swarm allows...
        info = await stranger.identify(seeder.identity.peer_id)  # ...and so is identify, which lists the protocol
        assert BITTORRENT_PROTOCOL in info.protocols and info.agent_version.startswith("peerloom/")
        with pytest.raises(PeerRefused) as refused:  # ...which that key is refused with `na`
            await stranger.new_stream(addr, [BITTORRENT_PROTOCOL])
        assert str(stranger_identity.peer_id) in str(refused.value)
        assert await stranger.ping(seeder.identity.peer_id)  # the connection lives on
        stream = await friend.new_stream(addr, [BITTORRENT_PROTOCOL])  # an allowed key is served
        assert stream.protocol == BITTORRENT_PROTOCOL
        stream.reset()


async def test_a_service_registered_from_outside_is_reachable_and_decides_who_it_admits(tmp_path: Path) -> None:
    allowed, refused_identity = Identity.generate(), Identity.generate()
    service = EchoService({allowed.peer_id})
    home = tmp_path / "home-echo"
    async with Node(home, host="127.0.0.1", settings=fast_settings(), services=[service]) as server:
        assert service.ctx is not None and service.ctx.identity.peer_id == server.identity.peer_id
        assert service.ctx.host is server.secure_host and service.ctx.workers is not None
        addr = server.secure_addrs[0]
        async with node(tmp_path, "client") as other, Host(refused_identity) as refused:
            events: list[object] = []
            unsubscribe = other.secure_host.subscribe(events.append)
            await other.secure_host.connect(addr)
            info = await other.secure_host.identify(server.identity.peer_id)
            assert ECHO in info.protocols
            unsubscribe()
            kinds = [type(e).__name__ for e in events]
            assert kinds[:2] == ["PeerConnected", "PeerIdentified"], kinds
            with pytest.raises(PeerRefused):  # a node the rule does not admit is refused...
                await echo_once(other.secure_host, addr, b"hello")
            with pytest.raises(PeerRefused):
                await echo_once(refused, addr, b"hello")
            async with Host(allowed) as admitted:  # ...one it admits gets the echo
                assert await echo_once(admitted, addr, b"hello, service") == b"hello, service"
        background = service.background
    assert service.stopped and background is not None and background.cancelled()


def _open_files() -> list[str]:
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return links


def _listening_ports() -> set[tuple[str, int]]:
    """(table, local port) of each TCP and UDP socket this process has open."""
    inodes = {link[len("socket:["):-1] for link in _open_files() if link.startswith("socket:[")}
    ports: set[tuple[str, int]] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6", "/proc/self/net/udp", "/proc/self/net/udp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add((table, int(fields[1].rsplit(":", 1)[1], 16)))
    return ports


def _threads() -> set[threading.Thread]:
    """Live threads but the event loop's default executor (the loop's, not the node's: getaddrinfo runs there)."""
    return {t for t in threading.enumerate() if not t.name.startswith("asyncio_")}


def _state_files() -> list[str]:
    return [link for link in _open_files() if "state.sqlite" in link]


class FailingService(EchoService):
    """Starts a task, looks at what the node holds open at that moment, then fails."""

    name = "boom"
    protocols = ("/peerloom-test/boom/1.0.0",)
    seen: tuple[set[threading.Thread], list[str], set[tuple[str, int]]] = (set(), [], set())

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        self.seen = (_threads(), _state_files(), _listening_ports())
        raise RuntimeError("cannot open the widget")


async def test_a_service_that_fails_to_start_leaves_nothing_behind(tmp_path: Path) -> None:
    threads_before, tasks_before, ports_before = _threads(), asyncio.all_tasks(), _listening_ports()
    first, failing = EchoService(), FailingService()
    settings = fast_settings(dht=True, lsd=False, bootstrap=[("127.0.0.1", 9)])
    server = Node(tmp_path / "home-boom", host="127.0.0.1", settings=settings, services=[first, failing])
    with pytest.raises(ServiceStartError) as failed:
        await server.start()
    assert isinstance(failed.value, PeerloomError)
    assert str(failed.value) == "service boom failed to start: cannot open the widget"
    threads_then, state_then, ports_then = failing.seen  # (the checks below can see what they look for)
    assert any(t.name.startswith("peerloom-io") for t in threads_then - threads_before)
    assert state_then and len(ports_then - ports_before) >= 3  # BitTorrent and secure TCP, DHT UDP
    assert first.stopped and failing.stopped  # what started is stopped, in reverse
    assert first.background is not None and first.background.cancelled()
    assert failing.background is not None and failing.background.cancelled()
    assert _threads() == threads_before  # worker threads joined
    assert asyncio.all_tasks() == tasks_before | {asyncio.current_task()}
    assert not [f for f in _state_files() if f.startswith(str(tmp_path))]  # SQLite closed
    assert _listening_ports() == ports_before  # sockets closed
