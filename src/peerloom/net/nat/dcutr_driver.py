"""DCUtR's asyncio driver (`peerloom.net.nat.dcutr` holds the protocol): upgrades relayed connections to direct
ones by TCP hole punching.

`HolePuncher(host).start()` serves `/libp2p/dcutr` (on limited connections: that is where it runs) and, when a
relayed connection we *accepted* (we are B) has been identified, runs the exchange as B, up to MAX_ATTEMPTS times.
Dials go through `Host.punch` (from our listening port, with the DCUtR role for the secure handshake); success is a
direct connection to the peer, which replaces the relayed one in the host.

The addresses we offer: our TCP listen addresses, and each address other peers observed us at (identify) with our
listening port in place of the observed one, since punches dial from the listening port (a port-preserving cone NAT
maps it to the same number).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from peerloom.codec.multiaddr import Multiaddr
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.connection import LinkError
from peerloom.net.host import Host, PeerEvent, PeerIdentified
from peerloom.net.nat.dcutr import (
    DCUTR_PROTOCOL,
    MAX_ATTEMPTS,
    DcutrError,
    Initiator,
    Responder,
    decode_hole_punch,
)
from peerloom.net.relay.wire import read_message
from peerloom.net.stream import Stream, StreamError

log = logging.getLogger(__name__)
EXCHANGE_TIMEOUT = 10.0
UPGRADE_WAIT = 5.0  # after the dials: how long the peer's SYN may still take to give a direct connection
RETRY_PAUSE = 1.0


class HolePuncher:
    """DCUtR on `host` (see the module docstring). `announce`: more addresses to offer (known public ones, or
    `/dns4/localhost/tcp/PORT` for js-libp2p on loopback). Counters for status views and tests: `attempts` (exchanges
    we started, as B), `answered` (exchanges we answered up to SYNC, as A), `upgraded` (direct connections that
    followed our dials)."""

    def __init__(self, host: Host, announce: Iterable[Multiaddr] = ()) -> None:
        self.host = host
        self.announce = list(announce)
        self.attempts = 0
        self.answered = 0
        self.upgraded = 0
        self._tasks: set[asyncio.Task] = set()
        self._running: set[PeerId] = set()
        self._unsubscribe = None

    def start(self) -> None:
        self.host.set_handler(DCUTR_PROTOCOL, self.handle, limited=True)
        self._unsubscribe = self.host.subscribe(self._on_peer_event)

    async def close(self) -> None:
        self.host.remove_handler(DCUTR_PROTOCOL)
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def own_addrs(self) -> list[Multiaddr]:
        """Where we offer to be dialled (see the module docstring)."""
        direct = [a.without_p2p() for a in self.host.listen_addrs if a.value_for("p2p-circuit") is None]
        ports = {("ip6" if a.value_for("ip6") is not None else "ip4"): a.value_for("tcp") for a in direct}
        found = [*direct, *(a for a in self.announce if a not in direct)]
        for observed in self.host.observed_addrs():
            for family in ("ip4", "ip6"):
                ip = observed.value_for(family)
                if ip is not None and ports.get(family):
                    addr = Multiaddr(f"/{family}/{ip}/tcp/{ports[family]}")
                    if addr not in found:
                        found.append(addr)
        return found

    def _on_peer_event(self, event: PeerEvent) -> None:
        if not isinstance(event, PeerIdentified):
            return
        conn = self.host.connections.get(event.peer)
        if conn is None or not conn.limited or conn.initiator or event.peer in self._running:
            return
        self._running.add(event.peer)
        task = asyncio.ensure_future(self._upgrade(event.peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._running.discard(event.peer))

    def _relayed(self, peer: PeerId) -> bool:
        conn = self.host.connections.get(peer)
        return conn is not None and not conn.closed and conn.limited

    async def _upgrade(self, peer: PeerId) -> None:
        """B's side: the exchange and the dials, retried."""
        for attempt in range(MAX_ATTEMPTS):
            if not self._relayed(peer):
                return
            if attempt:
                await asyncio.sleep(RETRY_PAUSE)
            self.attempts += 1
            try:
                stream = await self.host.new_stream(peer, [DCUTR_PROTOCOL], limited=True)
            except PeerloomError as exc:
                log.debug("DCUtR with %s: no stream: %s", peer, exc)
                return  # the peer does not speak DCUtR, or the relayed connection is gone
            try:
                exchange = Initiator(self.own_addrs())
                async with asyncio.timeout(EXCHANGE_TIMEOUT):
                    await stream.write(exchange.connect(time.monotonic()))
                    answer = await read_message(stream, decode_hole_punch, error=DcutrError)
                    sync, delay, addrs = exchange.on_connect(answer, time.monotonic())
                    await stream.write(sync)
                await stream.close()
            except (PeerloomError, TimeoutError) as exc:
                log.debug("DCUtR exchange with %s failed: %r", peer, exc)
                stream.reset()
                continue
            await asyncio.sleep(delay)
            if await self._dial(peer, addrs, initiator=False):
                return

    async def handle(self, stream: Stream) -> None:
        """A's side: answer CONNECT, wait for SYNC, dial at once."""
        peer = stream.remote_peer
        exchange = Responder(self.own_addrs())
        try:
            async with asyncio.timeout(EXCHANGE_TIMEOUT):
                connect = await read_message(stream, decode_hole_punch, error=DcutrError)
                reply = exchange.on_connect(connect)
                for addr in exchange.remote_addrs:  # B's SYN may reach our listener before SYNC reaches us
                    with contextlib.suppress(LinkError):
                        await self.host.expect_punch(addr, initiator=True)
                await stream.write(reply)
                addrs = exchange.on_sync(await read_message(stream, decode_hole_punch, error=DcutrError))
        except TimeoutError:
            stream.reset()
            return
        self.answered += 1
        with contextlib.suppress(StreamError):
            await stream.close()
        await self._dial(peer, addrs, initiator=True)

    async def _dial(self, peer: PeerId, addrs: list[Multiaddr], *, initiator: bool) -> bool:
        """Punch every address at once; True once a direct connection to `peer` is open (ours, or the peer's that
        our listener accepted)."""
        if not addrs:
            return False
        results = await asyncio.gather(*(self.host.punch(a, peer, initiator=initiator) for a in addrs),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, (LinkError, PeerloomError)):
                log.debug("DCUtR dial to %s: %r", peer, result)
        deadline = time.monotonic() + UPGRADE_WAIT
        while self._relayed(peer) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        conn = self.host.connections.get(peer)
        if conn is not None and not conn.closed and not conn.limited:
            self.upgraded += 1
            return True
        return False
