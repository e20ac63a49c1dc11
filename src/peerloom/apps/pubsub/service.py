"""The pub/sub service: the asyncio driver of the sans-I/O GossipSub router, and its Python API (`node.pubsub`).

    async with node.pubsub.subscribe("news") as sub:
        await node.pubsub.publish("news", b"hello")
        async for msg in sub: ...

The router (`router.GossipSub`) holds every protocol rule; this module only moves bytes and time in and events out,
in the shape of aioquic's asyncio protocol over its QUIC connection:
- per peer, one long-lived outbound stream carries our RPCs (libp2p pubsub spec, "The RPC": each peer keeps one
  stream for writing, and reads whatever streams the other side opened). It is opened when the host says a peer
  speaks a meshsub protocol (identify) or when the peer opens one to us; multistream-select picks the best protocol
  we share. Frames are an unsigned-varint length and an RPC; the length is checked against `RpcLimits.max_rpc_size`
  before the body is read, and an oversized one resets that stream alone.
- after every input (an RPC, a publish, a (un)subscribe, a validation result, the timer) the router's events are
  drained: RPCs to one peer in one drain go out as one write; a peer whose send queue passes its bound is dropped,
  so a slow reader never costs unbounded memory. Messages are handed to the local subscriptions' bounded queues (a
  full one drops, counted, and never holds up the router); validation asks the topic's validator (sync or async,
  with a timeout that answers IGNORE); dials suggested by peer exchange go through a bounded number of slots.
- one timer, re-armed from `next_wakeup()` after each drain, drives the heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable

from peerloom.apps.pubsub.params import GossipParams
from peerloom.apps.pubsub.rendezvous import PeerCallback, TopicRendezvous
from peerloom.apps.pubsub.router import Deliver, Dial, GossipSub, PublishResult, SendRpc, Validate, Validation
from peerloom.apps.pubsub.score import PeerScore, ScoreParams
from peerloom.apps.pubsub.subscription import PubsubMessage, PubSubStopped, Subscription
from peerloom.codec.varint import VarintError, encode_varint, read_frame
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.connection import Connection
from peerloom.net.host import PeerConnected, PeerDisconnected, PeerEvent, PeerIdentified
from peerloom.net.stream import Stream
from peerloom.service import NodeContext

log = logging.getLogger(__name__)

PROTOCOLS = ("/meshsub/1.2.0", "/meshsub/1.1.0", "/meshsub/1.0.0")  # best first: multistream-select offers in order
SUBSCRIPTION_QUEUE = 1024  # messages a subscription holds before it drops new ones (then counted)
SEND_QUEUE_BYTES = 8 * 1024 * 1024  # queued for one peer past this: the peer is too slow and is dropped
VALIDATION_TIMEOUT = 5.0  # an async validator slower than this counts as IGNORE
MAX_PENDING_VALIDATIONS = 1024  # async validations at once; past it a message is IGNOREd (go-libp2p's throttle)
MAX_DIALS = 4  # peer-exchange dials at once...
MAX_QUEUED_DIALS = 32  # ...and waiting; more suggestions are dropped

Validator = Callable[[PubsubMessage], Validation | Awaitable[Validation]]


class _PeerLink:
    """Our streams with one peer on one connection: the outbound stream we write to (opened by `writer`), the
    inbound streams it opened, and the RPC frames waiting for the outbound stream."""

    def __init__(self, peer: PeerId, conn: Connection) -> None:
        self.peer = peer
        self.conn = conn
        self.outbound: Stream | None = None
        self.inbound: set[Stream] = set()
        self.writer: asyncio.Task[None] | None = None
        self.queue: list[bytes] = []
        self.queued = 0
        self.wake = asyncio.Event()
        self.in_router = False

    def close(self) -> None:
        if self.writer is not None and self.writer is not asyncio.current_task():
            self.writer.cancel()
        for stream in [self.outbound, *self.inbound]:
            if stream is not None:
                stream.reset()
        self.inbound.clear()


class PubSubService:
    """GossipSub as a node service (name "pubsub"): see the module docstring. `params` and `score_params` tune the
    router (its defaults when None: the gossipsub spec's D=6..., score.py's ScoreParams). `admits` takes every peer
    unless an `admits` rule is given; `on_peer(peer, addrs, source)` hears of the peers the DHT rendezvous finds."""

    name = "pubsub"
    protocols = PROTOCOLS

    def __init__(
        self,
        *,
        params: GossipParams | None = None,
        score_params: ScoreParams | None = None,
        admits: Callable[[PeerId, str], bool] | None = None,
        subscription_queue: int = SUBSCRIPTION_QUEUE,
        send_queue_bytes: int = SEND_QUEUE_BYTES,
        validation_timeout: float = VALIDATION_TIMEOUT,
        on_peer: PeerCallback | None = None,
    ) -> None:
        self.params = params or GossipParams()
        self.score_params = score_params
        self._admits = admits
        self.subscription_queue = subscription_queue
        self.send_queue_bytes = send_queue_bytes
        self.validation_timeout = validation_timeout
        self._on_peer = on_peer
        self.router: GossipSub | None = None
        self.rendezvous: TopicRendezvous | None = None
        self._ctx: NodeContext | None = None
        self._links: dict[PeerId, _PeerLink] = {}
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._validators: dict[str, Validator] = {}
        self._pending_validations = 0
        self._dialing: set[PeerId] = set()
        self._dial_slots = asyncio.Semaphore(MAX_DIALS)
        self._unsubscribe_host: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.counters = {"dropped_deliveries": 0, "slow_peers_dropped": 0, "oversized_frames": 0,
                         "validation_timeouts": 0, "validations_throttled": 0, "validator_errors": 0}

    # -- the service ----------------------------------------------------------------------------------------------
    async def start(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        # seqnos start at the wall clock in nanoseconds, as go-libp2p and js-libp2p do: they keep increasing across
        # restarts of the same identity (pubsub spec: "linearly increasing"; kubo checks it)
        score = PeerScore(self.score_params) if self.score_params is not None else None
        self.router = GossipSub(ctx.identity, params=self.params, score=score, validate=True,
                                first_seqno=time.time_ns())
        self.rendezvous = TopicRendezvous(ctx.dht, ctx.host, ctx.tasks, on_peer=self._on_peer)
        self._unsubscribe_host = ctx.host.subscribe(self._peer_event)
        for peer, conn in list(ctx.host.connections.items()):  # peers identified before we started
            info = conn.info
            if info is not None and _speaks_meshsub(info.protocols):
                self._open_link(peer, conn)
        self._rearm()

    def admits(self, peer: PeerId, protocol: str) -> bool:
        return self._admits is None or self._admits(peer, protocol)

    async def stop(self) -> None:
        if self._unsubscribe_host is not None:
            self._unsubscribe_host()
            self._unsubscribe_host = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for subs in list(self._subscriptions.values()):
            for sub in list(subs):
                sub.finish()
        self._subscriptions.clear()
        for link in list(self._links.values()):
            link.close()
        self._links.clear()
        self.router = None

    async def handle(self, stream: Stream, protocol: str) -> None:
        """Read the RPCs of one inbound stream until it ends; the peer gets a link (and our outbound stream)."""
        router = self.router
        if router is None:
            stream.reset()
            return
        peer = stream.remote_peer
        conn = self._ctx.host.connections.get(peer) if self._ctx is not None else None
        if conn is None or conn.closed or conn is not stream.connection:  # a replaced connection's late stream
            stream.reset()
            return
        link = self._open_link(peer, conn)
        link.inbound.add(stream)
        self._add_to_router(link, protocol)
        try:
            await self._read_rpcs(link, stream)
        except VarintError as exc:  # a length over the limit (or a broken prefix): this stream goes, the peer stays
            self.counters["oversized_frames"] += 1
            log.info("pubsub: %s sent a bad frame (%s); resetting its stream", peer, exc)
            stream.reset()
        finally:
            link.inbound.discard(stream)

    async def _read_rpcs(self, link: _PeerLink, stream: Stream) -> None:
        limit = self.params.rpc_limits.max_rpc_size  # the router decodes with the same limits
        buffer = bytearray()
        while chunk := await stream.read():
            buffer += chunk
            router = self.router
            if router is None or self._links.get(link.peer) is not link:
                return
            now = time.monotonic()
            pos = 0
            while (frame := read_frame(buffer, limit, pos)) is not None:
                body, pos = frame
                router.handle_rpc(link.peer, body, now)
            del buffer[:pos]
            self._drain()
        await stream.close()

    # -- peers ----------------------------------------------------------------------------------------------------
    def _peer_event(self, event: PeerEvent) -> None:
        host = self._ctx.host if self._ctx is not None else None
        if host is None or self.router is None:
            return
        if isinstance(event, PeerIdentified):
            conn = host.connections.get(event.peer)
            if conn is not None and not conn.closed and _speaks_meshsub(event.protocols):
                self._open_link(event.peer, conn)
        elif isinstance(event, PeerConnected):
            link = self._links.get(event.peer)
            if link is not None and host.connections.get(event.peer) is not link.conn:
                self._drop(event.peer, "a new connection replaced its old one")
        elif isinstance(event, PeerDisconnected):
            self._drop(event.peer, f"disconnected: {event.reason}")

    def _open_link(self, peer: PeerId, conn: Connection) -> _PeerLink:
        """The peer's link on `conn`, made (with its writer task) if it has none there yet."""
        link = self._links.get(peer)
        if link is not None and link.conn is conn:
            return link
        if link is not None:
            self._drop(peer, "a new connection replaced its old one")
        assert self._ctx is not None
        link = self._links[peer] = _PeerLink(peer, conn)
        link.writer = self._ctx.tasks.spawn(self._write_rpcs(link), name=f"pubsub writer {peer}")
        return link

    def _add_to_router(self, link: _PeerLink, protocol: str) -> None:
        if link.in_router or self.router is None:
            return
        link.in_router = True
        ip = link.conn.remote_address[0] if link.conn.remote_address else None
        self.router.add_peer(link.peer, protocol, outbound=link.conn.initiator, ip=ip, now=time.monotonic())
        self._drain()

    def _drop(self, peer: PeerId, reason: str) -> None:
        """Forget the peer's link: its streams reset, the router told it is gone."""
        link = self._links.pop(peer, None)
        if link is None:
            return
        log.debug("pubsub: dropping %s (%s)", peer, reason)
        link.close()
        if link.in_router and self.router is not None:
            self.router.remove_peer(peer, time.monotonic())
            self._drain()

    async def _write_rpcs(self, link: _PeerLink) -> None:
        """Open the peer's outbound stream, then write what its queue holds, one write per wake-up."""
        assert self._ctx is not None
        try:
            stream = link.outbound = await self._ctx.host.new_stream(link.peer, PROTOCOLS)
        except (PeerloomError, TimeoutError) as exc:
            log.debug("pubsub: no meshsub stream to %s: %r", link.peer, exc)
            if self._links.get(link.peer) is link:
                self._drop(link.peer, "no outbound stream")
            return
        if self._links.get(link.peer) is not link:  # dropped while the stream opened
            stream.reset()
            return
        assert stream.protocol is not None
        self._add_to_router(link, stream.protocol)
        try:
            while True:
                while link.queue:
                    data = b"".join(link.queue)
                    link.queue.clear()
                    link.queued = 0
                    await stream.write(data)
                link.wake.clear()
                await link.wake.wait()
        except PeerloomError as exc:
            if self._links.get(link.peer) is link:
                self._drop(link.peer, f"outbound stream failed: {exc}")

    def _send(self, peer: PeerId, frames: list[bytes]) -> None:
        link = self._links.get(peer)
        if link is None:
            return
        size = sum(len(f) for f in frames)
        if link.queued + size > self.send_queue_bytes:
            self.counters["slow_peers_dropped"] += 1
            log.warning("pubsub: %s reads too slowly (%d bytes queued); dropping it", peer, link.queued)
            self._drop(peer, "send queue full")
            return
        link.queue.extend(frames)
        link.queued += size
        link.wake.set()

    # -- the router's events and timer ----------------------------------------------------------------------------
    def _drain(self) -> None:
        """Carry out everything the router asked for since the last drain (answers to validations may ask more),
        then re-arm the timer."""
        router = self.router
        if router is None:
            return
        outgoing: dict[PeerId, list[bytes]] = {}
        while events := router.take_events():
            for event in events:
                if isinstance(event, SendRpc):
                    outgoing.setdefault(event.peer, []).extend((encode_varint(len(event.data)), event.data))
                elif isinstance(event, Deliver):
                    self._deliver(event)
                elif isinstance(event, Validate):
                    self._validate(event)
                elif isinstance(event, Dial):
                    self._dial(event.peer)
        for peer, frames in outgoing.items():
            self._send(peer, frames)
        self._rearm()

    def _deliver(self, event: Deliver) -> None:
        subs = self._subscriptions.get(event.message.topic)
        if not subs:
            return
        message = PubsubMessage.of(event.msg_id, event.message, event.source)
        for sub in subs:
            if not sub.offer(message):
                self.counters["dropped_deliveries"] += 1
                if sub.dropped == 1 or sub.dropped % 1000 == 0:
                    log.warning("pubsub: a subscription to %r is full; %d messages dropped", sub.topic, sub.dropped)

    def _validate(self, event: Validate) -> None:
        assert self.router is not None and self._ctx is not None
        fn = self._validators.get(event.message.topic)
        if fn is None:
            self.router.report_validation(event.msg_id, event.source, Validation.ACCEPT, time.monotonic())
            return
        try:
            result = fn(PubsubMessage.of(event.msg_id, event.message, event.source))
        except Exception:
            self.counters["validator_errors"] += 1
            log.exception("pubsub: the validator of %r failed", event.message.topic)
            result = Validation.IGNORE
        if inspect.isawaitable(result):
            if self._pending_validations >= MAX_PENDING_VALIDATIONS:
                self.counters["validations_throttled"] += 1
                _close_awaitable(result)
                result = Validation.IGNORE
            else:
                self._pending_validations += 1
                self._ctx.tasks.spawn(self._await_validation(event, result), name="pubsub validation")
                return
        self.router.report_validation(event.msg_id, event.source, _verdict(result), time.monotonic())

    async def _await_validation(self, event: Validate, pending: Awaitable[Validation]) -> None:
        try:
            async with asyncio.timeout(self.validation_timeout):
                result = await pending
        except TimeoutError:
            self.counters["validation_timeouts"] += 1
            result = Validation.IGNORE
        except Exception:
            self.counters["validator_errors"] += 1
            log.exception("pubsub: the validator of %r failed", event.message.topic)
            result = Validation.IGNORE
        finally:
            self._pending_validations -= 1
        if self.router is not None:
            self.router.report_validation(event.msg_id, event.source, _verdict(result), time.monotonic())
            self._drain()

    def _dial(self, peer: PeerId) -> None:
        """Dial a peer that peer exchange suggested, at an address identify told us (bounded: extra ones dropped)."""
        assert self._ctx is not None
        host = self._ctx.host
        if peer in self._dialing or peer in host.connections or len(self._dialing) >= MAX_QUEUED_DIALS:
            return
        info = host.peer_info.get(peer)
        if info is None or not info.listen_addrs:
            return
        self._dialing.add(peer)
        self._ctx.tasks.spawn(self._dial_addrs(peer, list(info.listen_addrs)), name=f"pubsub dial {peer}")

    async def _dial_addrs(self, peer: PeerId, addrs: list) -> None:
        assert self._ctx is not None
        try:
            async with self._dial_slots:
                for addr in addrs:
                    with contextlib.suppress(PeerloomError, TimeoutError):
                        await self._ctx.host.connect(addr.encapsulate(f"/p2p/{peer}"))
                        return
        finally:
            self._dialing.discard(peer)

    def _rearm(self) -> None:
        """Keep one timer armed for the router's next wake-up (the earlier one wins; it re-arms for the rest)."""
        router = self.router
        when = router.next_wakeup() if router is not None else None
        if when is None:
            return
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = asyncio.get_running_loop().call_later(max(0.0, when - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.router is not None:
            self.router.tick(time.monotonic())
            self._drain()

    # -- the Python API -------------------------------------------------------------------------------------------
    def _running(self) -> GossipSub:
        if self.router is None:
            raise PubSubStopped("pub/sub is not running")
        return self.router

    async def publish(self, topic: str, data: bytes) -> PublishResult:
        """Sign and send `data` to the topic's peers (0 peers is not an error: nobody may listen yet). ValueError when
        `data` cannot fit one RPC (`params.rpc_limits.max_rpc_size`)."""
        result = self._running().publish(topic, bytes(data), time.monotonic())
        self._drain()
        return result

    def subscribe(self, topic: str) -> Subscription:
        """A new subscription to `topic` (the first one joins it, announcing it on the DHT when there is one)."""
        router = self._running()
        subs = self._subscriptions.setdefault(topic, [])
        sub = Subscription(topic, self._closed, self.subscription_queue)
        subs.append(sub)
        if len(subs) == 1:
            router.subscribe(topic, time.monotonic())
            self._drain()
            if self.rendezvous is not None:
                self.rendezvous.join(topic)
        return sub

    def _closed(self, sub: Subscription) -> None:
        subs = self._subscriptions.get(sub.topic)
        if subs is None or sub not in subs:
            return
        subs.remove(sub)
        if not subs:
            del self._subscriptions[sub.topic]
            if self.rendezvous is not None:
                self.rendezvous.leave(sub.topic)
            if self.router is not None:
                self.router.unsubscribe(sub.topic, time.monotonic())
                self._drain()

    def add_validator(self, topic: str, fn: Validator) -> None:
        """Check each new message of `topic` with `fn` before it is delivered or forwarded: ACCEPT, REJECT (the
        sender is penalised) or IGNORE. `fn` may be async; one slower than `validation_timeout` counts as IGNORE."""
        self._validators[topic] = fn

    def topics(self) -> list[str]:
        return sorted(self._running().subscriptions)

    def peers(self, topic: str) -> list[PeerId]:
        return self._running().topic_peers(topic)

    def mesh(self, topic: str) -> list[PeerId]:
        return self._running().mesh_peers(topic)

    def score(self, peer: PeerId) -> float:
        return self._running().peer_score(peer, time.monotonic())

    async def find_topic_peers(self, topic: str) -> int:
        """Ask the DHT for the peers that announced `topic` and dial them; how many were dialled (0 without a DHT)."""
        self._running()
        assert self.rendezvous is not None
        return await self.rendezvous.find(topic)

    def stats(self) -> dict[str, int]:
        """The router's counters and the driver's own."""
        figures = dict(self._running().stats())
        figures.update(self.counters)
        figures["links"] = len(self._links)
        return figures


def _speaks_meshsub(protocols: object) -> bool:
    return any(p in PROTOCOLS for p in protocols)  # type: ignore[attr-defined]


def _verdict(result: object) -> Validation:
    """What a validator returned, as a Validation (anything else is our caller's mistake: IGNORE, not REJECT)."""
    return result if isinstance(result, Validation) else Validation.IGNORE


def _close_awaitable(result: Awaitable[object]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


__all__ = ["PROTOCOLS", "PubSubService", "PubSubStopped", "PubsubMessage", "Subscription"]
