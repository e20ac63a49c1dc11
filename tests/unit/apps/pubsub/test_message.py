"""StrictSign and the message id, checked against bytes js-libp2p @libp2p/gossipsub 17.1.1 produced.

The vector: an Ed25519 key from the seed 00 01 .. 1f signed topic "peerloom-test", data "hello peerloom", seqno
18 7a 00 00 00 00 12 34 with js's `RPC.Message.encode` and `SignPrefix`; js's `validateToRawMessage` accepted it and
`msgIdFnStrictSign` gave JS_MESSAGE_ID (node script run once against tests/interop/js's node_modules).
"""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peerloom.apps.pubsub.message import (
    SIGN_PREFIX,
    InvalidMessage,
    RejectReason,
    message_id,
    sign_message,
    verify_message,
)
from peerloom.apps.pubsub.rpc import RPC, Message, decode_rpc, encode_message_fields, encode_rpc
from peerloom.identity import Identity, PeerId, encode_public_key

IDENTITY = Identity(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
SEQNO = bytes.fromhex("187a000000001234")
JS_RPC = bytes.fromhex(
    "1293010a2600240801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8120e68656c6c6f2070656572"
    "6c6f6f6d1a08187a000000001234220d706565726c6f6f6d2d746573742a4045115c012ca919fb35806b149a87df08de2b595a70f52b"
    "18850112cb96070993fe35d585a76ce0fec8ff2a029bff1e267f4bdc51d0131e202503a1fbaf7df003"
)
JS_MESSAGE_ID = bytes.fromhex(
    "0801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8187a000000001234"
)


def test_signing_gives_the_bytes_js_libp2p_gives() -> None:
    assert str(IDENTITY.peer_id) == "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
    msg = sign_message(IDENTITY, "peerloom-test", b"hello peerloom", SEQNO)
    assert msg.key is None  # the Ed25519 key is inlined in `from`
    assert encode_rpc(RPC(publish=(msg,))) == JS_RPC


def test_a_js_message_verifies_and_has_js_message_id() -> None:
    (msg,) = decode_rpc(JS_RPC).publish
    assert verify_message(msg) == IDENTITY.peer_id
    assert message_id(msg) == JS_MESSAGE_ID
    assert len(JS_MESSAGE_ID) == 44


def test_the_message_id_from_a_sent_key_matches_the_inlined_one() -> None:
    msg = sign_message(IDENTITY, "t", b"x", SEQNO)
    with_key = dataclasses.replace(msg, key=encode_public_key(IDENTITY.public_key))
    assert verify_message(with_key) == IDENTITY.peer_id
    assert message_id(with_key) == message_id(msg) == encode_public_key(IDENTITY.public_key) + SEQNO


def test_an_empty_data_field_left_out_by_the_author_still_verifies() -> None:
    unsent = SIGN_PREFIX + encode_message_fields(IDENTITY.peer_id.to_bytes(), None, SEQNO, "t")
    msg = Message("t", b"", IDENTITY.peer_id.to_bytes(), SEQNO, IDENTITY.sign(unsent))
    assert verify_message(msg) == IDENTITY.peer_id
    assert verify_message(sign_message(IDENTITY, "t", b"", SEQNO)) == IDENTITY.peer_id


OTHER = Identity(Ed25519PrivateKey.from_private_bytes(bytes(32)))
GOOD = sign_message(IDENTITY, "t", b"data", SEQNO)


@pytest.mark.parametrize(
    ("msg", "reason", "text"),
    [
        (dataclasses.replace(GOOD, signature=None), RejectReason.MISSING_SIGNATURE, "without a signature"),
        (dataclasses.replace(GOOD, from_peer=None), RejectReason.MISSING_SIGNATURE, "without a `from`"),
        (dataclasses.replace(GOOD, data=b"other"), RejectReason.INVALID_SIGNATURE, "bad message signature"),
        (dataclasses.replace(GOOD, topic="u"), RejectReason.INVALID_SIGNATURE, "bad message signature"),
        (dataclasses.replace(GOOD, seqno=SEQNO[:7]), RejectReason.INVALID_SIGNATURE, "seqno"),
        (dataclasses.replace(GOOD, seqno=None), RejectReason.INVALID_SIGNATURE, "seqno"),
        (dataclasses.replace(GOOD, signature=b"short"), RejectReason.INVALID_SIGNATURE, "bad message signature"),
        (dataclasses.replace(GOOD, from_peer=OTHER.peer_id.to_bytes()), RejectReason.INVALID_SIGNATURE, "signature"),
        (dataclasses.replace(GOOD, key=encode_public_key(OTHER.public_key)), RejectReason.INVALID_SIGNATURE, "derive"),
        (dataclasses.replace(GOOD, key=b"\x08\x01"), RejectReason.INVALID_SIGNATURE, "author"),
        (dataclasses.replace(GOOD, from_peer=b"\x12\x20" + bytes(32)), RejectReason.INVALID_SIGNATURE, "neither"),
        (dataclasses.replace(GOOD, from_peer=b"junk"), RejectReason.INVALID_SIGNATURE, "author"),
    ],
)
def test_each_strictsign_fault_is_named(msg: Message, reason: RejectReason, text: str) -> None:
    with pytest.raises(InvalidMessage, match=text) as info:
        verify_message(msg)
    assert info.value.reason is reason


def test_a_sha256_author_id_needs_the_key_field() -> None:
    sha_author = dataclasses.replace(GOOD, from_peer=PeerId(b"\x12\x20" + bytes(32)).to_bytes())
    with pytest.raises(InvalidMessage):
        message_id(sha_author)
    with pytest.raises(InvalidMessage):
        message_id(dataclasses.replace(GOOD, seqno=None))


def test_seqno_must_be_eight_bytes_to_sign() -> None:
    with pytest.raises(ValueError):
        sign_message(IDENTITY, "t", b"", b"\x01")


def test_a_remembered_verdict_is_not_reused_for_other_bytes() -> None:
    """The verification memo: the same message verifies again; moving a byte between signature and data does not
    ride on it."""
    msg = sign_message(IDENTITY, "t", b"data", SEQNO)
    assert verify_message(msg) == verify_message(msg) == IDENTITY.peer_id
    shifted = dataclasses.replace(msg, signature=msg.signature[:-1], data=msg.signature[-1:] + msg.data)
    with pytest.raises(InvalidMessage):
        verify_message(shifted)
