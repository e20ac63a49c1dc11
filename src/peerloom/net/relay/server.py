"""The relay's side of Circuit Relay v2 (the hop protocol), the asyncio driver around `RelayTable`.

RESERVE: a peer connected directly (never over another relay) gets or refreshes its reservation, with our public
addresses and a voucher signed by our key (spec "Reservation"). CONNECT: when the destination holds a reservation
and the caps allow, we open a stop stream to it, pass the source's id and the limit, and on its OK answer the
source OK; from then on the two streams are spliced, each direction cut after `circuit_data` bytes and both after
`circuit_duration` seconds (spec: "the relay MUST close the connection once the limit is reached").
A reservation ends when it expires or when the reserving peer's connection to us closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from peerloom.codec.multiaddr import Multiaddr
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.host import Host, PeerDisconnected, PeerEvent
from peerloom.net.relay.messages import (
    HOP_PROTOCOL,
    STOP_PROTOCOL,
    HopMessage,
    HopType,
    Limit,
    RelayMessageError,
    RelayPeer,
    Reservation,
    Status,
    StopMessage,
    StopType,
    decode_hop,
    decode_stop,
    encode_hop,
    encode_stop,
    sign_voucher,
)
from peerloom.net.relay.reservations import RelayLimits, RelayTable
from peerloom.net.relay.wire import read_message
from peerloom.net.stream import Stream, StreamError

log = logging.getLogger(__name__)
PIPE_CHUNK = 256 * 1024


class RelayServer:
    """Serves the hop protocol on `host` (see the module docstring). `start()` registers it; `close()` ends it."""

    def __init__(self, host: Host, limits: RelayLimits | None = None) -> None:
        self.host = host
        self.table = RelayTable(limits or RelayLimits())
        self.relayed_bytes = 0  # bytes spliced, both directions, all circuits (for the status view and benches)
        self._circuits: set[asyncio.Task] = set()
        self._unsubscribe = None

    @property
    def limits(self) -> RelayLimits:
        return self.table.limits

    def start(self) -> None:
        self.host.set_handler(HOP_PROTOCOL, self.handle_hop)
        self._unsubscribe = self.host.subscribe(self._on_peer_event)

    async def close(self) -> None:
        self.host.remove_handler(HOP_PROTOCOL)
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in list(self._circuits):
            task.cancel()
        await asyncio.gather(*self._circuits, return_exceptions=True)

    def _on_peer_event(self, event: PeerEvent) -> None:
        if isinstance(event, PeerDisconnected):
            self.table.remove(event.peer)

    async def handle_hop(self, stream: Stream) -> None:
        try:
            request = await read_message(stream, decode_hop)
        except RelayMessageError:
            await self._answer(stream, Status.MALFORMED_MESSAGE)
            return
        if request.type is HopType.RESERVE:
            await self._reserve(stream)
        elif request.type is HopType.CONNECT and request.peer is not None:
            await self._connect(stream, request.peer.peer)
        else:
            await self._answer(stream, Status.UNEXPECTED_MESSAGE if request.type is HopType.STATUS
                               else Status.MALFORMED_MESSAGE)

    async def _answer(self, stream: Stream, status: Status, **fields: object) -> None:
        await stream.write(encode_hop(HopMessage(HopType.STATUS, status=status, **fields)))  # type: ignore[arg-type]
        await stream.close()

    async def _reserve(self, stream: Stream) -> None:
        conn = stream.connection
        peer = stream.remote_peer
        address = conn.remote_address
        if getattr(conn, "limited", False) or address is None:
            await self._answer(stream, Status.PERMISSION_DENIED)  # spec: no reservation over a relayed connection
            return
        now = time.monotonic()
        status, expires = self.table.reserve(peer, address[0], now)
        if status is not Status.OK:
            await self._answer(stream, status)
            return
        expire = int(time.time() + (expires - now))
        addrs = tuple(a.without_p2p() for a in self.host.listen_addrs if a.value_for("p2p-circuit") is None)
        addrs = tuple(Multiaddr(f"{a}/p2p/{self.host.peer_id}") for a in addrs)
        voucher = sign_voucher(self.host.identity, peer, expire)
        await self._answer(stream, Status.OK, reservation=Reservation(expire, addrs, voucher), limit=self.limits.limit)

    async def _connect(self, stream: Stream, target: PeerId) -> None:
        source = stream.remote_peer
        if getattr(stream.connection, "limited", False):
            await self._answer(stream, Status.PERMISSION_DENIED)  # no relaying over relays
            return
        status = self.table.open_circuit(source, target, time.monotonic())
        if status is not Status.OK:
            await self._answer(stream, status)
            return
        try:
            try:
                stop = await self._stop_connect(source, target)
            except (PeerloomError, TimeoutError, StreamError) as exc:
                log.debug("relay: cannot reach %s for %s: %r", target, source, exc)
                await self._answer(stream, Status.CONNECTION_FAILED)
                return
            await stream.write(encode_hop(HopMessage(HopType.STATUS, status=Status.OK, limit=self.limits.limit)))
            task = asyncio.current_task()
            assert task is not None
            self._circuits.add(task)
            try:
                await self._splice(stream, stop)
            finally:
                self._circuits.discard(task)
        finally:
            self.table.close_circuit(source, target)

    async def _stop_connect(self, source: PeerId, target: PeerId) -> Stream:
        """The stop stream to `target`, once it accepted the circuit from `source`."""
        stop = await self.host.new_stream(target, [STOP_PROTOCOL])
        try:
            await stop.write(encode_stop(StopMessage(StopType.CONNECT, peer=RelayPeer(source),
                                                     limit=self.limits.limit)))
            answer = await read_message(stop, decode_stop)
            if answer.type is not StopType.STATUS or answer.status is not Status.OK:
                raise RelayMessageError(f"{target} answered stop CONNECT with {answer.status}")
        except BaseException:
            stop.reset()
            raise
        return stop

    async def _splice(self, a: Stream, b: Stream) -> None:
        """Copy both ways until both ends closed, a direction passed its byte limit, or time ran out."""
        limit: Limit = self.limits.limit
        duration = limit.duration or None
        pumps = [asyncio.ensure_future(self._pump(src, dst, limit.data)) for src, dst in ((a, b), (b, a))]
        try:
            async with asyncio.timeout(duration):
                done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
                await asyncio.gather(*pumps)
        except (TimeoutError, StreamError, _LimitReached) as exc:
            log.debug("relay: circuit %s -> %s cut: %r", a.remote_peer, b.remote_peer, exc)
            a.reset()
            b.reset()
        finally:
            for task in pumps:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, src: Stream, dst: Stream, cap: int) -> None:
        sent = 0
        while data := await src.read(PIPE_CHUNK):
            sent += len(data)
            if cap and sent > cap:
                raise _LimitReached(f"more than {cap} bytes in one direction")
            await dst.write(data)
            self.relayed_bytes += len(data)
        await dst.close()


class _LimitReached(Exception):
    """A direction of a circuit passed its byte limit."""
