"""The dialler the node hands mDNS's peers to: bounded concurrency, once per peer per `retry_after`, never a peer
already connected, addresses tried in order with the peer's /p2p/ appended, dials cancelled at close."""

from __future__ import annotations

import asyncio

from peerloom.codec.multiaddr import Multiaddr
from peerloom.discovery.mdns import MdnsDialer
from peerloom.identity import Identity, PeerId
from peerloom.net.connection import LinkError

PEERS = [PeerId.from_public_key(Identity.generate().public_key) for _ in range(6)]
A1, A2 = Multiaddr("/ip4/10.0.0.1/tcp/1"), Multiaddr("/ip4/10.0.0.2/tcp/2")
RESET = Multiaddr("/ip4/10.0.0.3/tcp/3")


class FakeHost:
    """Records each dial; a dial to a refused address fails, others wait for `release` when it is given."""

    def __init__(self, refused: frozenset[Multiaddr] = frozenset(), release: asyncio.Event | None = None) -> None:
        self.refused = refused
        self.release = release
        self.dials: list[Multiaddr] = []
        self.connected: set[PeerId] = set()
        self.in_flight = 0
        self.most_in_flight = 0

    async def connect(self, addr: Multiaddr) -> None:
        self.dials.append(addr)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if addr.without_p2p() in self.refused:
                raise LinkError(f"cannot reach {addr}")
            if addr.without_p2p() == RESET:
                raise ConnectionResetError("reset during the handshake")
            if self.release is not None:
                await self.release.wait()
            assert addr.peer_id is not None
            self.connected.add(addr.peer_id)
        finally:
            self.in_flight -= 1


def dialer_for(host: FakeHost, **options: float) -> MdnsDialer:
    return MdnsDialer(host.connect, lambda peer: peer in host.connected, **options)  # type: ignore[arg-type]


async def settle(dialer: MdnsDialer) -> None:
    while dialer.dialling:
        await asyncio.gather(*dialer.dialling.values())


async def test_a_found_peer_is_dialled_at_its_first_address_that_answers() -> None:
    host = FakeHost(refused=frozenset({A1}))
    dialer = dialer_for(host)
    dialer.offer(PEERS[0], [A1, A2], "mdns")
    await settle(dialer)
    assert host.dials == [A1.encapsulate(f"/p2p/{PEERS[0]}"), A2.encapsulate(f"/p2p/{PEERS[0]}")]
    assert PEERS[0] in host.connected and (dialer.dialled, dialer.failed) == (1, 0)
    dialer.offer(PEERS[0], [A1, A2], "mdns")  # connected now: not dialled again
    dialer.offer(PEERS[1], [A1, RESET], "mdns")  # a refused address, one that resets: one failed dial
    await settle(dialer)
    assert len(host.dials) == 4 and (dialer.dialled, dialer.failed) == (1, 1)


async def test_at_most_max_dials_at_once_and_the_waiting_queue_is_bounded() -> None:
    release = asyncio.Event()
    host = FakeHost(release=release)
    dialer = dialer_for(host, max_dials=2, max_waiting=3)
    for peer in PEERS:
        dialer.offer(peer, [A1])
    await asyncio.sleep(0)
    assert len(dialer.dialling) == 2 and list(dialer.waiting) == PEERS[3:]  # the oldest waiting one was dropped
    release.set()
    await settle(dialer)
    assert host.most_in_flight == 2
    assert host.connected == {PEERS[0], PEERS[1], *PEERS[3:]}


async def test_a_peer_is_tried_at_most_once_per_retry_after() -> None:
    host = FakeHost(refused=frozenset({A1}))
    dialer = dialer_for(host, retry_after=0.2)
    dialer.offer(PEERS[0], [A1])
    await settle(dialer)
    dialer.offer(PEERS[0], [A1])
    await settle(dialer)
    assert len(host.dials) == 1
    await asyncio.sleep(0.25)
    dialer.offer(PEERS[0], [A1])
    await settle(dialer)
    assert len(host.dials) == 2 and dialer.failed == 2


async def test_close_cancels_the_dials_under_way() -> None:
    host = FakeHost(release=asyncio.Event())
    dialer = dialer_for(host, max_dials=1)
    dialer.offer(PEERS[0], [A1])
    dialer.offer(PEERS[1], [A1])
    await asyncio.sleep(0)
    tasks = list(dialer.dialling.values())
    await dialer.close()
    assert all(task.cancelled() for task in tasks)
    assert not dialer.dialling and not dialer.waiting and host.in_flight == 0 and not host.connected
