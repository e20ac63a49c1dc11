"""The asyncio driver of signed peer records (see `peer_record`): publish this node's record in the DHT, resolve a
PeerId to the addresses in its record.

    records = PeerRecords(identity, dht, store, addrs=lambda: host.listen_addrs)
    await records.start()            # publishes once the DHT is ready, on address changes, every 30 min
    record = await records.resolve(peer_id)     # also adds its addresses to the store (source "record")
    await records.close()

A node listening on a wildcard address (0.0.0.0, ::) publishes the address of the interface its default route
leaves by instead (found with an unconnected-UDP `connect`, which sends nothing); without such a route it has
nothing public to publish and publishes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from peerloom.codec import bencode
from peerloom.codec.multiaddr import Multiaddr
from peerloom.dht.driver import Dht, DhtError, PutResult
from peerloom.discovery.peer_record import SALT, PeerRecord, PeerRecordError, RecordPublisher, open_record, record_key
from peerloom.discovery.peerstore import PeerStore, usable_addrs
from peerloom.errors import PeerloomError, ProtocolError
from peerloom.identity import Identity, PeerId

log = logging.getLogger(__name__)

CHECK_EVERY = 60.0  # seconds between looks at the listen addresses (a change is published at the next look)
MAX_SEEN = 1024  # peers whose last record seq is remembered (an older record of theirs is refused)
RESOLVE_TIMEOUT = 20.0
# Documentation addresses (RFC 5737, RFC 3849): a UDP socket "connected" to one picks the default route's source
# address; no packet is sent.
_PROBE = {"ip4": ("192.0.2.1", socket.AF_INET), "ip6": ("2001:db8::1", socket.AF_INET6)}


class PeerRecords:
    """Publishes this node's peer record (unless `publish` is False) and resolves other nodes' (see the module
    docstring)."""

    def __init__(self, identity: Identity, dht: Dht, store: PeerStore | None, addrs: Callable[[], list[Multiaddr]],
                 *, publish: bool = True, publisher: RecordPublisher | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.identity = identity
        self.dht = dht
        self.store = store
        self.addrs = addrs
        self.publish_record = publish  # False: resolve others' records only (a short-lived `peerloom find`)
        self.publisher = publisher or RecordPublisher()
        self.clock = clock
        self.last_put: PutResult | None = None
        self._seen: OrderedDict[PeerId, int] = OrderedDict()
        self._wake = asyncio.Event()
        self._published = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.publish_record:
            self._task = asyncio.create_task(self._run(), name="peer record publisher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def addrs_changed(self) -> None:
        """Look at the listen addresses now (a change is published at once)."""
        self._wake.set()

    async def wait_published(self, timeout: float) -> bool:
        """Wait until the record has been put once; False when `timeout` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._published.wait()
        except TimeoutError:
            return False
        return True

    # -- publishing ----------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        await self.dht.wait_ready()
        await self._learn_last_seq()
        while True:
            now = self.clock()
            self.publisher.update(expand_unspecified(self.addrs()), now)
            if self.publisher.due(now):
                await self.publish()
            wakeup = self.publisher.next_wakeup()
            delay = CHECK_EVERY if wakeup is None else min(CHECK_EVERY, max(0.0, wakeup - self.clock()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _learn_last_seq(self) -> None:
        """Start above the seq of the record an earlier run left in the DHT (a clock that went back would
        otherwise publish records the DHT refuses as older)."""
        key = record_key(self.identity.peer_id)
        with contextlib.suppress(DhtError):
            item = await self.dht.get_mutable(key, SALT, timeout=RESOLVE_TIMEOUT)
            if item is not None:
                self.publisher.last_seq = max(self.publisher.last_seq or 0, item.seq)

    async def publish(self) -> PutResult | None:
        """Put the record with the current addresses now; None when there is nothing to publish or the put failed
        (retried later)."""
        now = self.clock()
        self.publisher.update(expand_unspecified(self.addrs()), now)
        if not self.publisher.addrs:
            return None
        value, seq = self.publisher.make(now)
        try:
            result = await self.dht.put_mutable(self.identity.private_key, bencode.decode(value), SALT, seq)
        except (DhtError, ValueError) as exc:
            log.info("publishing the peer record failed: %s", exc)
            self.publisher.failed(self.clock())
            return None
        log.info("peer record published (seq %d, %d addresses, stored by %d nodes)", seq,
                 len(self.publisher.addrs), result.stored)
        self.publisher.published(self.clock(), result.stored)
        self.last_put = result
        self._published.set()
        return result

    # -- resolving -----------------------------------------------------------------------------------------------
    async def resolve(self, peer: PeerId, *, timeout: float = RESOLVE_TIMEOUT) -> PeerRecord | None:
        """The record of `peer` from the DHT (signature, key, salt, seq and bounds checked), its addresses added to
        the store; None when no node has one. PeerRecordError for a PeerId without an Ed25519 key or a record
        that fails a check; DhtError when the lookup fails."""
        key = record_key(peer)
        try:
            item = await self.dht.get_mutable(key, SALT, timeout=timeout)
        except ProtocolError as exc:  # a value that is not bencode (the DHT layer checked only the signature)
            raise PeerRecordError(f"unreadable peer record: {exc}") from None
        if item is None:
            return None
        record = open_record(peer, item.key, item.signature, item.raw, item.seq, item.salt,
                             min_seq=self._seen.get(peer))
        self._seen[peer] = record.seq
        self._seen.move_to_end(peer)
        while len(self._seen) > MAX_SEEN:
            self._seen.popitem(last=False)
        if self.store is not None:
            self.store.add_addrs(peer, record.addrs, "record", self.clock())
        return record


def expand_unspecified(addrs: list[Multiaddr]) -> list[Multiaddr]:
    """`addrs` with a wildcard host (0.0.0.0, ::) replaced by the address of the default route's interface (left
    out when there is none)."""
    expanded = []
    for addr in addrs:
        family = "ip6" if addr.value_for("ip6") is not None else "ip4"
        host = addr.value_for(family)
        if host is None or not ipaddress.ip_address(host).is_unspecified:
            expanded.append(addr)
        else:
            expanded += usable_addrs([addr], _default_route_address(family))
    return expanded


def _default_route_address(family: str) -> str | None:
    target, af = _PROBE[family]
    try:
        with socket.socket(af, socket.SOCK_DGRAM) as sock:
            sock.connect((target, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return None


async def find_peer(peer: PeerId, store: PeerStore, records: PeerRecords | None, *, timeout: float = RESOLVE_TIMEOUT,
                    clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Where `peer` listens, for `peerloom find` and the API: its record resolved through the DHT (with `records`;
    its addresses join the store), then everything the store knows, best first. PeerloomError when nothing is
    known (the DHT's or the record's failure in its message)."""
    record, why = None, "no peer record in the DHT"
    if records is None:
        why = "the DHT is off"
    else:
        try:
            record = await records.resolve(peer, timeout=timeout)
        except (DhtError, PeerRecordError) as exc:
            why = str(exc)
    now = clock()
    info = store.get(peer)
    if info is None or not info.addrs:
        raise PeerNotFound(f"no address known for {peer}: {why}")
    shown = info.to_json(now)
    for addr in shown["addrs"]:
        addr["addr"] = f"{addr['addr']}/p2p/{peer}"
    found = {"record": None if record is None else {"seq": record.seq, "timestamp": record.timestamp,
                                                    "addrs": [str(a) for a in record.addrs]},
             "record_error": None if record is not None else why}
    return {**shown, **found}


class PeerNotFound(PeerloomError):
    """Neither the DHT nor the peer store knows an address of the peer."""
