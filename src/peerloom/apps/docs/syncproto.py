"""The messages of `/peerloom/doc/1.0.0` streams (sans-I/O): y-protocols framing carrying signed envelopes.

A stream serves one document. Its opener first writes the 32-byte document id; then each side writes frames, each an
unsigned varint length and one y-protocols message (y-protocols `sync.js` and `awareness.js`, lib0 varUint = LEB128):

    message  = varUint(type) payload
    type 0 (sync):      varUint(sync type) varUint8Array(body)
        sync type 0 (step 1):  body = the "have" vector: which envelopes the sender holds (below)
        sync type 1 (step 2):  body = one envelope the receiver lacks; an empty body ends the catch-up
        sync type 2 (update):  body = one envelope (a live edit)
    type 1 (awareness): varUint8Array(y-protocols awareness update), relayed as is (see `awareness`)
    type 8 (grant):     varUint8Array(WriterGrant, 129 bytes): a writer the document key authorised; sent before
                        the updates it signs (types 2 and 3 are y-websocket's auth and query-awareness: not used)

The difference from y-protocols: document content travels only as signed envelopes (`updates`), never as raw Yjs
updates, so every receiver checks the writer's signature before it stores or applies anything, and a peer without
the read key relays and stores ciphertext. A Yjs state vector counts Yjs client clocks, which a peer without the
read key cannot see; step 1 therefore says which envelopes (writer, sequence) the sender holds:

    have = varUint(writers) { writer key (32) varUint(floor) varUint(n) n x varUint(sequence - floor) }

(`SeenSequences`: every sequence below `floor` plus the n listed above it.) Every count and length is bounded by
the bytes left and by MAX_WRITERS / REPLAY_WINDOW before anything is allocated; errors are `SyncMessageError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerloom.apps.docs.keys import GRANT_SIZE, KEY_SIZE, DocError
from peerloom.apps.docs.updates import MAX_ENVELOPE_SIZE, MAX_SEQUENCE, REPLAY_WINDOW, SeenSequences
from peerloom.codec.varint import VarintError, decode_varint, encode_varint

MSG_SYNC, MSG_AWARENESS, MSG_GRANT = 0, 1, 8
SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE = 0, 1, 2
MAX_WRITERS = 1024  # writers one "have" vector may list
MAX_AWARENESS_SIZE = 64 * 1024  # one awareness update (presence: a cursor and a name per client)
MAX_MESSAGE_SIZE = MAX_ENVELOPE_SIZE + 32  # the largest frame: one envelope and its few header bytes
_VARINT = 10  # lib0 writes up to 53-bit numbers: 8 bytes; 10 leaves room and still bounds the read


class SyncMessageError(DocError):
    """A `/peerloom/doc/1.0.0` frame that is malformed or too large."""


@dataclass(frozen=True, slots=True)
class SyncStep1:
    have: dict[bytes, SeenSequences]


@dataclass(frozen=True, slots=True)
class SyncStep2:
    envelope: bytes  # b"": the end of the catch-up


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    envelope: bytes


@dataclass(frozen=True, slots=True)
class AwarenessMessage:
    update: bytes


@dataclass(frozen=True, slots=True)
class GrantMessage:
    record: bytes


SyncMessage = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessMessage | GrantMessage


def _uint(data: bytes, pos: int) -> tuple[int, int]:
    try:
        return decode_varint(data, pos, max_bytes=_VARINT, minimal=False)
    except VarintError as exc:
        raise SyncMessageError(f"bad varint in a doc sync message: {exc}") from None


def _bytes(data: bytes, pos: int, limit: int) -> tuple[bytes, int]:
    length, pos = _uint(data, pos)
    if length > limit:
        raise SyncMessageError(f"a doc sync field of {length} bytes is over the {limit}-byte limit")
    if length > len(data) - pos:
        raise SyncMessageError("truncated doc sync message")
    return data[pos:pos + length], pos + length


def encode_have(have: dict[bytes, SeenSequences]) -> bytes:
    out = [encode_varint(len(have))]
    for writer, seen in sorted(have.items()):
        above = sorted(seen.above)
        out += [writer, encode_varint(seen.floor), encode_varint(len(above))]
        out += [encode_varint(s - seen.floor) for s in above]
    return b"".join(out)


def decode_have(data: bytes) -> dict[bytes, SeenSequences]:
    count, pos = _uint(data, 0)
    if count > MAX_WRITERS or count * (KEY_SIZE + 2) > len(data) - pos:
        raise SyncMessageError(f"a have vector claims {count} writers in {len(data) - pos} bytes")
    have: dict[bytes, SeenSequences] = {}
    for _ in range(count):
        if len(data) - pos < KEY_SIZE:
            raise SyncMessageError("truncated have vector")
        writer = bytes(data[pos:pos + KEY_SIZE])
        pos += KEY_SIZE
        floor, pos = _uint(data, pos)
        n, pos = _uint(data, pos)
        if floor > MAX_SEQUENCE or n > REPLAY_WINDOW or n > len(data) - pos:
            raise SyncMessageError("a have vector entry out of bounds")
        if writer in have:
            raise SyncMessageError("a have vector lists a writer twice")
        seen = SeenSequences(floor)
        for _ in range(n):
            delta, pos = _uint(data, pos)
            if floor + delta > MAX_SEQUENCE:
                raise SyncMessageError("a have vector sequence out of range")
            seen.above.add(floor + delta)
        have[writer] = seen
    if pos != len(data):
        raise SyncMessageError("trailing bytes after a have vector")
    return have


def encode_message(message: SyncMessage) -> bytes:
    """The y-protocols message (without the stream's length prefix)."""
    if isinstance(message, AwarenessMessage):
        return encode_varint(MSG_AWARENESS) + encode_varint(len(message.update)) + message.update
    if isinstance(message, GrantMessage):
        return encode_varint(MSG_GRANT) + encode_varint(len(message.record)) + message.record
    if isinstance(message, SyncStep1):
        kind, body = SYNC_STEP1, encode_have(message.have)
    elif isinstance(message, SyncStep2):
        kind, body = SYNC_STEP2, message.envelope
    else:
        kind, body = SYNC_UPDATE, message.envelope
    return encode_varint(MSG_SYNC) + encode_varint(kind) + encode_varint(len(body)) + body


def encode_frame(message: SyncMessage) -> bytes:
    """The message as it goes on a stream: its length, then itself."""
    body = encode_message(message)
    return encode_varint(len(body)) + body


def decode_message(data: bytes) -> SyncMessage:
    """One message (the payload of a frame); SyncMessageError when malformed, oversized or with trailing bytes."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise SyncMessageError(f"a doc sync message of {len(data)} bytes is over the limit")
    kind, pos = _uint(data, 0)
    if kind == MSG_AWARENESS:
        body, pos = _bytes(data, pos, MAX_AWARENESS_SIZE)
        message: SyncMessage = AwarenessMessage(bytes(body))
    elif kind == MSG_GRANT:
        body, pos = _bytes(data, pos, GRANT_SIZE)
        if len(body) != GRANT_SIZE:
            raise SyncMessageError(f"a grant message is {GRANT_SIZE} bytes")
        message = GrantMessage(bytes(body))
    elif kind == MSG_SYNC:
        sync, pos = _uint(data, pos)
        body, pos = _bytes(data, pos, MAX_ENVELOPE_SIZE)
        if sync == SYNC_STEP1:
            message = SyncStep1(decode_have(body))
        elif sync == SYNC_STEP2:
            message = SyncStep2(bytes(body))
        elif sync == SYNC_UPDATE:
            if not body:
                raise SyncMessageError("an empty update message")
            message = SyncUpdate(bytes(body))
        else:
            raise SyncMessageError(f"unknown sync message type {sync}")
    else:
        raise SyncMessageError(f"unknown doc message type {kind}")
    if pos != len(data):
        raise SyncMessageError("trailing bytes after a doc sync message")
    return message
