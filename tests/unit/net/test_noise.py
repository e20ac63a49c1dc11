"""Noise XX (libp2p /noise): spec known answers, the libp2p handshake, the transport, tampering, fuzzing."""

import contextlib
import hashlib
import hmac
import itertools
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerloom.errors import ProtocolError
from peerloom.net.noise import (
    MAX_FRAME,
    MAX_PLAINTEXT,
    PROTOCOL_NAME,
    NoiseError,
    NoiseHandshake,
    NoiseTransport,
    _decode_payload,
    _encode_field,
    _encode_payload,
    _encode_public_key,
    _hkdf,
    _SymmetricState,
    _XXState,
)

YAMUX = "/yamux/1.0.0"


def raw(key) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def split_randomly(data: bytes, rng: random.Random) -> list[bytes]:
    """Cut data into pieces of random size, empty pieces included."""
    pieces, pos = [], 0
    while pos < len(data):
        size = rng.choice([0, 1, 2, 3, rng.randint(1, 64), rng.randint(1, 70000)])
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


def feed(receiver: NoiseHandshake, data: bytes, rng: random.Random) -> bytes:
    return b"".join(receiver.receive(piece) for piece in split_randomly(data, rng))


def handshake() -> tuple[NoiseHandshake, NoiseHandshake]:
    """A finished initiator/responder pair, messages fed in random pieces."""
    rng = random.Random(0)
    initiator, responder = _fresh_pair()
    assert responder.start() == b""
    msg2 = feed(responder, initiator.start(), rng)
    msg3 = feed(initiator, msg2, rng)
    assert feed(responder, msg3, rng) == b""
    return initiator, responder


def transports(seed: int = 0) -> tuple[NoiseTransport, NoiseTransport]:
    """A connected pair with fixed keys (key derivation is covered by the handshake tests)."""
    rng = random.Random(seed)
    to_responder, to_initiator = rng.randbytes(32), rng.randbytes(32)
    return NoiseTransport(to_responder, to_initiator), NoiseTransport(to_initiator, to_responder)


# --- known answers --------------------------------------------------------------------------------------------------


def test_hkdf_matches_the_hmac_chain_of_noise_section_4_3():
    chaining_key, ikm = bytes(range(32)), b"input key material"
    temp_key = hmac.new(chaining_key, ikm, hashlib.sha256).digest()
    out1 = hmac.new(temp_key, b"\x01", hashlib.sha256).digest()
    out2 = hmac.new(temp_key, out1 + b"\x02", hashlib.sha256).digest()
    out3 = hmac.new(temp_key, out2 + b"\x03", hashlib.sha256).digest()
    assert _hkdf(chaining_key, ikm, 2) == (out1, out2)
    assert _hkdf(chaining_key, ikm, 3) == (out1, out2, out3)
    assert (
        _hkdf(chaining_key, b"", 2)[0]
        == hmac.new(hmac.new(chaining_key, b"", hashlib.sha256).digest(), b"\x01", hashlib.sha256).digest()
    )


def test_symmetric_state_initialisation_noise_section_5_2():
    # the protocol name is exactly HASHLEN bytes, so h = ck = the name itself, unhashed
    assert len(PROTOCOL_NAME) == 32
    state = _SymmetricState(PROTOCOL_NAME)
    assert state.h == state.ck == PROTOCOL_NAME
    assert not state.has_key
    assert state.encrypt_and_hash(b"plain") == b"plain"  # no key yet: plaintext, but hashed into h
    assert state.h == hashlib.sha256(PROTOCOL_NAME + b"plain").digest()
    long_name = _SymmetricState(b"Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s")
    assert long_name.h == hashlib.sha256(b"Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s").digest()
    # an empty prologue still costs one MixHash
    xx = _XXState(initiator=True, static_key=X25519PrivateKey.generate())
    assert xx.handshake_hash == hashlib.sha256(PROTOCOL_NAME).digest()


# Noise_XX_25519_ChaChaPoly_SHA256 vector of the cacophony test suite (haskell-cryptography/cacophony,
# vectors/cacophony.txt): handshake messages 0-2, then transport messages alternating from the responder.
CACOPHONY_XX = {
    "prologue": "4a6f686e2047616c74",
    "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
    "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    "handshake_hash": "c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e",
    "messages": [
        (
            "4c756477696720766f6e204d69736573",
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c756477696720766f6e204d69736573",
        ),
        (
            "4d757272617920526f746862617264",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad1f276e038c48378ffce2b65285e08d6b6"
            "8aaa3629a5a8639392490e5b9bd5269c2f1e4f488ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f8814c7194e83f2"
            "3dbd8d162c9326ad",
        ),
        (
            "462e20412e20486179656b",
            "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475b9df0f169ae80a89be0865b57f58c9fea"
            "0d4ec82a286427402f113e4b6ae769a1d95941d49b25030",
        ),
        ("4361726c204d656e676572", "96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df"),
        ("4a65616e2d426170746973746520536179", "3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5"),
        (
            "457567656e2042f6686d20766f6e2042617765726b",
            "eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f",
        ),
    ],
}


def test_xx_core_matches_the_cacophony_vector_byte_for_byte():
    vector = CACOPHONY_XX

    def key(name):
        return X25519PrivateKey.from_private_bytes(bytes.fromhex(vector[name]))

    prologue = bytes.fromhex(vector["prologue"])
    initiator = _XXState(
        initiator=True, static_key=key("init_static"), prologue=prologue, ephemeral_key=key("init_ephemeral")
    )
    responder = _XXState(
        initiator=False, static_key=key("resp_static"), prologue=prologue, ephemeral_key=key("resp_ephemeral")
    )
    messages = [(bytes.fromhex(p), bytes.fromhex(c)) for p, c in vector["messages"]]
    for index, (payload, ciphertext) in enumerate(messages[:3]):
        sender, receiver = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        assert sender.write_message(payload) == ciphertext
        assert receiver.read_message(ciphertext) == payload
    assert initiator.handshake_hash.hex() == responder.handshake_hash.hex() == vector["handshake_hash"]
    assert initiator.remote_static == raw(key("resp_static").public_key())
    assert responder.remote_static == raw(key("init_static").public_key())

    by_initiator, by_responder = NoiseTransport(*initiator.split()), NoiseTransport(*responder.split())
    for index, (payload, ciphertext) in enumerate(messages[3:], start=3):
        sender, receiver = (by_initiator, by_responder) if index % 2 == 0 else (by_responder, by_initiator)
        framed = sender.encrypt(payload)
        assert framed == len(ciphertext).to_bytes(2, "big") + ciphertext
        assert receiver.decrypt(framed) == payload


# --- the libp2p handshake -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_full_handshake_in_random_splits_then_1_mib_messages_both_ways(seed):
    rng = random.Random(seed)
    init_identity, resp_identity = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    initiator = NoiseHandshake(initiator=True, identity_key=init_identity, stream_muxers=[YAMUX, "/mplex/6.7.0"])
    responder = NoiseHandshake(initiator=False, identity_key=resp_identity, stream_muxers=[YAMUX])
    msg1 = initiator.start()
    assert len(msg1) == 2 + 32 and msg1[:2] == b"\x00\x20"  # -> e, no payload (libp2p noise spec)
    msg2 = feed(responder, msg1, rng)
    assert not initiator.complete and not responder.complete
    assert responder.remote_identity is None
    msg3 = feed(initiator, msg2, rng)
    assert initiator.complete and not responder.complete
    assert feed(responder, msg3, rng) == b""
    assert responder.complete

    assert raw(initiator.remote_identity) == raw(resp_identity.public_key())
    assert raw(responder.remote_identity) == raw(init_identity.public_key())
    assert initiator.remote_identity_bytes == b"\x08\x01\x12\x20" + raw(resp_identity.public_key())
    assert responder.remote_identity_bytes == b"\x08\x01\x12\x20" + raw(init_identity.public_key())
    assert initiator.remote_muxers == [YAMUX]
    assert responder.remote_muxers == [YAMUX, "/mplex/6.7.0"]

    outbound, inbound = initiator.transport(), responder.transport()
    for sender, receiver in ((outbound, inbound), (inbound, outbound), (outbound, inbound)):
        message = rng.randbytes(1 << 20)
        wire = sender.encrypt(message)
        assert len(wire) == len(message) + 17 * 18  # 17 frames of <= 65519 bytes, 2 + 16 bytes overhead each
        received = b"".join(receiver.decrypt(piece) for piece in split_randomly(bytes(wire), rng))
        assert received == message


def test_static_key_is_used_and_handshake_messages_have_the_xx_sizes():
    static = X25519PrivateKey.generate()
    initiator = NoiseHandshake(initiator=True, identity_key=Ed25519PrivateKey.generate(), static_key=static)
    responder = NoiseHandshake(initiator=False, identity_key=Ed25519PrivateKey.generate())
    msg2 = responder.receive(initiator.start())
    payload_len = len(responder._payload)
    assert len(msg2) == 2 + 32 + 48 + payload_len + 16
    msg3 = initiator.receive(msg2)
    assert len(msg3) == 2 + 48 + len(initiator._payload) + 16
    responder.receive(msg3)
    assert responder._state.remote_static == raw(static.public_key())


def test_first_transport_frame_sent_with_message_3_is_handed_over():
    initiator = NoiseHandshake(initiator=True, identity_key=Ed25519PrivateKey.generate())
    responder = NoiseHandshake(initiator=False, identity_key=Ed25519PrivateKey.generate())
    msg3 = initiator.receive(responder.receive(initiator.start()))
    outbound = initiator.transport()
    hello, world = bytes(outbound.encrypt(b"hello")), bytes(outbound.encrypt(b"world"))
    assert responder.receive(msg3 + hello + world[:5]) == b""
    inbound = responder.transport()
    assert inbound.decrypt(b"") == b"hello"
    assert inbound.decrypt(world[5:] + outbound.encrypt(b"!")) == b"world!"


def test_misuse_raises_runtime_error():
    initiator = NoiseHandshake(initiator=True, identity_key=Ed25519PrivateKey.generate())
    with pytest.raises(RuntimeError):
        initiator.receive(b"\x00")
    initiator.start()
    with pytest.raises(RuntimeError):
        initiator.start()
    with pytest.raises(RuntimeError):
        initiator.transport()
    done, _ = handshake()
    with pytest.raises(RuntimeError):
        done.receive(b"")


def test_oversize_own_payload_is_refused():
    with pytest.raises(ValueError):
        NoiseHandshake(initiator=True, identity_key=Ed25519PrivateKey.generate(), stream_muxers=["m" * 70000])


def _flip(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 1 << (index % 8)
    return bytes(changed)


def _fresh_pair():
    initiator = NoiseHandshake(initiator=True, identity_key=Ed25519PrivateKey.generate())
    responder = NoiseHandshake(initiator=False, identity_key=Ed25519PrivateKey.generate())
    return initiator, responder


def test_flipped_bit_in_message_1_fails_the_handshake():
    for index in range(2, 34):
        initiator, responder = _fresh_pair()
        msg2 = responder.receive(_flip(initiator.start(), index))
        with pytest.raises(NoiseError):
            initiator.receive(msg2)
        assert initiator.remote_identity is None and not initiator.complete


def test_flipped_bit_anywhere_in_message_2_is_refused():
    initiator, responder = _fresh_pair()
    length = len(responder.receive(initiator.start()))
    for index in range(2, length):
        initiator, responder = _fresh_pair()
        msg2 = responder.receive(initiator.start())
        with pytest.raises(NoiseError):
            initiator.receive(_flip(msg2, index))
        assert initiator.remote_identity is None and not initiator.complete
        with pytest.raises(NoiseError, match="already failed"):
            initiator.receive(msg2)


def test_flipped_bit_anywhere_in_message_3_is_refused():
    initiator, responder = _fresh_pair()
    length = len(initiator.receive(responder.receive(initiator.start())))
    for index in range(2, length):
        initiator, responder = _fresh_pair()
        msg3 = initiator.receive(responder.receive(initiator.start()))
        with pytest.raises(NoiseError):
            responder.receive(_flip(msg3, index))
        assert responder.remote_identity is None and not responder.complete


def test_truncated_handshake_messages_are_refused():
    for length in (0, 31):
        responder = NoiseHandshake(initiator=False, identity_key=Ed25519PrivateKey.generate())
        with pytest.raises(NoiseError, match="too short"):
            responder.receive(length.to_bytes(2, "big") + bytes(length))
    initiator, responder = _fresh_pair()
    msg2 = responder.receive(initiator.start())
    with pytest.raises(NoiseError):
        initiator.receive(b"\x00\x5f" + msg2[2 : 2 + 0x5F])  # one byte short of e + s + tag
    initiator, responder = _fresh_pair()
    msg3 = initiator.receive(responder.receive(initiator.start()))
    with pytest.raises(NoiseError):
        responder.receive(b"\x00\x3f" + msg3[2 : 2 + 0x3F])


def test_low_order_ephemeral_key_is_refused():
    responder = NoiseHandshake(initiator=False, identity_key=Ed25519PrivateKey.generate())
    with pytest.raises(NoiseError, match="X25519"):
        responder.receive(b"\x00\x20" + bytes(32))


def _handshake_with_forged_payload(forge_responder: bool, make_payload):
    """Run a handshake where one side's payload is replaced by make_payload(identity, static public key)."""
    initiator, responder = _fresh_pair()
    forger = responder if forge_responder else initiator
    identity = Ed25519PrivateKey.generate()
    forger._payload = make_payload(identity, raw(forger._state._s.public_key()))
    msg2 = responder.receive(initiator.start())
    if forge_responder:
        return initiator, msg2
    return responder, initiator.receive(msg2)


def _signed_payload(identity, signed_static, identity_bytes=None):
    signature = identity.sign(b"noise-libp2p-static-key:" + signed_static)
    key = identity_bytes if identity_bytes is not None else _encode_public_key(identity.public_key())
    return _encode_payload(key, signature, [])


@pytest.mark.parametrize("forge_responder", [True, False])
def test_signature_over_a_different_static_key_is_refused(forge_responder):
    other_static = raw(X25519PrivateKey.generate().public_key())
    victim, message = _handshake_with_forged_payload(
        forge_responder, lambda identity, static: _signed_payload(identity, other_static)
    )
    with pytest.raises(NoiseError, match="signature"):
        victim.receive(message)
    assert victim.remote_identity is None and victim.remote_muxers == []


@pytest.mark.parametrize("forge_responder", [True, False])
def test_signature_by_another_identity_is_refused(forge_responder):
    impostor = Ed25519PrivateKey.generate()
    victim, message = _handshake_with_forged_payload(
        forge_responder,
        lambda identity, static: _signed_payload(
            identity, static, identity_bytes=_encode_public_key(impostor.public_key())
        ),
    )
    with pytest.raises(NoiseError, match="signature"):
        victim.receive(message)


@pytest.mark.parametrize(
    ("identity_bytes", "match"),
    [
        (b"\x08\x00\x12\x20" + bytes(32), "key type 0"),  # RSA
        (b"\x08\x02\x12\x21\x02" + bytes(32), "key type 2"),  # Secp256k1
        (b"\x08\x03\x12\x20" + bytes(32), "key type 3"),  # ECDSA
        (b"\x12\x20" + bytes(32), "key type None"),  # Type missing
        (b"\x08\x01\x12\x1f" + bytes(31), "32 bytes"),
        (b"\x08\x01", "32 bytes"),
        (b"\x0a\x01\x01\x12\x20" + bytes(32), "wire type"),  # Type as bytes
        (b"\x08\x01\x12\x40", "truncated"),
    ],
)
def test_wrong_identity_key_encodings_are_refused(identity_bytes, match):
    victim, message = _handshake_with_forged_payload(
        True, lambda identity, static: _signed_payload(identity, static, identity_bytes=identity_bytes)
    )
    with pytest.raises(NoiseError, match=match):
        victim.receive(message)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        _encode_field(1, b"\x08\x01\x12\x20" + bytes(32)),  # no signature
        _encode_field(2, bytes(64)),  # no key
        b"\x08\x01",  # identity_key as a varint
        b"\x0b\x00",  # a group
        b"\x02\x00",  # field number 0
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # overlong varint
        b"\x0a",  # truncated
        b"\x09\x00\x00",  # truncated fixed64
        _encode_field(1, b"k") + _encode_field(2, b"s") + _encode_field(4, _encode_field(2, b"\xff")),  # not UTF-8
        _encode_field(1, b"k") + _encode_field(2, b"s") + _encode_field(4, b"\x12\x05ab"),  # truncated extension
    ],
)
def test_malformed_payloads_are_refused(payload):
    with pytest.raises(NoiseError):
        _decode_payload(payload)


def test_payload_decoding_skips_unknown_fields_and_reads_extensions():
    extensions = _encode_field(1, b"certhash") + _encode_field(2, YAMUX.encode()) + b"\x18\x05"
    payload = (
        _encode_field(4, extensions)
        + _encode_field(3, b"early data of an older revision")
        + b"\x2d\x00\x00\x00\x00"  # fixed32 field 5
        + _encode_field(2, b"sig")
        + _encode_field(1, b"key")
        + _encode_field(4, _encode_field(2, b"/mplex/6.7.0"))
    )
    assert _decode_payload(payload) == (b"key", b"sig", [YAMUX, "/mplex/6.7.0"])
    too_many = _encode_field(1, b"k") + _encode_field(2, b"s") + _encode_field(4, _encode_field(2, b"m") * 257)
    with pytest.raises(NoiseError, match="too many"):
        _decode_payload(too_many)


def test_own_payload_encoding_is_exact():
    identity = Ed25519PrivateKey.generate()
    key = _encode_public_key(identity.public_key())
    assert key == b"\x08\x01\x12\x20" + raw(identity.public_key())
    payload = _encode_payload(key, b"S" * 64, [YAMUX])
    ext = b"\x12\x0c" + YAMUX.encode()
    assert payload == b"\x0a\x24" + key + b"\x12\x40" + b"S" * 64 + b"\x22" + bytes([len(ext)]) + ext
    assert _encode_payload(key, b"S" * 64, []) == b"\x0a\x24" + key + b"\x12\x40" + b"S" * 64


# --- the transport --------------------------------------------------------------------------------------------------


def test_frame_boundaries_and_empty_writes():
    outbound, inbound = transports()
    assert outbound.encrypt(b"") == b""
    assert inbound.decrypt(b"") == b""
    one = outbound.encrypt(bytes(MAX_PLAINTEXT))
    assert len(one) == 2 + MAX_FRAME and one[:2] == b"\xff\xff"
    two = outbound.encrypt(memoryview(bytes(MAX_PLAINTEXT + 1)))
    assert two[:2] == b"\xff\xff" and two[2 + MAX_FRAME : 4 + MAX_FRAME] == b"\x00\x11"
    assert len(two) == 2 + MAX_FRAME + 2 + 17
    assert inbound.decrypt(one + two) == bytes(2 * MAX_PLAINTEXT + 1)


def test_frame_with_only_a_tag_is_an_empty_plaintext():
    outbound, inbound = transports()
    # an encrypted empty plaintext (a 16-byte tag alone) is a valid frame, though encrypt() never sends one
    empty = bytearray(16)
    outbound._send.encrypt_into(bytes(12), b"", None, empty)
    outbound._send_n = 1
    assert inbound.decrypt(b"\x00\x10" + bytes(empty)) == b""
    partial = outbound.encrypt(b"x")
    assert inbound.decrypt(partial[:1]) == b""
    assert inbound.decrypt(partial[1:3]) == b""
    assert inbound.decrypt(partial[3:]) == b"x"


@pytest.mark.parametrize("frame_length", [0, 1, 15])
def test_frames_shorter_than_the_tag_are_refused(frame_length):
    _, inbound = transports()
    with pytest.raises(NoiseError, match="shorter"):
        inbound.decrypt(frame_length.to_bytes(2, "big") + bytes(frame_length))
    with pytest.raises(NoiseError, match="failed"):
        inbound.decrypt(b"")


def test_flipped_bit_in_any_transport_frame_byte_is_refused():
    outbound, _ = transports()
    first = bytes(outbound.encrypt(b"first frame"))
    for index in range(2, len(first)):
        _, inbound = transports()
        with pytest.raises(NoiseError, match="authentication"):
            inbound.decrypt(_flip(first, index))
    big = bytes(outbound.encrypt(bytes(3 * MAX_PLAINTEXT)))
    for index in (2, 1000, 2 + MAX_FRAME - 1, 2 * (2 + MAX_FRAME) + 2, len(big) - 1):
        _, inbound = transports()
        assert inbound.decrypt(first) == b"first frame"
        with pytest.raises(NoiseError, match="authentication"):
            inbound.decrypt(_flip(big, index))


def test_a_shortened_length_prefix_is_refused():
    outbound, inbound = transports()
    wire = bytearray(outbound.encrypt(b"twenty bytes of data"))
    wire[1] -= 1
    with pytest.raises(NoiseError):
        inbound.decrypt(wire)


def test_replayed_reordered_and_cross_direction_frames_are_refused():
    outbound, inbound = transports()
    first, second = bytes(outbound.encrypt(b"a")), bytes(outbound.encrypt(b"b"))
    with pytest.raises(NoiseError):
        inbound.decrypt(second)
    outbound, inbound = transports()
    first = bytes(outbound.encrypt(b"a"))
    assert inbound.decrypt(first) == b"a"
    with pytest.raises(NoiseError):
        inbound.decrypt(first)
    outbound, _ = transports()
    with pytest.raises(NoiseError):
        outbound.decrypt(outbound.encrypt(b"to myself"))


def test_nonce_exhaustion_closes_the_connection():
    outbound, inbound = transports()
    outbound._send_n = inbound._receive_n = 2**64 - 3
    wire = outbound.encrypt(b"last")  # nonce 2^64-3
    wire += outbound.encrypt(b"final")  # nonce 2^64-2, the last one allowed
    with pytest.raises(NoiseError, match="nonce"):
        outbound.encrypt(b"one too many")
    assert inbound.decrypt(wire) == b"lastfinal"
    with pytest.raises(NoiseError, match="nonce"):
        inbound.decrypt(b"\x00\x10" + bytes(16))
    multi, _ = transports()
    multi._send_n = 2**64 - 3
    with pytest.raises(NoiseError, match="nonce"):
        multi.encrypt(bytes(3 * MAX_PLAINTEXT))  # three frames need nonces up to 2^64-1
    assert multi._send_n == 2**64 - 3


def test_noise_error_is_a_protocol_error():
    assert issubclass(NoiseError, ProtocolError)


# --- property tests: random bytes raise only NoiseError --------------------------------------------------------------

_INITIATOR_IDENTITY = Ed25519PrivateKey.generate()
_RESPONDER_IDENTITY = Ed25519PrivateKey.generate()
_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.lists(st.binary(max_size=300), max_size=5), st.booleans())
def test_random_bytes_into_receive_raise_only_noise_error(chunks, as_initiator):
    side = NoiseHandshake(initiator=as_initiator, identity_key=_INITIATOR_IDENTITY)
    side.start()
    for chunk in chunks:
        try:
            side.receive(chunk)
        except NoiseError:
            return


@_FUZZ
@given(st.binary(max_size=200))
def test_random_message_2_bodies_raise_only_noise_error(body):
    initiator = NoiseHandshake(initiator=True, identity_key=_INITIATOR_IDENTITY)
    initiator.start()
    try:
        initiator.receive(len(body).to_bytes(2, "big") + body)
    except NoiseError:
        pass


@_FUZZ
@given(st.lists(st.binary(max_size=200), max_size=5))
def test_random_bytes_into_decrypt_raise_only_noise_error(chunks):
    _, inbound = transports()
    for chunk in chunks:
        try:
            assert inbound.decrypt(chunk) == b""
        except NoiseError:
            return


@_FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=2000), max_size=6))
def test_any_split_of_the_ciphertext_decrypts_the_same(message, cuts):
    outbound, inbound = transports()
    wire = bytes(outbound.encrypt(message) + outbound.encrypt(message))
    bounds = [0, *sorted(cut % (len(wire) + 1) for cut in cuts), len(wire)]
    received = b"".join(inbound.decrypt(wire[a:b]) for a, b in itertools.pairwise(bounds))
    assert received == message + message


# --- encrypt_into / decrypt_into: reused buffers ----------------------------------------------------------------------


def _yamux_like_parts(rng: random.Random, total: int) -> list[bytes | memoryview]:
    """Pieces as yamux hands them over: 12-byte headers and payload views of larger buffers, in random sizes."""
    parts: list[bytes | memoryview] = []
    while total > 0:
        payload = memoryview(rng.randbytes(min(total, rng.choice([1, 100, 65524, 70000]))))
        parts += [rng.randbytes(12), payload]
        total -= 12 + len(payload)
    return parts


@pytest.mark.parametrize("seed", range(4))
def test_encrypt_into_a_reused_buffer_makes_the_frames_encrypt_makes(seed):
    rng = random.Random(seed)
    outbound, inbound = transports(seed)
    twin, _ = transports(seed)  # the same keys and nonces: encrypt() must give the very same bytes
    out = bytearray(b"\xaa" * (3 << 20))  # reused, and never clean
    for total in (1, 12, MAX_PLAINTEXT - 1, MAX_PLAINTEXT, MAX_PLAINTEXT + 1, 1 << 20, 3 * MAX_PLAINTEXT + 7):
        parts = _yamux_like_parts(rng, total)
        joined = b"".join(parts)
        used = outbound.encrypt_into(parts, out)
        assert used == NoiseTransport.sealed_size(len(joined))
        assert out[:used] == twin.encrypt(joined)
        assert inbound.decrypt(out[:used]) == joined
    assert outbound.encrypt_into([], out) == 0 and outbound.encrypt_into([b"", memoryview(b"")], out) == 0


def test_encrypt_into_refuses_a_short_buffer_and_a_spent_nonce_without_using_one():
    outbound, inbound = transports()
    with pytest.raises(ValueError, match="needs"):
        outbound.encrypt_into([bytes(MAX_PLAINTEXT + 1)], bytearray(NoiseTransport.sealed_size(MAX_PLAINTEXT + 1) - 1))
    out = bytearray(100)
    used = outbound.encrypt_into([b"still ", b"nonce ", memoryview(b"zero")], out)
    assert inbound.decrypt(out[:used]) == b"still nonce zero"
    outbound._send_n = 2**64 - 2
    with pytest.raises(NoiseError, match="nonce"):
        outbound.encrypt_into([bytes(MAX_PLAINTEXT + 1)], bytearray(1 << 17))
    assert outbound.encrypt_into([b"last"], out) == 2 + 4 + 16


def _feed_into(inbound: NoiseTransport, wire: bytes, cuts: list[int], room: int, *, whole: bool = True) -> bytes:
    """Drive decrypt_into as the connection does: bytes arrive in pieces; whole frames are decrypted into a reused
    output buffer of `room` bytes; what is left waits for the next piece (and, with `whole`, nothing is left)."""
    out = bytearray(room)
    pending = bytearray()
    plaintext = bytearray()
    for a, b in itertools.pairwise([0, *cuts, len(wire)]):
        pending += wire[a:b]
        while True:
            used, size = inbound.decrypt_into(memoryview(pending), out)
            plaintext += out[:size]
            del pending[:used]
            if not used:
                break
    assert not (whole and pending)
    return bytes(plaintext)


def test_decrypt_into_with_the_ciphertext_split_at_every_offset():
    messages = [b"", b"a", bytes(range(40)), b"xyz" * 9]
    outbound, _ = transports()
    wire = b"".join(bytes(outbound.encrypt(m)) for m in messages if m)
    wire += b"\x00\x10" + bytes(16)  # a tag-only frame at nonce 3: patched below into a valid empty frame
    empty = bytearray(16)
    outbound._send.encrypt_into(bytes(4) + (3).to_bytes(8, "little"), b"", None, empty)
    wire = wire[:-16] + bytes(empty)
    expected = b"".join(messages)
    for cut in range(len(wire) + 1):
        _, inbound = transports()
        assert _feed_into(inbound, wire, [cut], room=MAX_PLAINTEXT) == expected
    _, inbound = transports()
    assert _feed_into(inbound, wire, list(range(1, len(wire))), room=MAX_PLAINTEXT) == expected  # byte by byte


@_FUZZ
@given(st.lists(st.integers(min_value=0, max_value=4 * MAX_FRAME), max_size=8), st.integers(0, 3))
def test_decrypt_into_recovers_large_frames_in_any_split_and_any_room(cuts, room_frames):
    outbound, _ = transports()
    payload = random.Random(len(cuts)).randbytes(3 * MAX_PLAINTEXT + 1000)
    wire = bytes(outbound.encrypt(payload[:5])) + bytes(outbound.encrypt(payload[5:]))
    room = MAX_PLAINTEXT + room_frames * MAX_PLAINTEXT  # room for one to four whole frames per call
    _, inbound = transports()
    assert _feed_into(inbound, wire, sorted(c % (len(wire) + 1) for c in cuts), room) == payload


def test_decrypt_into_stops_where_the_output_is_full_and_refuses_no_room_at_all():
    outbound, inbound = transports()
    wire = bytes(outbound.encrypt(b"0123456789")) + bytes(outbound.encrypt(b"abcdef"))
    out = bytearray(12)
    assert inbound.decrypt_into(wire, out) == (2 + 10 + 16, 10)  # the second frame (6 bytes) would not fit
    assert out[:10] == b"0123456789"
    with pytest.raises(ValueError, match="room"):
        inbound.decrypt_into(wire[28:], bytearray(5))
    assert inbound.decrypt_into(memoryview(wire)[28:], memoryview(out)[2:]) == (len(wire) - 28, 6)
    assert out[2:8] == b"abcdef"
    assert inbound.decrypt_into(b"\x00", out) == (0, 0)  # half a length prefix: nothing to do yet


def test_decrypt_into_refuses_what_decrypt_refuses():
    outbound, inbound = transports()
    good = bytes(outbound.encrypt(b"first")) + bytes(outbound.encrypt(b"second"))
    for index in (2, 10, len(good) - 1):
        _, inbound = transports()
        with pytest.raises(NoiseError, match="authentication"):
            inbound.decrypt_into(_flip(good, index), bytearray(100))
        with pytest.raises(NoiseError, match="failed"):
            inbound.decrypt_into(good, bytearray(100))  # the transport stays failed
    _, inbound = transports()
    with pytest.raises(NoiseError, match="shorter"):
        inbound.decrypt_into(b"\x00\x0f" + bytes(15), bytearray(100))
    _, inbound = transports()
    inbound._receive_n = 2**64 - 1
    with pytest.raises(NoiseError, match="nonce"):
        inbound.decrypt_into(good, bytearray(100))


def test_bytes_handed_over_by_the_handshake_are_taken_before_decrypt_into():
    outbound, _ = transports()
    wire = bytes(outbound.encrypt(b"sent with message 3")) + bytes(outbound.encrypt(b"and more"))
    rng = random.Random(0)  # the keys of transports(): this is its inbound side, with bytes handed over
    to_responder, to_initiator = rng.randbytes(32), rng.randbytes(32)
    inbound = NoiseTransport(to_initiator, to_responder, wire[:30])
    with pytest.raises(RuntimeError, match="take_pending"):
        inbound.decrypt_into(wire[30:], bytearray(100))
    held = inbound.take_pending()
    assert held == wire[:30] and inbound.take_pending() == b""
    assert _feed_into(inbound, held + wire[30:], [], room=100) == b"sent with message 3and more"


@_FUZZ
@given(st.lists(st.binary(max_size=200), max_size=5))
def test_random_bytes_into_decrypt_into_raise_only_noise_error(chunks):
    _, inbound = transports()
    cuts = list(itertools.accumulate(len(c) for c in chunks))[:-1]
    with contextlib.suppress(NoiseError):
        assert _feed_into(inbound, b"".join(chunks), cuts, MAX_PLAINTEXT, whole=False) == b""
