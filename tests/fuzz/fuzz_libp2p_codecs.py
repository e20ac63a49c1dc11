"""atheris fuzz target for the libp2p-side codecs: varints and frames, protobuf records, multibase text,
multiaddrs (text and binary), PeerIds, libp2p key encodings and identify messages.

Run: `python tests/fuzz/fuzz_libp2p_codecs.py [corpus dir] [-max_total_time=N]`. The first input byte picks
the target, the rest is its input (text targets read it as UTF-8, undecodable bytes becoming lone
surrogates). Each parser may raise only its own typed error; whatever it accepts must come back unchanged
from its encoder (parse(format(x)) == x), and binary forms that have one canonical encoding must re-encode
to the very bytes that were read.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager

import harness
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from peerloom.codec import multibase as mb
from peerloom.codec.multiaddr import MAX_MULTIADDR_BYTES, Multiaddr, MultiaddrError
from peerloom.codec.protobuf import (
    MAX_FIELD_NUMBER,
    ProtobufError,
    WireType,
    encode_bytes_field,
    encode_varint_field,
    iter_fields,
)
from peerloom.codec.varint import VarintError, decode_varint, encode_frame, encode_varint, read_frame
from peerloom.errors import ProtocolError
from peerloom.identity import (
    KeyEncodingError,
    PeerId,
    PeerIdError,
    decode_private_key,
    decode_public_key,
    encode_private_key,
    encode_public_key,
)
from peerloom.net.identify import (
    MAX_IDENTIFY_SIZE,
    MAX_LISTED,
    IdentifyError,
    IdentifyInfo,
    decode_identify,
    encode_identify,
)

_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_MAX_VERSION_CHARS = 256  # what decode_identify keeps of a version string or protocol id


@contextmanager
def _accepted() -> Iterator[None]:
    """Checks on what a parser accepted: re-reading its own re-encoding must not fail, so an error is a finding."""
    try:
        yield
    except ProtocolError as exc:
        raise AssertionError(f"the re-encoding of accepted input was refused: {exc!r}") from exc


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- varint -------------------------------------------------------------------------------------------------------


def _varint(data: bytes) -> None:
    """The multiformats form (minimal, 9 bytes at most) is canonical; protobuf's looser form still round-trips."""
    offset = data[0] % (len(data) + 1) if data else 0
    try:
        value, end = decode_varint(data, offset)
        assert 0 < end - offset <= 9 and value < 1 << 63
        assert encode_varint(value) == data[offset:end]
    except VarintError:
        pass
    value, end = decode_varint(data, max_bytes=10, minimal=False)
    assert 0 < end <= 10
    again = encode_varint(value, max_bytes=10)
    with _accepted():
        assert len(again) <= end and decode_varint(again, max_bytes=10) == (value, len(again))


def _frame(data: bytes) -> None:
    """A frame is read whole or not yet; waiting never means buffering more than the limit plus its prefix."""
    if not data:
        return
    max_length = data[0] << (data[0] & 7)
    body = data[1:]
    result = read_frame(body, max_length)
    if result is None:
        assert len(body) < len(encode_varint(max_length)) + max_length
        return
    payload, end = result
    assert len(payload) <= max_length
    assert encode_frame(payload) == body[:end]
    with _accepted():
        assert read_frame(body[: end - 1], max_length) is None  # one byte short: still waiting, not an error
        assert read_frame(memoryview(body), max_length) == result


# --- protobuf -----------------------------------------------------------------------------------------------------


def _encode_field(number: int, wire_type: WireType, value: int | bytes) -> bytes:
    if wire_type is WireType.VARINT:
        assert isinstance(value, int)
        return encode_varint_field(number, value)
    if wire_type is WireType.LEN:
        assert isinstance(value, bytes)
        return encode_bytes_field(number, value)
    assert isinstance(value, int)
    width = 8 if wire_type is WireType.I64 else 4
    return encode_varint(number << 3 | wire_type, max_bytes=10) + value.to_bytes(width, "little")


def _protobuf(data: bytes) -> None:
    """Every record read re-encodes (minimally) to a message that reads back the same records."""
    fields = list(iter_fields(data))
    for field in fields:
        assert 1 <= field.number <= MAX_FIELD_NUMBER
        for accessor, wire_type in ((field.as_int, WireType.VARINT), (field.as_bytes, WireType.LEN)):
            try:
                accessor()
            except ProtobufError:
                assert field.wire_type is not wire_type
            else:
                assert field.wire_type is wire_type
    again = b"".join(_encode_field(*field) for field in fields)
    assert len(again) <= len(data)
    with _accepted():
        assert list(iter_fields(again)) == fields


# --- multibase ----------------------------------------------------------------------------------------------------


def _multibase(data: bytes) -> None:
    """Each decoder alone and behind a prefix; accepted text is ASCII and is exactly what the encoder writes."""
    text = _text(data)
    try:
        decoded = mb.b58decode(text)
        assert text.isascii() and mb.b58encode(decoded) == text
    except mb.MultibaseError:
        pass
    try:
        decoded = mb.b32decode(text)
        assert text.isascii() and mb.b32encode(decoded) == text.lower()
    except mb.MultibaseError:
        pass
    try:
        decoded = mb.b16decode(text)
        assert text.isascii() and decoded.hex() == text.lower()
    except mb.MultibaseError:
        pass
    decoded = mb.multibase_decode(text)
    assert text.isascii()
    base = {"z": "base58btc", "b": "base32", "B": "base32upper", "f": "base16", "F": "base16upper"}[text[0]]
    again = mb.multibase_encode(decoded, base)
    assert again == text if base == "base58btc" else again.lower() == text.lower()
    with _accepted():
        assert mb.multibase_decode(again) == decoded


# --- multiaddr ----------------------------------------------------------------------------------------------------


def _check_multiaddr(addr: Multiaddr) -> None:
    """The two forms agree and round-trip, and the accessors either answer or raise MultiaddrError."""
    raw, text = bytes(addr), str(addr)
    assert 0 < len(raw) <= MAX_MULTIADDR_BYTES
    assert Multiaddr(text) == addr and str(Multiaddr(text)) == text
    assert Multiaddr.from_bytes(raw) == addr and hash(Multiaddr.from_bytes(raw)) == hash(addr)
    assert pickle.loads(pickle.dumps(addr)) == addr
    assert len(addr.components) >= 1
    peer = addr.peer_id
    if peer is not None:
        assert addr.components[-1] == ("p2p", peer.to_base58())
        assert PeerId.from_string(str(peer)) == peer
    try:
        bare = addr.without_p2p()
    except MultiaddrError:
        assert peer is not None and len(addr.components) == 1
    else:
        assert bare == addr if peer is None else bare.components == addr.components[:-1]
    try:
        host, port = addr.to_host_port()
    except MultiaddrError:
        pass
    else:
        assert host and 0 <= port <= 0xFFFF
        assert addr.value_for("tcp") == str(port)


def _multiaddr_text(data: bytes) -> None:
    addr = Multiaddr(_text(data))
    with _accepted():
        _check_multiaddr(addr)


def _multiaddr_bytes(data: bytes) -> None:
    addr = Multiaddr.from_bytes(data)
    assert bytes(addr) == data  # the binary form has one encoding: minimal varints and exact value sizes
    with _accepted():
        _check_multiaddr(addr)


# --- PeerId and keys ----------------------------------------------------------------------------------------------


def _check_peer_id(peer: PeerId) -> None:
    assert PeerId(peer.to_bytes()) == peer
    assert PeerId.from_string(peer.to_base58()) == peer
    assert PeerId.from_string(peer.to_cid()) == peer
    try:
        key = peer.extract_public_key()
    except KeyEncodingError:
        return
    if key is None:
        assert peer.to_bytes()[0] == 0x12  # only a SHA-256 id carries no key
        return
    if peer.to_bytes()[2:] == encode_public_key(key):  # the key inlined in its canonical form gives the same id
        assert PeerId.from_public_key(key) == peer


def _peer_id_text(data: bytes) -> None:
    peer = PeerId.from_string(_text(data))
    with _accepted():
        _check_peer_id(peer)


def _peer_id_bytes(data: bytes) -> None:
    peer = PeerId(data)
    assert peer.to_bytes() == data
    with _accepted():
        _check_peer_id(peer)


def _public_key(data: bytes) -> None:
    key = decode_public_key(data)
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    with _accepted():
        assert decode_public_key(encode_public_key(key)).public_bytes(Encoding.Raw, PublicFormat.Raw) == raw


def _private_key(data: bytes) -> None:
    key = decode_private_key(data)
    with _accepted():
        again = decode_private_key(encode_private_key(key))
    assert _seed(again) == _seed(key) and _raw_public(again) == _raw_public(key)


# --- identify -----------------------------------------------------------------------------------------------------


def _check_identify(info: IdentifyInfo) -> None:
    assert len(info.listen_addrs) <= MAX_LISTED and len(info.protocols) <= MAX_LISTED
    assert len(info.protocol_version) <= _MAX_VERSION_CHARS and len(info.agent_version) <= _MAX_VERSION_CHARS
    assert all(len(protocol) <= _MAX_VERSION_CHARS for protocol in info.protocols)
    with _accepted():
        assert decode_identify(encode_identify(info)) == info


def _identify(data: bytes) -> None:
    _check_identify(decode_identify(data))


def _identify_at_limit(data: bytes) -> None:
    """The message behind a public key that brings it to the size limit (less the first byte's slack): the
    region where an encoder that writes more than it read makes messages the decoder refuses."""
    if not data:
        return
    body = data[1:16385]  # longer bodies would change the filler's length prefix
    size = MAX_IDENTIFY_SIZE - data[0] - len(body)
    filler = encode_bytes_field(1, bytes(size - 4))  # a 1-byte key and a 3-byte length for these sizes
    assert len(filler) == size
    _check_identify(decode_identify(filler + body))


TestOneInput = harness.Pick(  # only each parser's own error may escape it
    (_varint, VarintError),
    (_frame, VarintError),
    (_protobuf, ProtobufError),
    (_multibase, mb.MultibaseError),
    (_multiaddr_text, MultiaddrError),
    (_multiaddr_bytes, MultiaddrError),
    (_peer_id_text, PeerIdError),
    (_peer_id_bytes, PeerIdError),
    (_public_key, KeyEncodingError),
    (_private_key, KeyEncodingError),
    (_identify, IdentifyError),
    (_identify_at_limit, IdentifyError),
)


def seeds() -> list[bytes]:
    """Valid inputs for every target, to start a corpus from."""
    peer = PeerId.from_public_key(_KEY.public_key())
    sha_peer = PeerId(bytes([0x12, 0x20]) + bytes(range(32)))
    addrs = [
        Multiaddr(f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}"),
        Multiaddr("/ip6/2001:db8::1/udp/4001/quic-v1"),
        Multiaddr("/dns4/example.com/tcp/443/wss"),
        Multiaddr(f"/dnsaddr/bootstrap.libp2p.io/p2p/{sha_peer}/p2p-circuit/p2p/{peer}"),
    ]
    seed_and_public = _seed(_KEY) + _raw_public(_KEY)
    info = IdentifyInfo(
        protocol_version="ipfs/0.1.0",
        agent_version="peerloom/0.1",
        public_key=encode_public_key(_KEY.public_key()),
        listen_addrs=addrs[:3],
        protocols=["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"],
        observed_addr=Multiaddr("/ip4/192.0.2.7/tcp/50000"),
    )
    i64_record, i32_record = b"\x19" + bytes(range(8)), b"\x25" + bytes(range(4))  # fields 3 and 4
    every_wire_type = encode_varint_field(1, 150) + encode_bytes_field(2, b"testing") + i64_record + i32_record
    return [
        b"\x00" + encode_varint(300),
        b"\x00" + encode_varint((1 << 63) - 1),
        b"\x01\x10" + encode_frame(b"hello") + b"trailing",
        b"\x02" + every_wire_type,
        b"\x02" + encode_identify(info),
        b"\x03" + mb.multibase_encode(peer.to_bytes(), "base58btc").encode(),
        b"\x03" + mb.multibase_encode(b"\x00\xffpeerloom", "base32upper").encode(),
        b"\x03" + mb.multibase_encode(b"\x00\xffpeerloom", "base16").encode(),
        *(b"\x04" + str(addr).encode() for addr in addrs),
        *(b"\x05" + bytes(addr) for addr in addrs),
        b"\x06" + peer.to_base58().encode(),
        b"\x06" + peer.to_cid().encode(),
        b"\x06" + sha_peer.to_base58().encode(),
        b"\x07" + peer.to_bytes(),
        b"\x07" + sha_peer.to_bytes(),
        b"\x08" + encode_public_key(_KEY.public_key()),
        b"\x09" + encode_private_key(_KEY),
        b"\x09" + encode_varint_field(1, 1) + encode_bytes_field(2, seed_and_public + _raw_public(_KEY)),
        b"\x0a" + encode_identify(info),
        b"\x0b\x00" + encode_identify(info),
    ]


if __name__ == "__main__":
    harness.main(TestOneInput)
