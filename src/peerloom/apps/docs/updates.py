"""The signed, encrypted update envelope of a document and the checks an update passes before it is used (sans-I/O).

Envelope (version 1), all integers big-endian:

    version (1) = 1 | doc id (32) | writer public key (32) | sequence (8) | nonce (12) |
    ciphertext length (4) | ciphertext | Ed25519 signature (64)

The ciphertext is the Yjs update sealed with ChaCha20-Poly1305 (RFC 8439) under the document's read key, the
header (version .. nonce) as associated data, so a ciphertext cannot be moved to another writer, sequence or
document. The writer signs "peerloom-doc-update-v1\\0" followed by everything before the signature; anyone (a relay
without the read key too) can check the signature, the writer's rights and the sequence without decrypting.

`UpdateGate` refuses, before anything is stored or applied: malformed or oversized envelopes, envelopes for another
document, bad signatures, writers without a grant, sequence numbers already seen, and peers over their rate.
`Replica` then checks the Yjs update itself (`yupdate`) and applies it to a scratch copy of the document before
the real one, so garbage that pycrdt would swallow (trailing bytes, updates it would keep pending forever, items
cut inside a character) never reaches the document.
"""

from __future__ import annotations

import secrets
from collections.abc import Hashable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from pycrdt import Doc

from peerloom.apps.docs.keys import KEY_SIZE, SIGNATURE_SIZE, DocError, DocKeys, WriterGrant, raw_public, verify
from peerloom.apps.docs.yupdate import (
    YUpdateError,
    missing_dependencies,
    needed_clocks,
    parse_state_vector,
    parse_update,
)

VERSION = 1
MAX_UPDATE_SIZE = 1 << 20  # bytes of ciphertext in one envelope; a larger edit is split or sent as a snapshot
NONCE_SIZE = 12
TAG_SIZE = 16
_HEADER_SIZE = 1 + KEY_SIZE + KEY_SIZE + 8 + NONCE_SIZE
MAX_ENVELOPE_SIZE = _HEADER_SIZE + 4 + MAX_UPDATE_SIZE + SIGNATURE_SIZE
_SIGN_CONTEXT = b"peerloom-doc-update-v1\x00"
MAX_SEQUENCE = 2**63 - 1  # stored as an SQLite INTEGER
REPLAY_WINDOW = 4096  # sequence numbers of one writer remembered out of order; older gaps count as seen


class EnvelopeError(DocError):
    """Bytes that are not a well-formed update envelope, or one too large."""


class SignatureRefused(DocError):
    """An envelope whose signature is not its writer's."""


class WriterRefused(DocError):
    """An envelope from a key the document has not authorised to write."""


class ReplayRefused(DocError):
    """An envelope whose writer and sequence number were already seen (a replay or a duplicate)."""


class RateRefused(DocError):
    """A peer sent more than its rate allows."""


class UpdateRefused(DocError):
    """A verified envelope whose Yjs update cannot be read or integrated (garbage, or changes the document lacks)."""


class UpdatePending(UpdateRefused):
    """A well-formed update that refers to changes this document has not seen yet: it may be applied later, once
    they arrive (live updates from several peers can overtake each other). `needs`: the clock each missing client
    must reach first."""

    def __init__(self, message: str, needs: dict[int, int] | None = None) -> None:
        super().__init__(message)
        self.needs = needs or {}


@dataclass(frozen=True, slots=True)
class Envelope:
    """One decoded (not yet verified) envelope."""

    doc_id: bytes
    writer: bytes
    seq: int
    nonce: bytes
    ciphertext: bytes
    signature: bytes

    def header(self) -> bytes:
        return bytes([VERSION]) + self.doc_id + self.writer + self.seq.to_bytes(8, "big") + self.nonce

    def signed_part(self) -> bytes:
        return self.header() + len(self.ciphertext).to_bytes(4, "big") + self.ciphertext

    def encode(self) -> bytes:
        return self.signed_part() + self.signature

    def signature_valid(self) -> bool:
        return verify(self.writer, self.signature, _SIGN_CONTEXT + self.signed_part())

    def open(self, read_key: bytes) -> bytes:
        """The Yjs update inside; UpdateRefused when the read key does not open it."""
        try:
            return ChaCha20Poly1305(read_key).decrypt(self.nonce, self.ciphertext, self.header())
        except InvalidTag:
            raise UpdateRefused("the update does not decrypt with the document's read key") from None


def decode_envelope(data: bytes) -> Envelope:
    """Parse an envelope, bounded by MAX_ENVELOPE_SIZE before anything is copied; EnvelopeError otherwise."""
    if len(data) > MAX_ENVELOPE_SIZE:
        raise EnvelopeError(f"update envelope of {len(data)} bytes is over the {MAX_ENVELOPE_SIZE}-byte limit")
    if len(data) < _HEADER_SIZE + 4 + TAG_SIZE + SIGNATURE_SIZE:
        raise EnvelopeError("update envelope too short (unsigned or truncated)")
    if data[0] != VERSION:
        raise EnvelopeError(f"unknown update envelope version {data[0]}")
    length = int.from_bytes(data[_HEADER_SIZE:_HEADER_SIZE + 4], "big")
    if length > MAX_UPDATE_SIZE:
        raise EnvelopeError(f"update of {length} bytes is over the {MAX_UPDATE_SIZE}-byte limit")
    if length < TAG_SIZE:
        raise EnvelopeError("update ciphertext shorter than its authentication tag")
    body = _HEADER_SIZE + 4
    if len(data) != body + length + SIGNATURE_SIZE:
        raise EnvelopeError("update envelope length does not match its ciphertext length (unsigned or truncated)")
    return Envelope(
        doc_id=bytes(data[1:33]),
        writer=bytes(data[33:65]),
        seq=int.from_bytes(data[65:73], "big"),
        nonce=bytes(data[73:_HEADER_SIZE]),
        ciphertext=bytes(data[body:body + length]),
        signature=bytes(data[body + length:]),
    )


def seal(keys: DocKeys, seq: int, update: bytes, nonce: bytes | None = None) -> bytes:
    """The envelope of a local Yjs update: encrypted with the read key and signed with the writer key."""
    if keys.writer is None or keys.read_key is None:
        raise DocError("writing a document needs its read key and a writer key")
    if not 0 <= seq <= MAX_SEQUENCE:
        raise DocError(f"sequence number {seq} out of range")
    nonce = secrets.token_bytes(NONCE_SIZE) if nonce is None else nonce
    draft = Envelope(keys.doc_id, raw_public(keys.writer.public_key()), seq, nonce, b"", b"")
    ciphertext = ChaCha20Poly1305(keys.read_key).encrypt(nonce, update, draft.header())
    if len(ciphertext) > MAX_UPDATE_SIZE:
        raise DocError(f"update of {len(ciphertext)} bytes is over the {MAX_UPDATE_SIZE}-byte limit")
    unsigned = Envelope(draft.doc_id, draft.writer, seq, nonce, ciphertext, b"")
    signature = keys.writer.sign(_SIGN_CONTEXT + unsigned.signed_part())
    return Envelope(draft.doc_id, draft.writer, seq, nonce, ciphertext, signature).encode()


class SeenSequences:
    """The sequence numbers seen from one writer: all below `floor`, plus a set above it, within REPLAY_WINDOW of
    the highest. A gap that falls out of the window counts as seen: its envelope is refused from then on, and its
    changes arrive through sync (state vectors, snapshots) instead. Replay protection is about envelopes, not
    content: a CRDT update applied twice changes nothing, but a replayed one must not be stored or relayed again."""

    def __init__(self, floor: int = 0) -> None:
        self.floor = floor
        self.above: set[int] = set()

    def __contains__(self, seq: int) -> bool:
        return seq < self.floor or seq in self.above

    def next(self) -> int:
        """The lowest sequence number not seen yet."""
        return self.floor

    def highest(self) -> int:
        return max(self.above, default=self.floor - 1)

    def merge(self, other: SeenSequences) -> None:
        """Also count as seen everything `other` has seen."""
        self.floor = max(self.floor, other.floor)
        self.above = {s for s in self.above if s >= self.floor}
        for seq in other.above:
            self.add(seq)

    def add(self, seq: int) -> None:
        if seq in self:
            return
        self.above.add(seq)
        if seq - self.floor >= REPLAY_WINDOW:  # slide the window: forget the oldest gaps
            self.floor = seq - REPLAY_WINDOW + 1
            self.above = {s for s in self.above if s >= self.floor}
        while self.floor in self.above:
            self.above.remove(self.floor)
            self.floor += 1


class TokenBucket:
    """Per-peer rate bounds: each peer's bucket holds up to `burst` tokens and refills at `rate` a second; a cost
    that the bucket cannot pay is refused. At most `max_peers` buckets are kept (the fullest are forgotten first,
    since forgetting a full bucket changes nothing)."""

    def __init__(self, rate: float, burst: float, max_peers: int = 1024) -> None:
        self.rate, self.burst, self.max_peers = rate, burst, max_peers
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # peer → (tokens, time of that count)

    def _tokens(self, peer: Hashable, now: float) -> float:
        tokens, then = self._buckets.get(peer, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - then) * self.rate)

    def allow(self, peer: Hashable, now: float, cost: float = 1.0) -> bool:
        tokens = self._tokens(peer, now)
        if cost > tokens:
            self._buckets[peer] = (tokens, now)
            return False
        self._buckets[peer] = (tokens - cost, now)
        if len(self._buckets) > self.max_peers:
            fullest = max(self._buckets, key=lambda p: self._tokens(p, now))
            del self._buckets[fullest]
        return True


class UpdateGate:
    """The checks of an envelope that need no read key: shape, document, signature, writer rights, sequence, peer
    rate, in order of cost (the signature last). Safe to run on relays. `check` records nothing but the peer's rate;
    `record` marks the sequence seen once the update was stored or applied."""

    def __init__(self, doc_id: bytes, *, messages_per_second: float = 200.0, bytes_per_second: float = 4 << 20,
                 burst_seconds: float = 2.0) -> None:
        self.doc_id = doc_id
        self.writers: set[bytes] = {doc_id}  # the document key may always write
        self.seen: dict[bytes, SeenSequences] = {}
        self._messages = TokenBucket(messages_per_second, messages_per_second * burst_seconds)
        self._bytes = TokenBucket(bytes_per_second, max(bytes_per_second * burst_seconds, MAX_ENVELOPE_SIZE))

    def grant(self, record: bytes) -> bytes:
        """Authorise the writer of a signed grant (GrantError unless it is the document key's); its key."""
        writer = WriterGrant.decode(record, self.doc_id).writer
        self.writers.add(writer)
        return writer

    def sequences(self, writer: bytes) -> SeenSequences:
        return self.seen.setdefault(writer, SeenSequences())

    def check(self, data: bytes, peer: Hashable | None = None, now: float = 0.0) -> Envelope:
        """The verified envelope; a DocError subclass if it must be refused."""
        if peer is not None and not (self._messages.allow(peer, now) and self._bytes.allow(peer, now, len(data))):
            raise RateRefused("peer is over its update rate")
        envelope = decode_envelope(data)
        if envelope.doc_id != self.doc_id:
            raise EnvelopeError("the update is for another document")
        if envelope.seq > MAX_SEQUENCE:
            raise EnvelopeError(f"sequence number {envelope.seq} out of range")
        if envelope.writer not in self.writers:
            raise WriterRefused("the update's writer has no right to write this document")
        if envelope.seq in self.seen.get(envelope.writer, ()):
            raise ReplayRefused(f"sequence {envelope.seq} of this writer was already seen")
        if not envelope.signature_valid():
            raise SignatureRefused("the update's signature is not its writer's")
        return envelope

    def record(self, envelope: Envelope) -> None:
        """Mark the envelope's sequence as seen (after it was stored or applied)."""
        self.sequences(envelope.writer).add(envelope.seq)


class Replica:
    """A document replica: pycrdt's Doc behind the checks. `receive` refuses what `UpdateGate` refuses and any
    Yjs update that is malformed or not integrable now; an accepted update is applied and its sequence recorded."""

    def __init__(self, keys: DocKeys, gate: UpdateGate | None = None) -> None:
        if keys.read_key is None:
            raise DocError("a replica needs the document's read key")
        self.keys = keys
        self.gate = gate or UpdateGate(keys.doc_id)
        self.doc = Doc()
        # a copy of `doc` kept in step with it (each checked update and each local commit lands in both), so that
        # checking an update costs the update, not a copy of the whole document; rebuilt when it falls out of step
        self._scratch: Doc | None = None

    def _scratch_in_step(self, state: dict[int, int]) -> Doc:
        """The scratch copy, rebuilt from the document unless its state vector matches `state` (the document's).
        Deletions do not move a state vector, so a copy may miss a deletion made outside `commit_local`: harmless
        here, since the copy only shows whether pycrdt integrates an update, and deleted items stay in place."""
        if self._scratch is None or parse_state_vector(self._scratch.get_state()) != state:
            self._scratch = Doc()
            self._scratch.apply_update(self.doc.get_update())
        return self._scratch

    def check_update(self, update: bytes) -> None:
        """UpdateRefused unless `update` is one well-formed Yjs update this document can integrate fully now,
        checked on a scratch copy so the real document is never touched by a refused one."""
        try:
            shape = parse_update(update)
            state = parse_state_vector(self.doc.get_state())
        except YUpdateError as exc:
            raise UpdateRefused(f"malformed Yjs update: {exc}") from None
        problems = missing_dependencies(shape, state)
        if problems:
            raise UpdatePending("the update needs changes this document lacks: " + "; ".join(problems[:3]),
                                needed_clocks(shape, state))
        scratch = self._scratch_in_step(state)
        try:
            scratch.apply_update(update)
        except Exception as exc:  # pycrdt raises ValueError; a Rust panic surfaces as PanicException(Exception)
            self._scratch = None  # it may hold part of the refused update
            raise UpdateRefused(f"pycrdt refused the update: {exc}") from None
        after = parse_state_vector(scratch.get_state())
        for client, (_, end) in shape.ranges.items():
            if after.get(client, 0) < end:  # pycrdt kept part of it pending
                self._scratch = None
                raise UpdateRefused(f"the update's items of client {client} were not integrated")

    def open(self, data: bytes, peer: Hashable | None = None, now: float = 0.0) -> tuple[Envelope, bytes]:
        """The verified envelope and its checked Yjs update, not yet applied nor recorded."""
        envelope = self.gate.check(data, peer, now)
        assert self.keys.read_key is not None
        update = envelope.open(self.keys.read_key)
        self.check_update(update)
        return envelope, update

    def receive(self, data: bytes, peer: Hashable | None = None, now: float = 0.0) -> Envelope:
        """Verify, check and apply one envelope from `peer`; a DocError subclass when it is refused."""
        envelope, update = self.open(data, peer, now)
        self.doc.apply_update(update)
        self.gate.record(envelope)
        return envelope

    def commit_local(self, before_state: bytes) -> bytes | None:
        """The envelope of the local changes made since `before_state` (a `doc.get_state()`), signed with the next
        sequence of the local writer and recorded; None when nothing changed."""
        writer = self.keys.writer_id
        if writer is None:
            raise DocError("this replica holds no writer key")
        return self.commit_update(self.doc.get_update(before_state))

    def commit_update(self, update: bytes) -> bytes | None:
        """The envelope of `update`, local changes already applied to `doc` (a transaction's own update, as pycrdt's
        `observe` gives it: unlike `get_update(state)` it does not repeat the document's whole delete set, which
        grows with every deletion), signed with the next sequence of the local writer; None when it is empty."""
        writer = self.keys.writer_id
        if writer is None:
            raise DocError("this replica holds no writer key")
        shape = parse_update(update)
        if not shape.ranges and not shape.deletes:
            return None
        if self._scratch is not None:
            self._scratch.apply_update(update)
        seen = self.gate.sequences(writer)
        seq = max(seen.next(), seen.highest() + 1)
        data = seal(self.keys, seq, update)
        seen.add(seq)
        return data
