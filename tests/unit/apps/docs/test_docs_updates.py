"""The update envelope and every reason an update is refused before it is stored or applied."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycrdt import Doc, Text

from peerloom.apps.docs.keys import DocKeys, WriterGrant, raw_public
from peerloom.apps.docs.updates import (
    MAX_ENVELOPE_SIZE,
    MAX_UPDATE_SIZE,
    REPLAY_WINDOW,
    EnvelopeError,
    RateRefused,
    ReplayRefused,
    Replica,
    SeenSequences,
    SignatureRefused,
    TokenBucket,
    UpdateGate,
    UpdateRefused,
    WriterRefused,
    decode_envelope,
    seal,
)


def text_update(content: str) -> bytes:
    doc = Doc()
    doc.get("t", type=Text).insert(0, content)
    return doc.get_update()


def text_of(replica: Replica) -> str:
    return str(replica.doc.get("t", type=Text))


def test_an_envelope_round_trips_and_applies() -> None:
    keys, _ = DocKeys.new()
    data = seal(keys, 7, text_update("héllo"))
    envelope = decode_envelope(data)
    assert (envelope.doc_id, envelope.writer, envelope.seq) == (keys.doc_id, keys.writer_id, 7)
    assert envelope.encode() == data and envelope.signature_valid()
    assert b"h\xc3\xa9llo" not in data  # encrypted
    reader = Replica(keys.reader())
    reader.receive(data, peer="p", now=0.0)
    assert text_of(reader) == "héllo"


def test_each_refusal_leaves_the_replica_untouched() -> None:
    keys, _ = DocKeys.new()
    good = seal(keys, 0, text_update("ok"))
    stranger = DocKeys(keys.doc_id, keys.read_key, Ed25519PrivateKey.generate())
    tampered = bytearray(good)
    tampered[100] ^= 1
    unsigned = good[:-64]
    zero_signed = good[:-64] + bytes(64)
    other_doc, _ = DocKeys.new()
    cases = [
        (unsigned, EnvelopeError), (zero_signed, SignatureRefused), (bytes(tampered), SignatureRefused),
        (seal(stranger, 0, text_update("evil")), WriterRefused),
        (seal(DocKeys(other_doc.doc_id, keys.read_key, other_doc.writer), 0, text_update("x")), EnvelopeError),
        (b"\x02" + good[1:], EnvelopeError), (good + b"x", EnvelopeError), (b"", EnvelopeError),
        (bytes(MAX_ENVELOPE_SIZE + 1), EnvelopeError),
    ]
    replica = Replica(keys.reader())
    for data, error in cases:
        with pytest.raises(error):
            replica.receive(data)
        assert text_of(replica) == "" and replica.gate.seen.get(keys.writer_id) is None
    replica.receive(good)
    with pytest.raises(ReplayRefused):
        replica.receive(good)
    with pytest.raises(ReplayRefused):  # same sequence, other content: still a replay
        replica.receive(seal(keys, 0, text_update("again")))
    assert text_of(replica) == "ok"


def test_an_oversized_length_field_is_refused_before_reading_on() -> None:
    keys, _ = DocKeys.new()
    data = bytearray(seal(keys, 0, text_update("x")))
    data[85:89] = (MAX_UPDATE_SIZE + 1).to_bytes(4, "big")
    with pytest.raises(EnvelopeError, match="over"):
        decode_envelope(bytes(data))


def test_a_granted_writer_may_write_once_its_grant_is_known() -> None:
    keys, doc_key = DocKeys.new()
    writer = Ed25519PrivateKey.generate()
    granted = DocKeys(keys.doc_id, keys.read_key, writer)
    data = seal(granted, 0, text_update("mine"))
    replica = Replica(keys.reader())
    with pytest.raises(WriterRefused):
        replica.receive(data)
    replica.gate.grant(WriterGrant.issue(doc_key, raw_public(writer.public_key())).encode())
    replica.receive(data)
    assert text_of(replica) == "mine"


def test_out_of_order_sequences_are_accepted_once_each() -> None:
    keys, _ = DocKeys.new()
    source = Replica(keys)
    text = source.doc.get("t", type=Text)
    envelopes = []
    for word in ("a", "b", "c"):
        before = source.doc.get_state()
        text.insert(len(text), word)
        envelopes.append(source.commit_local(before))
    assert [decode_envelope(e).seq for e in envelopes] == [0, 1, 2]
    gate = UpdateGate(keys.doc_id)
    for data in (envelopes[2], envelopes[0], envelopes[1]):
        gate.record(gate.check(data))
    for data in envelopes:
        with pytest.raises(ReplayRefused):
            gate.check(data)
    assert gate.sequences(keys.writer_id).floor == 3


def test_garbage_pycrdt_would_accept_is_refused() -> None:
    keys, _ = DocKeys.new()
    replica = Replica(keys.reader())
    base = Doc()
    text = base.get("t", type=Text)
    text.insert(0, "hello")
    first = base.get_update()
    state = base.get_state()
    text.insert(5, " world")
    second = base.get_update(state)
    # pycrdt itself takes all of these without an error
    cut = Doc()
    cut_text = cut.get("t", type=Text)
    cut_text.insert(0, "héllo")
    del cut_text[0:2]  # UTF-8 offset 2 is inside 'é': pycrdt writes an empty string item
    for garbage in (first + b"junk", second, b"\x00\x00\x01\x05\x01\x00\x03", cut.get_update()):
        Doc().apply_update(garbage)
        with pytest.raises(UpdateRefused):
            replica.check_update(garbage)
    with pytest.raises(UpdateRefused):  # and inside an envelope from the right writer
        replica.receive(seal(keys, 0, second))
    assert text_of(replica) == ""
    replica.receive(seal(keys, 1, first))
    replica.receive(seal(keys, 2, second))
    assert text_of(replica) == "hello world"


def test_a_wrong_read_key_opens_nothing() -> None:
    keys, _ = DocKeys.new()
    data = seal(keys, 0, text_update("secret"))
    other = DocKeys(keys.doc_id, bytes(32))
    with pytest.raises(UpdateRefused):
        Replica(other).receive(data)


def test_rate_bounds_per_peer() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow("b", 0.0)  # another peer has its own bucket
    assert not bucket.allow("a", 0.1) and bucket.allow("a", 0.5)
    keys, _ = DocKeys.new()
    gate = UpdateGate(keys.doc_id, messages_per_second=1.0, burst_seconds=1.0)
    data = seal(keys, 0, text_update("x"))
    gate.check(data, peer="p", now=0.0)
    with pytest.raises(RateRefused):
        gate.check(data, peer="p", now=0.1)
    gate.check(data, peer="p", now=1.2)


def test_the_replay_window_slides_with_the_highest_sequence() -> None:
    seen = SeenSequences()
    for seq in (0, 1, 5):
        seen.add(seq)
    assert 2 not in seen and 5 in seen and seen.floor == 2
    seen.add(REPLAY_WINDOW + 10)  # far ahead (a writer whose earlier updates came in a snapshot): accepted
    assert seen.floor == 11 and 10 in seen and 12 not in seen and REPLAY_WINDOW + 10 in seen
    assert seen.above == {REPLAY_WINDOW + 10}
