"""StrictSign message authoring and checking, and the message id js-libp2p gives a signed message.

pubsub spec, "Message Signing": the signature is made over `libp2p-pubsub:` followed by the `Message` protobuf
without its `signature` and `key` fields; `key` is sent only when the public key cannot be read from the `from`
PeerId (an Ed25519 key is inlined in it, so peerloom never sends `key`). The checks follow js-libp2p's
`validateToRawMessage` for StrictSign: an 8-byte seqno, a signature, a valid `from`, a `key` (when present) that
derives that `from`, and a valid signature.

The message id is that of `@libp2p/gossipsub` 17.1.1 (`utils/msgIdFn.ts`, `msgIdFnStrictSign`): the author's public
key as the libp2p `PublicKey` protobuf followed by the seqno as 8 big-endian bytes. For an Ed25519 author that is
the 36 bytes inlined in the PeerId, then the seqno: 44 bytes.
"""

from __future__ import annotations

import enum
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from peerloom.apps.pubsub.rpc import Message, PubsubError, encode_message_fields
from peerloom.errors import ProtocolError
from peerloom.identity import Identity, PeerId, decode_public_key, encode_public_key

SIGN_PREFIX = b"libp2p-pubsub:"
SEQNO_SIZE = 8
# An Ed25519 PeerId: identity multihash (0x00), length 36, then the PublicKey protobuf {Type=1, Data=32 bytes}.
_ED25519_ID_PREFIX = bytes([0x00, 36, 0x08, 0x01, 0x12, 32])


class RejectReason(enum.Enum):
    """Why a message is refused; the router hands it to the peer score (score.py re-exports this enum)."""

    MISSING_SIGNATURE = "missing signature"
    INVALID_SIGNATURE = "invalid signature"
    SELF_ORIGIN = "self originated message"
    VALIDATION_REJECT = "validation rejected"
    VALIDATION_IGNORE = "validation ignored"
    BLACKLISTED = "blacklisted peer"


class InvalidMessage(PubsubError):
    """A message that fails the StrictSign checks; `reason` is what the peer score is told."""

    def __init__(self, text: str, reason: RejectReason = RejectReason.INVALID_SIGNATURE) -> None:
        super().__init__(text)
        self.reason = reason


def sign_message(identity: Identity, topic: str, data: bytes, seqno: bytes) -> Message:
    """A StrictSign message by identity; seqno must be 8 bytes (a big-endian counter, pubsub spec)."""
    if len(seqno) != SEQNO_SIZE:
        raise ValueError(f"a pubsub seqno is {SEQNO_SIZE} bytes, not {len(seqno)}")
    from_peer = identity.peer_id.to_bytes()
    signature = identity.sign(SIGN_PREFIX + encode_message_fields(from_peer, data, seqno, topic))
    return Message(topic, data, from_peer, seqno, signature)


def _author_key(msg: Message) -> tuple[PeerId, Ed25519PublicKey]:
    """The `from` PeerId and the key that must have signed: `key` when sent (it must derive `from`), else the
    key inlined in `from`."""
    if msg.from_peer is None:
        raise InvalidMessage("signed message without a `from` peer id", RejectReason.MISSING_SIGNATURE)
    try:
        author = PeerId(msg.from_peer)
        if msg.key is not None:
            key = decode_public_key(msg.key)
            if PeerId.from_public_key(key) != author:
                raise InvalidMessage("the message's `key` does not derive its `from` peer id")
            return author, key
        inlined = author.extract_public_key()
    except ProtocolError as exc:
        raise InvalidMessage(f"bad message author: {exc}") from None
    if inlined is None:
        raise InvalidMessage("the message's author key is neither sent nor inlined in its peer id")
    return author, inlined


_CHECKED_MAX = 4096
_checked: dict[bytes, bool] = {}  # digest of (key, signature, signed bytes) -> valid; oldest first


def _signature_ok(raw_key: bytes, signature: bytes, signed: bytes) -> bool:
    """Ed25519 verification, memoised by a digest of its inputs (a pure function of them): a simulator running many
    routers in one process checks each message once instead of once per router. The memo keeps 4096 digests, not
    the messages, so large messages cost no memory there; the signature's length is hashed too, so no split of the
    same bytes between signature and message can reuse another's verdict."""
    digest = hashlib.sha256(raw_key + len(signature).to_bytes(4, "big") + signature + signed).digest()
    valid = _checked.get(digest)
    if valid is None:
        try:
            Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, signed)
            valid = True
        except (InvalidSignature, ValueError):
            valid = False
        if len(_checked) >= _CHECKED_MAX:
            del _checked[next(iter(_checked))]
        _checked[digest] = valid
    return valid


def verify_message(msg: Message) -> PeerId:
    """The author of a StrictSign message; InvalidMessage saying what is wrong when a check fails."""
    if msg.signature is None:
        raise InvalidMessage("message without a signature", RejectReason.MISSING_SIGNATURE)
    if msg.seqno is None or len(msg.seqno) != SEQNO_SIZE:
        raise InvalidMessage(f"message seqno must be {SEQNO_SIZE} bytes")
    author, key = _author_key(msg)
    raw_key = encode_public_key(key)[4:]
    signed = SIGN_PREFIX + encode_message_fields(msg.from_peer, msg.data, msg.seqno, msg.topic)
    if _signature_ok(raw_key, msg.signature, signed):
        return author
    # An empty `data` may have been left out by its author (go-libp2p does so for nil data): check that form too.
    if not msg.data:
        unsent = SIGN_PREFIX + encode_message_fields(msg.from_peer, None, msg.seqno, msg.topic)
        if _signature_ok(raw_key, msg.signature, unsent):
            return author
    raise InvalidMessage("bad message signature")


def message_id(msg: Message) -> bytes:
    """js-libp2p's StrictSign message id: PublicKey protobuf of the author, then the 8-byte seqno.

    InvalidMessage when the message has no seqno or no readable author key (verify_message refuses those first).
    """
    if msg.seqno is None:
        raise InvalidMessage("message without a seqno")
    from_peer = msg.from_peer
    if from_peer is not None and len(from_peer) == 38 and from_peer.startswith(_ED25519_ID_PREFIX):
        return from_peer[2:] + msg.seqno  # the canonical Ed25519 protobuf, as inlined: no decoding needed
    _, key = _author_key(msg)
    return encode_public_key(key) + msg.seqno
