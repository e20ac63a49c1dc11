"""One peer's BitTorrent state and the message-order rules, sans-I/O: bytes (and the time) in, events out.

Like h11's `Connection`, a `PeerWire` reads no socket and no clock. The driver (`peer.PeerConnection`) hands it
what it received with `receive(data, now)` and gets the events back: first the peer's `Handshake`, then the wire
messages themselves (a piece and a request stay the `Piece` / `Request` named tuples the parser builds, a view of the
received bytes, so the busiest path costs nothing more than parsing). Bytes to send come back from `start`, `accept`,
`send` and `tick`; `next_wakeup()` says when `tick` has work (the handshake deadline, then the keep-alive).

Every transition a received message makes is in `_RULES`, and every one a sent message makes in `_SEND_RULES`,
one function per message type; a received message that breaks a rule raises a `WireError` (a `ProtocolError`),
after which the connection is to be closed. Deployed clients are followed where they are lenient: `bitfield`,
`have`, `have_all` and `have_none` come in any order and any number of times (see `peer_pieces`), and the
extension handshake at any time, any number of times (BEP 10).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Any

from peerloom.torrent import extensions as ext
from peerloom.torrent import wire
from peerloom.torrent.peer_pieces import PeerPieces
from peerloom.torrent.wire import WireError

HANDSHAKE_TIMEOUT = 20.0
KEEPALIVE_EVERY = 90.0  # BEP 3: peers close a connection silent for two minutes; we speak well before that
MAX_PENDING_REQUESTS = 2000  # requests a peer may queue with us (we advertise `reqq` = 1000)
MAX_ALLOWED_FAST = 256  # allowed-fast pieces kept per peer (libtorrent offers 10 by default); more are ignored
MAX_CLIENT_NAME = 64


class HandshakeTimeout(WireError):
    """The peer did not finish its handshake in time."""


class FastExtensionError(WireError):
    """A BEP 6 message from a peer that did not negotiate the fast extension."""


class Phase(enum.Enum):
    HANDSHAKE = "handshake"  # waiting for the peer's handshake
    ACCEPTING = "accepting"  # an incoming peer's handshake is in: the driver picks the torrent and calls `accept`
    OPEN = "open"  # messages flow


class PeerWire:
    """The protocol state of one peer connection (BEP 3, BEP 6, BEP 10, BEP 52's handshake)."""

    __slots__ = (
        "_held", "_info_hash_v2", "_wakeup_handshake", "allowed_fast", "am_choking", "am_interested", "client",
        "ext_handshake", "ext_ids", "handshake", "holdings", "info_hash", "last_received", "last_sent",
        "our_peer_id", "outgoing", "outstanding", "parser", "peer_choking", "peer_interested", "pending", "phase",
    )

    def __init__(self, our_peer_id: bytes, *, outgoing: bool, now: float) -> None:
        self.our_peer_id = our_peer_id
        self.outgoing = outgoing
        self.phase = Phase.HANDSHAKE
        self.handshake: wire.Handshake | None = None  # the peer's
        self.info_hash: bytes | None = None  # what our handshake carried
        self._info_hash_v2: bytes | None = None
        self._held = bytearray()  # received bytes not parsed yet: a partial handshake, or what follows it
        self.parser = wire.WireParser()
        self._wakeup_handshake = now + HANDSHAKE_TIMEOUT
        self.last_received = now
        self.last_sent = now

        # BEP 3: both sides start choked and not interested
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.holdings = PeerPieces()  # the peer's pieces, counted in the torrent's picker
        self.allowed_fast: set[int] = set()  # BEP 6: pieces we may request while it chokes us
        self.ext_handshake: ext.ExtHandshake | None = None  # BEP 10, merged over every handshake so far
        self.ext_ids: dict[str, int] = {}
        self.client = ""

        # requests, per peer: ours in flight ((index, begin) -> when sent), and its queue with us
        self.outstanding: dict[tuple[int, int], float] = {}
        self.pending: deque[tuple[int, int, int]] = deque()

    @property
    def fast(self) -> bool:
        """Whether BEP 6 is on: we always offer it, so it is when the peer's handshake does too."""
        return self.handshake is not None and self.handshake.supports_fast

    # -- handshake -------------------------------------------------------------------------------
    def start(self, info_hash: bytes, info_hash_v2: bytes | None, *, dht: bool) -> bytes:
        """An outgoing connection: our handshake, for `info_hash` (the v1 hash, or a v2-only torrent's truncated v2)."""
        self.info_hash, self._info_hash_v2 = info_hash, info_hash_v2
        return self._our_handshake(dht)

    def accept(self, info_hash_v2: bytes | None, *, dht: bool) -> bytes:
        """An incoming connection whose handshake the driver matched to a torrent: our answer. BEP 52: a hybrid's
        dialler that set the upgrade bit is answered with the truncated v2 hash (`wire.answer_info_hash`)."""
        if self.phase is not Phase.ACCEPTING or self.handshake is None:
            raise WireError("accept before the peer's handshake")
        self.info_hash, self._info_hash_v2 = wire.answer_info_hash(self.handshake, info_hash_v2), info_hash_v2
        self.phase = Phase.OPEN
        return self._our_handshake(dht)

    def _our_handshake(self, dht: bool) -> bytes:
        assert self.info_hash is not None
        reserved = wire.handshake_reserved(self.info_hash, self._info_hash_v2, dht=dht)
        return wire.encode_handshake(wire.Handshake(self.info_hash, self.our_peer_id, reserved))

    def _receive_handshake(self, data: bytes | memoryview) -> list[Any]:
        held = self._held
        held += data
        if self.phase is Phase.ACCEPTING:
            return []  # kept until `accept`
        if len(held) < wire.HANDSHAKE_LENGTH:
            if not wire.PROTOCOL.startswith(bytes(held[: len(wire.PROTOCOL)])):
                raise WireError("not a BitTorrent handshake")
            return []
        hs = wire.parse_handshake(bytes(held[: wire.HANDSHAKE_LENGTH]))
        del held[: wire.HANDSHAKE_LENGTH]
        if hs.peer_id == self.our_peer_id:
            raise WireError("connected to ourselves")
        if self.outgoing:
            assert self.info_hash is not None, "start() comes before receive() on an outgoing connection"
            if not wire.answer_accepted(self.info_hash, hs.info_hash, self._info_hash_v2):
                raise WireError("peer answered with another info-hash")
            self.info_hash = hs.info_hash  # BEP 52: it may have upgraded a hybrid's connection to v2
            self.phase = Phase.OPEN
        else:
            self.phase = Phase.ACCEPTING
        self.handshake = hs
        return [hs]

    # -- receiving -------------------------------------------------------------------------------
    def receive(self, data: bytes | memoryview, now: float) -> list[Any]:
        """The events in `data` (and what earlier calls left): the peer's `Handshake` once, then its messages.

        A handshake ends the list; the bytes after it are kept and come back from the next call (`receive(b"",
        now)`), after `accept` for an incoming peer. A piece's data is a view of `data`: valid while `data` is
        left unchanged. Raises WireError when the peer breaks the protocol."""
        self.last_received = now
        if self.phase is not Phase.OPEN:
            return self._receive_handshake(data)
        if self._held:
            self._held += data
            data, self._held = bytes(self._held), bytearray()
        messages = self.parser.feed(data)
        if self.parser.control:
            # pieces and requests, most of a busy connection, change no state here (the torrent books them): a batch
            # of only those is not looked at
            rules = _RULES
            for m in messages:
                rule = rules.get(type(m))
                if rule is not None:
                    rule(self, m)
        return messages

    def _on_choke(self, m: wire.Choke) -> None:
        # our requests in flight are the torrent's to abort (BEP 3: a choke drops them; BEP 6: it rejects them)
        self.peer_choking = True

    def _on_unchoke(self, m: wire.Unchoke) -> None:
        self.peer_choking = False

    def _on_interested(self, m: wire.Interested) -> None:
        self.peer_interested = True

    def _on_not_interested(self, m: wire.NotInterested) -> None:
        self.peer_interested = False

    def _need_fast(self, m: Any) -> None:
        # BEP 6: have_all, have_none, reject, allowed_fast and suggest exist only when both sides set the bit
        # (libtorrent closes the connection too: errors::invalid_have_all and friends)
        if not self.fast:
            raise FastExtensionError(f"{type(m).__name__} without the fast extension")

    def _on_allowed_fast(self, m: wire.AllowedFast) -> None:
        self._need_fast(m)
        if len(self.allowed_fast) < MAX_ALLOWED_FAST:
            self.allowed_fast.add(m.index)

    def _on_extended(self, m: wire.Extended) -> None:
        if m.ext_id == 0:
            # at any time, any number of times (BEP 10): a later handshake updates the earlier one
            h = ext.update_ext_handshake(self.ext_handshake, ext.parse_ext_handshake(m.payload))
            self.ext_handshake, self.ext_ids, self.client = h, dict(h.ids), (h.client or "")[:MAX_CLIENT_NAME]

    # -- sending ---------------------------------------------------------------------------------
    def send(self, message: Any) -> bytes:
        """The bytes of `message`, after the transition sending it makes (h11's `Connection.send`): a choke drops
        the peer's queued requests, rejecting each with BEP 6 as the peer then expects. A choke, unchoke, interested
        or not_interested that would change nothing gives no bytes, so a caller may say what it wants any time."""
        rule = _SEND_RULES.get(type(message))
        return wire.encode(message) if rule is None else rule(self, message)

    def _send_choke(self, m: wire.Choke) -> bytes:
        if self.am_choking:
            return b""
        self.am_choking = True
        out = [wire.encode(m)]
        if self.fast:
            out += [wire.encode(wire.RejectRequest(index, begin, length)) for index, begin, length in self.pending]
        self.pending.clear()
        return b"".join(out)

    def _send_unchoke(self, m: wire.Unchoke) -> bytes:
        if not self.am_choking:
            return b""
        self.am_choking = False
        return wire.encode(m)

    def _send_interest(self, m: wire.Interested | wire.NotInterested) -> bytes:
        interested = type(m) is wire.Interested
        if interested == self.am_interested:
            return b""
        self.am_interested = interested
        return wire.encode(m)

    def may_request(self, index: int) -> bool:
        """Whether a request for a block of piece `index` may go out now (BEP 6: allowed-fast pieces while choked)."""
        return not self.peer_choking or index in self.allowed_fast

    def sent(self, now: float) -> None:
        """The driver wrote bytes to the peer: the keep-alive waits from here."""
        self.last_sent = now

    # -- time ------------------------------------------------------------------------------------
    def next_wakeup(self) -> float:
        """When `tick` has work: the handshake deadline, then the next keep-alive."""
        if self.phase is not Phase.OPEN:
            return self._wakeup_handshake
        return self.last_sent + KEEPALIVE_EVERY

    def tick(self, now: float) -> bytes:
        """Bytes to send at `now` (a keep-alive when we have been silent for a while). Raises HandshakeTimeout."""
        if self.phase is not Phase.OPEN:
            if now >= self._wakeup_handshake:
                raise HandshakeTimeout("handshake timeout")
            return b""
        if now - self.last_sent >= KEEPALIVE_EVERY:
            self.last_sent = now
            return wire.encode(wire.KeepAlive())
        return b""


# Every state change a sent message makes, by type; the others are only encoded.
_SEND_RULES: dict[type, Callable[[PeerWire, Any], bytes]] = {
    wire.Choke: PeerWire._send_choke,
    wire.Unchoke: PeerWire._send_unchoke,
    wire.Interested: PeerWire._send_interest,
    wire.NotInterested: PeerWire._send_interest,
}

# Every state change a received message makes, by type. Messages not here change no per-peer state in the wire:
# the torrent books them (pieces, requests, cancels, the peer's pieces, hashes, port). Bitfield, have, have_all and
# have_none are taken in any order and any number of times (`peer_pieces`); have_all and have_none need BEP 6.
_RULES: dict[type, Callable[[PeerWire, Any], None]] = {
    wire.Choke: PeerWire._on_choke,
    wire.Unchoke: PeerWire._on_unchoke,
    wire.Interested: PeerWire._on_interested,
    wire.NotInterested: PeerWire._on_not_interested,
    wire.HaveAll: PeerWire._need_fast,
    wire.HaveNone: PeerWire._need_fast,
    wire.RejectRequest: PeerWire._need_fast,
    wire.SuggestPiece: PeerWire._need_fast,
    wire.AllowedFast: PeerWire._on_allowed_fast,
    wire.Extended: PeerWire._on_extended,
}
