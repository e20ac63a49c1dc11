"""The sync of one document with its peers (sans-I/O: bytes and `now` in, events out; no sockets, no clock).

Per peer (one `/peerloom/doc/1.0.0` stream):
- on `add_peer`, the writer grants we know, then step 1: our "have" vector (syncproto); the peer answers with
  step 2 messages, one envelope each that we lack, then an empty step 2 (its catch-up is done), and we answer its
  step 1 the same way;
- live edits go to every peer as update messages (`publish`); an envelope accepted from one peer is forwarded to
  the others (a relay forwards ciphertext), so peers not connected to the writer hear of it too;
- every RESYNC_INTERVAL, step 1 again: a lost message heals (the peer sends what we still lack).
Envelopes that refer to changes not seen yet (UpdatePending: live updates from several peers overtake each other)
wait in a bounded buffer and are retried after each accepted one; replays are dropped silently (they are the
normal echo of a mesh); other refusals are reported as `Refused` and never stored. Awareness updates go through the
`AwarenessRelay` and are forwarded to the other peers and the local editors.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from peerloom.apps.docs.awareness import AwarenessError, AwarenessRelay
from peerloom.apps.docs.keys import DocError
from peerloom.apps.docs.syncproto import (
    AwarenessMessage,
    GrantMessage,
    SyncMessage,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_frame,
)
from peerloom.apps.docs.updates import RateRefused, ReplayRefused, SeenSequences, UpdatePending

RESYNC_INTERVAL = 10.0  # seconds between two step 1 to the same peer
MAX_PENDING = 1024  # envelopes waiting for their dependencies
MAX_PENDING_BYTES = 16 << 20
PENDING_TTL = 60.0  # a pending envelope older than this is dropped (re-sync brings it again once it fits)

Peer = Hashable


class SyncedDoc(Protocol):
    """What the core needs of a held document (held.HeldDoc)."""

    def have(self) -> dict[bytes, SeenSequences]: ...
    def missing_for(self, have: dict[bytes, SeenSequences]) -> list[bytes]: ...
    def accept(self, data: bytes, peer: Hashable | None, now: float) -> bytes | None: ...
    def grants(self) -> list[bytes]: ...
    def clocks(self) -> dict[int, int]: ...
    def add_grant(self, record: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class Send:
    peer: Peer
    data: bytes  # one or more frames, ready for the stream


@dataclass(frozen=True, slots=True)
class Applied:
    """An envelope accepted from a peer; `update` is the Yjs update applied (None on a relay)."""

    peer: Peer
    update: bytes | None


@dataclass(frozen=True, slots=True)
class Refused:
    peer: Peer
    error: DocError


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """The peer finished sending what our step 1 said we lacked."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class AwarenessIn:
    """Awareness entries from `peer` new to us, to hand to the local editors."""

    peer: Peer
    update: bytes


SyncEvent = Send | Applied | Refused | CaughtUp | AwarenessIn


class DocSync:
    """The sync state of one document with all its peers (see the module docstring)."""

    def __init__(self, doc: SyncedDoc) -> None:
        self.doc = doc
        self.awareness = AwarenessRelay()
        self._peers: dict[Peer, float] = {}  # peer → when its next step 1 is due
        self._pending: dict[bytes, tuple[Peer, float, dict[int, int]]] = {}  # envelope → (from, when, needs)
        self._pending_bytes = 0
        self._progress = False  # an envelope was accepted while others were pending
        self._events: list[SyncEvent] = []
        self.counters = {"accepted": 0, "refused": 0, "replays": 0, "pending": 0, "pending_dropped": 0,
                         "rate_limited": 0}

    @property
    def peers(self) -> list[Peer]:
        return list(self._peers)

    def take_events(self) -> list[SyncEvent]:
        events, self._events = self._events, []
        return events

    def _send(self, peer: Peer, *messages: SyncMessage) -> None:
        self._events.append(Send(peer, b"".join(encode_frame(m) for m in messages)))

    def _broadcast(self, message: SyncMessage, *, skip: Peer | None = None) -> None:
        frame = encode_frame(message)
        for peer in self._peers:
            if peer != skip:
                self._events.append(Send(peer, frame))

    # -- peers ----------------------------------------------------------------------------------------------------
    def add_peer(self, peer: Peer, now: float) -> None:
        self._peers[peer] = now + RESYNC_INTERVAL
        self._send(peer, *[GrantMessage(g) for g in self.doc.grants()], SyncStep1(self.doc.have()))

    def remove_peer(self, peer: Peer) -> None:
        self._peers.pop(peer, None)

    def receive(self, peer: Peer, message: bytes, now: float) -> None:
        """One frame's payload from `peer`. SyncMessageError (the stream should go) when it is malformed; refused
        envelopes are events, not errors."""
        if peer not in self._peers:
            return
        decoded = decode_message(message)
        if isinstance(decoded, SyncStep1):
            missing = self.doc.missing_for(decoded.have)
            self._send(peer, *[SyncStep2(e) for e in missing], SyncStep2(b""))
        elif isinstance(decoded, SyncStep2 | SyncUpdate):
            if not decoded.envelope:
                self._events.append(CaughtUp(peer))
            else:
                self._envelope(peer, decoded.envelope, now)
        elif isinstance(decoded, GrantMessage):
            self._grant(peer, decoded.record)
        else:
            self.apply_awareness(decoded.update, peer, now)

    def _grant(self, peer: Peer, record: bytes) -> None:
        try:
            new = self.doc.add_grant(record)
        except DocError as exc:
            self.counters["refused"] += 1
            self._events.append(Refused(peer, exc))
            return
        if new:
            self._broadcast(GrantMessage(record), skip=peer)

    def _envelope(self, peer: Peer, data: bytes, now: float) -> None:
        if self._try(peer, data, now, pending_ok=True) and self._pending:
            self._progress = True

    def settle(self, now: float) -> None:
        """Retry the pending envelopes if any envelope was accepted since the last call. The driver calls it after
        each batch of frames (not after each envelope: a retry parses the update again)."""
        if self._progress:
            self._progress = False
            self._retry_pending(now)

    def _try(self, peer: Peer, data: bytes, now: float, *, pending_ok: bool) -> bool:
        try:
            update = self.doc.accept(data, peer, now)
        except ReplayRefused:
            self.counters["replays"] += 1
            return False
        except UpdatePending as exc:
            if pending_ok:
                self._hold(peer, data, now, exc.needs)
            elif data in self._pending:
                self._pending[data] = (peer, self._pending[data][1], exc.needs)
            return False
        except RateRefused:  # not stored and not recorded: the next re-sync brings it again (counted, not logged)
            self.counters["rate_limited"] += 1
            return False
        except DocError as exc:
            self.counters["refused"] += 1
            self._events.append(Refused(peer, exc))
            return False
        self.counters["accepted"] += 1
        self._events.append(Applied(peer, update))
        self._broadcast(SyncUpdate(data), skip=peer)
        return True

    def _hold(self, peer: Peer, data: bytes, now: float, needs: dict[int, int]) -> None:
        if data in self._pending:
            return
        if len(self._pending) >= MAX_PENDING or self._pending_bytes + len(data) > MAX_PENDING_BYTES:
            self.counters["pending_dropped"] += 1
            return
        self.counters["pending"] += 1
        self._pending[data] = (peer, now, needs)
        self._pending_bytes += len(data)

    def _retry_pending(self, now: float) -> None:
        """Retry the pending envelopes whose missing clients have caught up (others would fail the same way)."""
        progress = True
        while progress and self._pending:
            progress = False
            clocks = self.doc.clocks()
            for data, (peer, _, needs) in list(self._pending.items()):
                if any(clocks.get(client, 0) < clock for client, clock in needs.items()):
                    continue
                if self._try(peer, data, now, pending_ok=False) or self._unpend_if_done(data):
                    self._drop_pending(data)
                    progress = True
                    clocks = self.doc.clocks()

    def _unpend_if_done(self, data: bytes) -> bool:
        """Whether a pending envelope was meanwhile accepted through another path (then it is a replay)."""
        writer, seq = data[33:65], int.from_bytes(data[65:73], "big")
        seen = self.doc.have().get(writer)
        return seen is not None and seq in seen

    def _drop_pending(self, data: bytes) -> None:
        if self._pending.pop(data, None) is not None:
            self._pending_bytes -= len(data)

    # -- local input ----------------------------------------------------------------------------------------------
    def publish(self, envelope: bytes) -> None:
        """Send a local, already stored envelope to every peer."""
        self._broadcast(SyncUpdate(envelope))

    def apply_awareness(self, update: bytes, peer: Peer | None, now: float) -> bytes | None:
        """Awareness from a peer or (peer None) a local editor: the entries new to us go to the other peers, and
        those from a peer to the local editors (an `AwarenessIn`); the new entries (None when nothing is new).
        AwarenessError when malformed."""
        fresh = self.awareness.accept(update, now)
        if fresh is None:
            return None
        if peer is not None:
            self._events.append(AwarenessIn(peer, fresh))
        self._broadcast(AwarenessMessage(fresh), skip=peer)
        return fresh

    # -- time -----------------------------------------------------------------------------------------------------
    def next_wakeup(self) -> float | None:
        return min(self._peers.values(), default=None)

    def tick(self, now: float) -> None:
        """Re-sync the peers that are due; forget stale pending envelopes and awareness clients."""
        for peer, due in list(self._peers.items()):
            if due <= now:
                self._peers[peer] = now + RESYNC_INTERVAL
                self._send(peer, SyncStep1(self.doc.have()))
        for data, (_, since, _) in list(self._pending.items()):
            if now - since > PENDING_TTL:
                self._drop_pending(data)
        self.awareness.expire(now)


__all__ = ["Applied", "AwarenessError", "AwarenessIn", "CaughtUp", "DocSync", "Refused", "Send", "SyncEvent"]
