"""Volunteer computing as a node service (name "compute", `node.compute`): `/peerloom/compute/1.0.0`.

    job = await node.compute.submit(module_bytes, [("chunk-0", data0), ...], quorum=2)
    await node.compute.add_volunteer("/ip4/127.0.0.1/tcp/4001/p2p/12D3...")
    for outcome in await job.wait(): ...

Every node is a submitter (submitter.py: its jobs, the scheduler, the exchanges with volunteers) and serves the
blobs of its jobs; a node that opted in (`VolunteerConfig`, `peerloom compute volunteer`, or the `compute_volunteer`
setting) is also a volunteer (volunteer.py), running units in worker processes (runner.py). This module only routes
the protocol's requests to the two roles and finds volunteers: the `--peer` addresses a user gives, every connected
peer that identify says speaks the protocol, the peers the peer store remembers speaking it, and (with pub/sub) the
volunteers that advertise on `ADVERT_TOPIC` (advert.py): a volunteer publishes its capacity there every
`advert_interval` seconds and stays subscribed (so adverts travel through volunteers to submitters it is not
connected to); a submitter listens while it has jobs running and asks the volunteers it hears of (bounded).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from peerloom.codec.multiaddr import Multiaddr
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.host import PeerDisconnected, PeerEvent, PeerIdentified
from peerloom.net.stream import Stream, StreamError
from peerloom.service import NodeContext
from peerloom.settings import Settings

from .advert import ADVERT_TOPIC, Advert, AdvertError, Candidates, decode_advert, encode_advert
from .blobs import DEFAULT_MAX_BLOB, BlobError, BlobStore
from .link import read_message
from .runner import ComputeRunner
from .sandbox import Limits
from .scheduler import SchedulerParams
from .store import ComputeStore
from .submitter import INLINE_INPUT, ComputeError, Job, SubmitterRole
from .volunteer import UnitRunner, VolunteerConfig, VolunteerRole
from .wire import (
    MAX_CONTROL_FRAME,
    PROTOCOL,
    Blob,
    Capacity,
    ComputeWireError,
    Credits,
    GetBlob,
    Message,
    NoBlob,
    QueryCapacity,
    Refused,
    RunUnit,
    encode,
)

log = logging.getLogger(__name__)
IDLE_STREAM_TIMEOUT = 60.0  # seconds a stream may wait for its next request (a request arrives whole well within it)
MAX_REMEMBERED_DIALS = 16  # volunteers from the peer store dialled when a job is submitted
ADVERT_INTERVAL = 30.0  # seconds between a volunteer's capacity adverts on pub/sub
LISTEN_CHECK = 1.0  # seconds between a listening submitter's looks at whether it still has jobs running


class AdvertChannel(Protocol):
    """What the service uses of pub/sub (PubSubService): a subscription to read adverts from, and publishing."""

    def subscribe(self, topic: str) -> Any: ...
    async def publish(self, topic: str, data: bytes) -> Any: ...

__all__ = ["PROTOCOL", "ComputeError", "ComputeService", "Job", "Limits", "VolunteerConfig"]


class ComputeService:
    """See the module docstring. `volunteer` opts this node in; `runner` replaces the worker processes (a test's
    adversary); `params` tunes the scheduler."""

    name = "compute"
    protocols = (PROTOCOL,)

    def __init__(self, *, volunteer: VolunteerConfig | None = None, runner: UnitRunner | None = None,
                 params: SchedulerParams | None = None, max_blob: int = DEFAULT_MAX_BLOB,
                 pubsub: AdvertChannel | None = None, advert_interval: float = ADVERT_INTERVAL) -> None:
        self.config = volunteer
        self.params = params
        self.max_blob = max_blob
        self.pubsub = pubsub
        self.advert_interval = advert_interval
        self.candidates = Candidates()
        self._jobs_running = asyncio.Event()  # set while a submitted job runs: the submitter listens for adverts
        self._runner = runner
        self._own_runner: ComputeRunner | None = None
        self._ctx: NodeContext | None = None
        self._submitter: SubmitterRole | None = None
        self.volunteer: VolunteerRole | None = None
        self._unsubscribe: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, pubsub: AdvertChannel | None = None) -> ComputeService:
        """The service the node's settings describe (a volunteer when `compute_volunteer` is on), finding and
        advertising volunteers through `pubsub` when there is one."""
        if not settings.compute_volunteer:
            return cls(pubsub=pubsub)
        allowed = frozenset(PeerId.from_string(p) for p in settings.compute_submitters) or None
        return cls(volunteer=VolunteerConfig(settings.compute_cores, settings.compute_memory,
                                             settings.compute_cpu_hours, allowed), pubsub=pubsub)

    async def start(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        blobs = BlobStore(Path(ctx.home) / "compute" / "blobs", self.max_blob)
        store = await ctx.run_blocking(ComputeStore, ctx.state)
        self._submitter = SubmitterRole(ctx.host, blobs, store, ctx.tasks.spawn, ctx.run_blocking, self.params)
        self._submitter.restore(await ctx.run_blocking(self._submitter.load))
        if self.config is not None:
            runner = self._runner
            if runner is None:
                runner = self._own_runner = ComputeRunner(blobs.directory, workers=self.config.slots,
                                                          max_blob=self.max_blob)
                self._own_runner.start()
            self.volunteer = VolunteerRole(self.config, ctx.host, blobs, store, runner, ctx.run_blocking)
        self._unsubscribe = ctx.host.subscribe(self._peer_event)
        if self.pubsub is not None:
            if self.volunteer is not None:
                ctx.tasks.spawn(self._advertise(), name="compute capacity adverts")
            ctx.tasks.spawn(self._listen(), name="compute advert listener")
            if self._wants_volunteers():
                self._jobs_running.set()

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._submitter is not None:
            self._submitter.close()
        if self._own_runner is not None:
            await self._own_runner.close()
            self._own_runner = None

    def admits(self, peer: PeerId, protocol: str) -> bool:
        return True  # a volunteer refuses units of submitters it does not take, but answers what it offers them

    @property
    def submitter(self) -> SubmitterRole:
        if self._submitter is None:
            raise ComputeError("the compute service is not running")
        return self._submitter

    # -- the protocol ---------------------------------------------------------------------------------------------
    async def handle(self, stream: Stream, protocol: str) -> None:
        """The requests of a peer on one stream, each answered before the next is read, until the peer closes it
        or leaves it idle; a malformed request resets the stream (never more)."""
        peer = stream.remote_peer
        while True:
            try:
                request = await asyncio.wait_for(read_message(stream, INLINE_INPUT + MAX_CONTROL_FRAME),
                                                 IDLE_STREAM_TIMEOUT)
            except TimeoutError:
                await stream.close()  # idle: the submitter opens a new one when it has more
                return
            except (ComputeWireError, StreamError) as exc:
                log.info("compute: a bad request from %s: %s", peer, exc)
                stream.reset()
                return
            if request is None:
                await stream.close()
                return
            answer = await self._answer(peer, request)
            if answer is None:
                log.info("compute: %s sent a %s as a request", peer, type(request).__name__)
                stream.reset()
                return
            try:
                await stream.write(encode(answer))
            except StreamError as exc:
                log.info("compute: the answer to %s was lost: %s", peer, exc)
                return

    async def _answer(self, peer: PeerId, request: Message) -> Message | None:
        if isinstance(request, QueryCapacity):
            return self.volunteer.capacity(peer) if self.volunteer else Capacity(0, 0, 0, False)
        if isinstance(request, RunUnit):
            if self.volunteer is None:
                return Refused("this node does not volunteer")
            return await self.volunteer.run_unit(peer, request)
        if isinstance(request, GetBlob):
            assert self._ctx is not None
            try:
                return Blob(await self._ctx.run_blocking(self.submitter.blobs.get, request.name.hex()))
            except BlobError:
                return NoBlob()
        if isinstance(request, Credits):
            if self.volunteer is not None:
                await self._ctx.run_blocking(self.volunteer.credit, peer, request.credits)  # type: ignore[union-attr]
            return Credits(())
        return None

    def _peer_event(self, event: PeerEvent) -> None:
        submitter = self._submitter
        if submitter is None or self._ctx is None:
            return
        if isinstance(event, PeerDisconnected):
            submitter.peer_gone(event.peer)
        elif isinstance(event, PeerIdentified) and PROTOCOL in event.protocols and self._wants_volunteers():
            self._ctx.tasks.spawn(submitter.probe(event.peer), name="compute capacity query")

    def _wants_volunteers(self) -> bool:
        return any(not job.finished.is_set() for job in self.submitter.jobs.values())

    # -- volunteers on pub/sub ------------------------------------------------------------------------------------
    async def _advertise(self) -> None:
        """The volunteer's adverts: subscribed to the topic for as long as it runs (it relays others' adverts),
        publishing its capacity every `advert_interval` seconds."""
        assert self.pubsub is not None and self.volunteer is not None and self._ctx is not None
        host, volunteer = self._ctx.host, self.volunteer
        subscription = self._subscribe("advertising")
        if subscription is None:
            return
        try:
            while True:
                advert = Advert(volunteer.config.slots, volunteer.config.memory_bytes,
                                int(volunteer.seconds_left()), tuple(host.listen_addrs))
                try:
                    await self.pubsub.publish(ADVERT_TOPIC, encode_advert(advert))
                except PeerloomError as exc:
                    log.info("compute: the capacity advert was not published: %s", exc)
                    return
                await asyncio.sleep(self.advert_interval)
        finally:
            subscription.close()

    def _subscribe(self, purpose: str) -> Any:
        """A subscription to the adverts' topic; None (and a log line) when pub/sub is not running."""
        assert self.pubsub is not None
        try:
            return self.pubsub.subscribe(ADVERT_TOPIC)
        except PeerloomError as exc:
            log.info("compute: not %s on pub/sub: %s", purpose, exc)
            return None

    async def _listen(self) -> None:
        """While jobs run, the submitter reads the adverts of the topic and asks the volunteers it hears of."""
        assert self.pubsub is not None
        while True:
            await self._jobs_running.wait()
            subscription = self._subscribe("listening for volunteers")
            if subscription is None:
                return
            try:
                while self._wants_volunteers():
                    try:
                        message = await asyncio.wait_for(subscription.get(), LISTEN_CHECK)
                    except TimeoutError:
                        continue
                    self._heard(message.from_peer, message.data)
            except PeerloomError:
                return  # pub/sub stopped
            finally:
                subscription.close()
            self._jobs_running.clear()

    def _heard(self, peer: PeerId, data: bytes) -> None:
        """An advert from `peer`: a volunteer this submitter does not have yet is dialled and asked what it offers."""
        assert self._ctx is not None
        if peer == self._ctx.identity.peer_id:
            return
        record = self.submitter.scheduler.volunteers.get(peer)
        if record is not None and (record.connected or record.flagged):
            return
        try:
            advert = decode_advert(data)
        except AdvertError as exc:
            log.info("compute: a bad advert from %s: %s", peer, exc)
            return
        now = time.monotonic()
        if self.candidates.heard(peer, advert, now):
            for _, addrs in self.candidates.take(now):
                self._ctx.tasks.spawn(self._dial_and_probe(list(addrs)), name="compute volunteer dial")

    # -- the Python API -------------------------------------------------------------------------------------------
    async def submit(self, module: bytes, inputs: Sequence[tuple[str, bytes]] | Sequence[bytes], quorum: int = 2,
                     *, limits: Limits | None = None, adaptive: bool = False) -> Job:
        """Submit a job: `module` (a WASI command's bytes) over `inputs` (bytes, or (name, bytes) pairs; one work
        unit each). Volunteers already connected, or remembered by the peer store, are asked for their capacity."""
        named = [item if isinstance(item, tuple) else (f"unit-{i:06d}", item) for i, item in enumerate(inputs)]
        job = await self.submitter.submit(module, named, quorum, limits, adaptive)
        if not job.finished.is_set():
            self._jobs_running.set()
            await self.discover()
        return job

    async def add_volunteer(self, addr: Multiaddr | str) -> PeerId:
        """Dial a volunteer (a multiaddr of its secure layer) and ask what it offers."""
        assert self._ctx is not None
        conn = await self._ctx.host.connect(addr)
        peer = conn.remote_peer
        assert peer is not None
        answer = await self.submitter.probe(peer)
        if answer is None or not answer.accepts or answer.slots == 0:
            raise ComputeError(f"{peer} does not take work from this node")
        return peer

    async def discover(self) -> int:
        """Ask every connected peer speaking the protocol (and a few the peer store remembers) what it offers; how
        many were asked."""
        ctx = self._ctx
        assert ctx is not None
        known = self.submitter.scheduler.volunteers
        asked = [peer for peer, conn in list(ctx.host.connections.items())
                 if peer not in known and conn.info is not None and PROTOCOL in conn.info.protocols]
        now = time.time()
        remembered = [p for p in ctx.peers.with_protocol(PROTOCOL)
                      if p not in ctx.host.connections and p not in known][:MAX_REMEMBERED_DIALS]
        for peer in remembered:
            addrs = ctx.peers.addrs(peer, now)
            if addrs:
                ctx.tasks.spawn(self._dial_and_probe(addrs), name="compute volunteer dial")
        for peer in asked:
            ctx.tasks.spawn(self.submitter.probe(peer), name="compute capacity query")
        return len(asked) + len(remembered)

    async def _dial_and_probe(self, addrs: list[Multiaddr]) -> None:
        for addr in addrs:
            try:
                await self.add_volunteer(addr)
                return
            except (PeerloomError, OSError, TimeoutError):
                continue

    def jobs(self) -> list[Job]:
        return list(self.submitter.jobs.values())

    def job(self, ident: str) -> Job:
        return self.submitter.job(ident)

    def volunteers(self) -> list[dict[str, Any]]:
        return self.submitter.volunteers()

    def status(self) -> dict[str, Any]:
        """This node's part in volunteer computing: its jobs, and as a volunteer its offer and its credit."""
        submitter = self.submitter
        status: dict[str, Any] = {
            "jobs": len(submitter.jobs),
            "running": sum(1 for job in submitter.jobs.values() if not job.finished.is_set()),
            "volunteers": sum(1 for v in submitter.scheduler.volunteers.values() if v.connected),
            "volunteering": self.volunteer is not None,
        }
        if self.volunteer is not None:
            config = self.volunteer.config
            credit = submitter.store.credit_totals()
            status["volunteer"] = {
                "slots": config.slots, "memory_bytes": config.memory_bytes, "cpu_hours": config.cpu_hours,
                "submitters": None if config.submitters is None else sorted(str(p) for p in config.submitters),
                "active": self.volunteer.active, "ran": self.volunteer.ran,
                "cpu_seconds_left": round(self.volunteer.seconds_left(), 1),
                "credit": {peer: {"units": units, "fuel": fuel} for peer, (units, fuel) in credit.items()},
            }
        return status
