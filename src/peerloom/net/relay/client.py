"""The reachable-through-a-relay side of Circuit Relay v2: reservations (hop RESERVE) and the stop protocol.

`RelayClient.reserve(addr)` reserves a slot on the relay at `addr` (spec "Reservation"), checks its voucher (signed
by that relay, for us), announces `ADDR/p2p-circuit` among the host's listen addresses, and `keep(addr)` refreshes
the reservation before it expires (and again after a failure, backing off), until `close()`. When a relay we hold a
reservation on opens a stop stream (spec "Stop protocol"), we answer OK and run a limited secure connection over it
as the responder (`Host.upgrade_stream`). Stop streams from other peers are refused (`na`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from peerloom.codec.multiaddr import Multiaddr
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.connection import LinkError
from peerloom.net.host import Host
from peerloom.net.relay.messages import (
    HOP_PROTOCOL,
    STOP_PROTOCOL,
    HopMessage,
    HopType,
    Limit,
    RelayMessageError,
    Status,
    StopMessage,
    StopType,
    decode_hop,
    decode_stop,
    encode_hop,
    encode_stop,
    open_voucher,
)
from peerloom.net.relay.wire import RelayRefused, read_message
from peerloom.net.stream import Stream

log = logging.getLogger(__name__)
REFRESH_MARGIN = 0.25  # refresh once three quarters of the reservation's life have passed
RETRY_MIN, RETRY_MAX = 5.0, 300.0


@dataclass(frozen=True)
class HeldReservation:
    relay: PeerId
    circuit_addr: Multiaddr  # what we announce: the relay's address + /p2p-circuit
    expire: int  # unix seconds
    limit: Limit | None


class RelayClient:
    """Reservations on relays and the stop protocol, on `host` (see the module docstring)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.reservations: dict[PeerId, HeldReservation] = {}
        self._keepers: dict[Multiaddr, asyncio.Task] = {}

    def start(self) -> None:
        self.host.set_handler(STOP_PROTOCOL, self.handle_stop, admits=lambda peer, _: peer in self.reservations)

    async def close(self) -> None:
        self.host.remove_handler(STOP_PROTOCOL)
        for task in self._keepers.values():
            task.cancel()
        await asyncio.gather(*self._keepers.values(), return_exceptions=True)
        self._keepers.clear()
        for held in self.reservations.values():
            self.host.remove_listen_addr(held.circuit_addr)
        self.reservations.clear()

    async def reserve(self, relay_addr: Multiaddr | str) -> HeldReservation:
        """Reserve (or refresh) a slot on the relay at `relay_addr` (which must end in /p2p/RELAY)."""
        addr = Multiaddr(relay_addr) if isinstance(relay_addr, str) else relay_addr
        relay = addr.peer_id
        if relay is None or addr.value_for("p2p-circuit") is not None:
            raise LinkError(f"{addr}: a relay's address must be direct and end in /p2p/RELAY")
        stream = await self.host.new_stream(addr, [HOP_PROTOCOL])
        try:
            await stream.write(encode_hop(HopMessage(HopType.RESERVE)))
            answer = await read_message(stream, decode_hop)
        finally:
            await stream.close()
        if answer.type is not HopType.STATUS:
            raise RelayMessageError(f"relay answered RESERVE with {answer.type.name}")
        if answer.status is not Status.OK or answer.reservation is None:
            status = answer.status or Status.UNUSED
            raise RelayRefused(f"relay {relay} refused our reservation: {status.name}", status)
        rsvp = answer.reservation
        if rsvp.voucher:
            voucher = open_voucher(rsvp.voucher)
            if voucher.relay != relay or voucher.peer != self.host.peer_id:
                raise RelayMessageError("the relay's voucher names another relay or peer")
        held = HeldReservation(relay, addr.encapsulate("/p2p-circuit"), rsvp.expire, answer.limit)
        self.reservations[relay] = held
        self.host.add_listen_addr(held.circuit_addr)
        return held

    def keep(self, relay_addr: Multiaddr | str) -> None:
        """Hold a reservation on that relay from now on: reserve, refresh before expiry, retry after failures."""
        addr = Multiaddr(relay_addr) if isinstance(relay_addr, str) else relay_addr
        if addr not in self._keepers:
            self._keepers[addr] = asyncio.ensure_future(self._keep(addr))

    async def _keep(self, addr: Multiaddr) -> None:
        retry = RETRY_MIN
        while True:
            try:
                held = await self.reserve(addr)
                retry = RETRY_MIN
                wait = max(RETRY_MIN, (held.expire - time.time()) * (1 - REFRESH_MARGIN))
            except (PeerloomError, TimeoutError) as exc:
                log.info("reservation on %s failed: %s", addr, exc)
                self._forget(addr.peer_id)
                wait, retry = retry, min(retry * 2, RETRY_MAX)
            await self._wait_or_disconnect(addr.peer_id, wait)

    async def _wait_or_disconnect(self, relay: PeerId | None, wait: float) -> None:
        """Sleep `wait` seconds, waking early (to reserve again) when the connection to the relay closes."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            if relay is not None and relay in self.reservations and relay not in self.host.connections:
                self._forget(relay)
                return

    def _forget(self, relay: PeerId | None) -> None:
        held = self.reservations.pop(relay, None) if relay is not None else None
        if held is not None:
            self.host.remove_listen_addr(held.circuit_addr)

    async def handle_stop(self, stream: Stream) -> None:
        """A relay connects a peer to us: accept, then run the secure connection (we are the responder)."""
        relay = stream.remote_peer
        try:
            request = await read_message(stream, decode_stop)
        except RelayMessageError:
            await stream.write(encode_stop(StopMessage(StopType.STATUS, status=Status.MALFORMED_MESSAGE)))
            await stream.close()
            return
        if request.type is not StopType.CONNECT or request.peer is None:
            await stream.write(encode_stop(StopMessage(StopType.STATUS, status=Status.UNEXPECTED_MESSAGE)))
            await stream.close()
            return
        await stream.write(encode_stop(StopMessage(StopType.STATUS, status=Status.OK)))
        with contextlib.suppress(LinkError):  # a failed handshake closes that connection only
            await self.host.upgrade_stream(stream, initiator=False, expected_peer=request.peer.peer, relay=relay)
