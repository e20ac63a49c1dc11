"""The messages between the daemon and a browser editor of a document (sans-I/O), as y-websocket frames them.

Each message is one WebSocket binary frame (lib0 varUint = LEB128; y-protocols `sync.js`, `awareness.js`, `auth.js`):

    message = varUint(type) payload
    type 0 (sync):       varUint(sync type) varUint8Array(body)
        sync type 0 (step 1): body = a Yjs state vector       (answered with step 2: what the other side lacks)
        sync type 1 (step 2): body = a Yjs v1 update
        sync type 2 (update): body = a Yjs v1 update           (a live edit)
    type 1 (awareness):  varUint8Array(y-protocols awareness update)
    type 2 (auth):       varUint(0 = permission denied) varString(reason)      (daemon to browser only)
    type 100 (ack):      varUint(n)                                             (daemon to browser only)

Unlike the peer streams (`syncproto`, signed envelopes), the browser is this node's own user behind the API token:
it sends raw Yjs updates, which the daemon checks, signs and stores (`DocHandle.apply_local`). `ack` is peerloom's
addition: the number of the connection's step-2 and update messages applied and stored durably so far, so the page
can tell saved edits from edits in flight. Everything the browser sends is bounded (MAX_MESSAGE_SIZE) and checked
before use: an update or state vector must be exactly one well-formed Yjs value (`yupdate`); errors are
`BridgeMessageError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerloom.apps.docs.keys import DocError
from peerloom.apps.docs.updates import MAX_UPDATE_SIZE
from peerloom.apps.docs.yupdate import YUpdateError, parse_state_vector, parse_update
from peerloom.codec.varint import VarintError, decode_varint, encode_varint

MSG_SYNC, MSG_AWARENESS, MSG_AUTH, MSG_ACK = 0, 1, 2, 100
SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE = 0, 1, 2
PERMISSION_DENIED = 0
MAX_AWARENESS_SIZE = 64 * 1024  # one awareness update from the browser: its own cursor and name
MAX_STATE_VECTOR_SIZE = 64 * 1024  # ~6,000 clients: far more than one document's editors
MAX_MESSAGE_SIZE = MAX_UPDATE_SIZE + 16  # the largest frame a browser may send: one update and its header
_VARINT = 8  # lib0 writes numbers up to 2^53: at most 8 bytes


class BridgeMessageError(DocError):
    """A message from a browser editor that is malformed, of an unknown type or too large."""


@dataclass(frozen=True, slots=True)
class StateVector:
    """Sync step 1: the browser's state vector; the daemon answers with what the browser lacks."""

    vector: bytes


@dataclass(frozen=True, slots=True)
class Changes:
    """Sync step 2 or update: a Yjs update from the browser (empty: it holds nothing the daemon lacks)."""

    update: bytes
    empty: bool


@dataclass(frozen=True, slots=True)
class Presence:
    """An awareness update: the browser's cursor and name (or its leaving)."""

    update: bytes


BrowserMessage = StateVector | Changes | Presence


def _uint(data: bytes, pos: int) -> tuple[int, int]:
    try:
        return decode_varint(data, pos, max_bytes=_VARINT, minimal=False)
    except VarintError as exc:
        raise BridgeMessageError(f"bad number in an editor message: {exc}") from None


def _body(data: bytes, pos: int, limit: int) -> bytes:
    """The varUint8Array at `pos`, which must end the message."""
    length, pos = _uint(data, pos)
    if length > limit:
        raise BridgeMessageError(f"an editor message field of {length} bytes is over the {limit}-byte limit")
    if length != len(data) - pos:
        raise BridgeMessageError("an editor message is truncated or has trailing bytes")
    return bytes(data[pos:])


def decode_browser_message(data: bytes) -> BrowserMessage:
    """One message from a browser; BridgeMessageError unless well-formed, within bounds and of a known type."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise BridgeMessageError(f"an editor message of {len(data)} bytes is over the limit")
    kind, pos = _uint(data, 0)
    if kind == MSG_AWARENESS:
        return Presence(_body(data, pos, MAX_AWARENESS_SIZE))
    if kind != MSG_SYNC:
        raise BridgeMessageError(f"unknown editor message type {kind}")
    sync, pos = _uint(data, pos)
    try:
        if sync == SYNC_STEP1:
            vector = _body(data, pos, MAX_STATE_VECTOR_SIZE)
            parse_state_vector(vector)
            return StateVector(vector)
        if sync in (SYNC_STEP2, SYNC_UPDATE):
            update = _body(data, pos, MAX_UPDATE_SIZE)
            shape = parse_update(update)
            return Changes(update, empty=not shape.ranges and not shape.deletes)
    except YUpdateError as exc:
        raise BridgeMessageError(f"bad Yjs data from the editor: {exc}") from None
    raise BridgeMessageError(f"unknown editor sync message type {sync}")


def _frame(kind: int, *parts: bytes) -> bytes:
    return encode_varint(kind) + b"".join(parts)


def _array(body: bytes) -> bytes:
    return encode_varint(len(body)) + body


def encode_step1(state_vector: bytes) -> bytes:
    return _frame(MSG_SYNC, encode_varint(SYNC_STEP1), _array(state_vector))


def encode_step2(update: bytes) -> bytes:
    return _frame(MSG_SYNC, encode_varint(SYNC_STEP2), _array(update))


def encode_update(update: bytes) -> bytes:
    return _frame(MSG_SYNC, encode_varint(SYNC_UPDATE), _array(update))


def encode_awareness(update: bytes) -> bytes:
    return _frame(MSG_AWARENESS, _array(update))


def encode_denied(reason: str) -> bytes:
    return _frame(MSG_AUTH, encode_varint(PERMISSION_DENIED), _array(reason.encode()))


def encode_ack(count: int) -> bytes:
    return _frame(MSG_ACK, encode_varint(count))
