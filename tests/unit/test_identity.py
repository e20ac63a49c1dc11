"""Identity: the peer-ids spec vectors, PeerId text forms, key encodings, and the key file's mode and atomicity."""

import os
import pickle
import stat
import threading

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from peerloom.codec.protobuf import encode_bytes_field, encode_varint_field
from peerloom.errors import PeerloomError, ProtocolError
from peerloom.identity import (
    KEY_FILE_NAME,
    Identity,
    IdentityError,
    KeyEncodingError,
    KeyType,
    PeerId,
    PeerIdError,
    UnsupportedKeyTypeError,
    decode_private_key,
    decode_public_key,
    encode_private_key,
    encode_public_key,
)

# peer-ids spec, "Test vectors": an Ed25519 PrivateKey and its PublicKey protobuf
SPEC_PRIVATE_KEY = bytes.fromhex(
    "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d"
    "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
SPEC_PUBLIC_KEY = bytes.fromhex("080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
SPEC_PEER_ID = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"  # that key's id (as rust- and go-libp2p give)
# peer-ids spec, "String representation": one SHA-256 peer id in both text forms
SHA256_ID = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
SHA256_CID = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"
ED25519_ID = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


def raw(public_key) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_message(key_type: int | None, data: bytes | None) -> bytes:
    out = b"" if key_type is None else encode_varint_field(1, key_type)
    return out + (b"" if data is None else encode_bytes_field(2, data))


# --- key encodings ------------------------------------------------------------------------------------------------


def test_spec_vector_private_and_public_key():
    key = decode_private_key(SPEC_PRIVATE_KEY)
    assert encode_private_key(key) == SPEC_PRIVATE_KEY
    assert encode_public_key(key.public_key()) == SPEC_PUBLIC_KEY
    assert raw(decode_public_key(SPEC_PUBLIC_KEY)) == SPEC_PUBLIC_KEY[4:]


def test_spec_vector_peer_id():
    key = decode_private_key(SPEC_PRIVATE_KEY)
    peer = PeerId.from_public_key(key.public_key())
    assert peer.to_bytes() == b"\x00\x24" + SPEC_PUBLIC_KEY  # identity multihash of the 36-byte protobuf
    assert peer.to_base58() == str(peer) == SPEC_PEER_ID
    assert peer.to_cid().startswith("bafzaa")
    assert PeerId.from_string(peer.to_cid()) == peer
    assert raw(peer.extract_public_key()) == raw(key.public_key())


def test_legacy_96_byte_private_key_is_read():
    key_data = SPEC_PRIVATE_KEY[4:]
    legacy = key_message(KeyType.ED25519, key_data + key_data[32:])
    assert encode_private_key(decode_private_key(legacy)) == SPEC_PRIVATE_KEY
    mismatched = key_message(KeyType.ED25519, key_data + bytes(32))
    with pytest.raises(KeyEncodingError, match="differ"):
        decode_private_key(mismatched)


def test_private_key_whose_public_half_does_not_match_is_refused():
    key_data = bytearray(SPEC_PRIVATE_KEY[4:])
    key_data[40] ^= 1
    with pytest.raises(KeyEncodingError, match="does not match"):
        decode_private_key(key_message(KeyType.ED25519, bytes(key_data)))


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (key_message(KeyType.RSA, b"der"), UnsupportedKeyTypeError, "key type 0 \\(RSA\\)"),
        (key_message(KeyType.SECP256K1, bytes(33)), UnsupportedKeyTypeError, "key type 2 \\(SECP256K1\\)"),
        (key_message(KeyType.ECDSA, b"der"), UnsupportedKeyTypeError, "key type 3 \\(ECDSA\\)"),
        (key_message(9, bytes(32)), UnsupportedKeyTypeError, "key type 9 \\(unknown\\)"),
        (key_message(None, bytes(32)), UnsupportedKeyTypeError, "key type None \\(missing\\)"),
        (key_message(KeyType.ED25519, None), KeyEncodingError, "32 bytes"),
        (key_message(KeyType.ED25519, bytes(31)), KeyEncodingError, "32 bytes"),
        (key_message(KeyType.ED25519, bytes(33)), KeyEncodingError, "32 bytes"),
        (encode_bytes_field(1, b"\x01") + encode_bytes_field(2, bytes(32)), KeyEncodingError, "wire type"),
        (b"\x08\x01\x12\x40", KeyEncodingError, "truncated"),
        (b"\x0b", KeyEncodingError, "wire type 3"),
    ],
)
def test_bad_public_keys_are_refused(data, error, match):
    with pytest.raises(error, match=match):
        decode_public_key(data)


def test_public_key_decoding_skips_unknown_fields():
    data = encode_bytes_field(3, b"future") + SPEC_PUBLIC_KEY
    assert raw(decode_public_key(data)) == SPEC_PUBLIC_KEY[4:]


@pytest.mark.parametrize(
    "data",
    [key_message(KeyType.ED25519, bytes(32)), key_message(KeyType.ED25519, bytes(63)), key_message(0, bytes(64)), b""],
)
def test_bad_private_keys_are_refused(data):
    with pytest.raises(KeyEncodingError):
        decode_private_key(data)


def test_error_hierarchy():
    assert issubclass(UnsupportedKeyTypeError, KeyEncodingError)
    assert issubclass(KeyEncodingError, ProtocolError)
    assert issubclass(PeerIdError, ProtocolError)
    assert issubclass(IdentityError, PeerloomError) and not issubclass(IdentityError, ProtocolError)


@given(st.binary(max_size=80))
def test_random_key_bytes_raise_only_key_encoding_error(data):
    for decode in (decode_public_key, decode_private_key):
        try:
            decode(data)
        except KeyEncodingError:
            pass


# --- PeerId -------------------------------------------------------------------------------------------------------


def test_sha256_peer_id_text_forms():
    from_base58 = PeerId.from_string(SHA256_ID)
    assert from_base58.to_bytes()[:2] == b"\x12\x20"
    assert from_base58.to_cid() == SHA256_CID
    assert PeerId.from_string(SHA256_CID) == from_base58
    assert PeerId.from_string(SHA256_CID.upper()) == from_base58  # 'B': base32 upper
    assert from_base58.extract_public_key() is None


def test_ed25519_peer_id_text_forms():
    peer = PeerId.from_string(ED25519_ID)
    assert peer.to_base58() == ED25519_ID
    assert PeerId.from_string(peer.to_cid()) == peer
    assert bytes(peer) == peer.to_bytes() == peer.multihash
    assert peer.extract_public_key() is not None


def test_inlined_key_of_another_type_cannot_be_extracted():
    secp256k1 = key_message(KeyType.SECP256K1, b"\x02" + bytes(32))
    peer = PeerId(bytes((0, len(secp256k1))) + secp256k1)
    with pytest.raises(UnsupportedKeyTypeError):
        peer.extract_public_key()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "Qm",
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5",  # one character short
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N1",
        "12D3KooW0",
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # a dag-pb CID
        "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqx",  # a truncated CID
        "zQmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # a multibase multihash is not a CID
        "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8",  # base36 is not supported
        "x" * 5000,
    ],
)
def test_invalid_peer_id_text_is_refused(text):
    with pytest.raises(PeerIdError):
        PeerId.from_string(text)


def test_cidv0_inside_multibase_is_refused():
    with pytest.raises(PeerIdError, match="CIDv1"):
        PeerId.from_string("b" + "aa" * 4)  # version 0


@pytest.mark.parametrize(
    "multihash",
    [
        b"",
        b"\x00",
        b"\x00\x00",  # an empty inlined key
        b"\x00\x2b" + bytes(43),  # longer than the 42-byte inlining limit
        b"\x12\x20" + bytes(31),
        b"\x12\x1f" + bytes(31),  # SHA-256 digests are 32 bytes
        b"\x12\x20" + bytes(33),
        b"\x13\x20" + bytes(32),  # SHA-512 is not a peer id hash
        b"\x80\x00\x01\x01",  # non-minimal varint code
    ],
)
def test_invalid_peer_id_bytes_are_refused(multihash):
    with pytest.raises(PeerIdError):
        PeerId(multihash)


def test_peer_id_value_semantics():
    first, second = PeerId.from_string(SHA256_ID), PeerId.from_string(SHA256_CID)
    assert first == second and hash(first) == hash(second)
    assert first != PeerId.from_string(ED25519_ID)
    assert first != SHA256_ID
    assert repr(first) == f"PeerId('{SHA256_ID}')"
    assert PeerId(bytearray(first.to_bytes())) == first
    with pytest.raises(AttributeError):
        first.multihash = b""  # type: ignore[misc]


def test_peer_id_text_is_kept_and_changes_neither_equality_nor_pickling():
    first, second = PeerId.from_string(SHA256_ID), PeerId.from_string(SHA256_CID)
    assert str(first) == SHA256_ID and str(first) is str(first)  # encoded once, then the same string
    assert first == second and hash(first) == hash(second)  # one has its text cached, the other not yet
    copy = pickle.loads(pickle.dumps(first))
    assert copy == first and str(copy) == SHA256_ID


@given(st.binary(min_size=32, max_size=32))
def test_every_ed25519_key_gives_a_12D3KooW_id_that_round_trips(seed):
    key = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    peer = PeerId.from_public_key(key)
    assert peer.to_base58().startswith("12D3KooW")
    assert peer.to_cid().startswith("bafzaa")
    assert PeerId.from_string(peer.to_base58()) == peer == PeerId.from_string(peer.to_cid())
    assert raw(peer.extract_public_key()) == raw(key)


@given(st.text(max_size=80))
def test_random_text_raises_only_peer_id_error(text):
    try:
        peer = PeerId.from_string(text)
    except PeerIdError:
        return
    assert PeerId.from_string(peer.to_base58()) == peer


@given(st.binary(max_size=60))
def test_random_bytes_raise_only_peer_id_error(data):
    try:
        peer = PeerId(data)
    except PeerIdError:
        return
    assert PeerId.from_string(str(peer)) == peer


# --- Identity -----------------------------------------------------------------------------------------------------


def test_identity_signs_with_its_key():
    identity = Identity.generate()
    signature = identity.sign(b"message")
    identity.public_key.verify(signature, b"message")
    with pytest.raises(InvalidSignature):
        identity.public_key.verify(signature, b"other message")
    assert identity.peer_id == PeerId.from_public_key(identity.private_key.public_key())
    assert repr(identity) == f"Identity({identity.peer_id})"


def test_load_or_create_creates_a_private_key_file_once(tmp_path):
    home = tmp_path / "home" / "nested"
    created = Identity.load_or_create(home)
    path = home / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert decode_private_key(path.read_bytes()).public_key().public_bytes_raw() == raw(created.public_key)
    assert path.read_bytes()[:4] == b"\x08\x01\x12\x40"  # the libp2p PrivateKey protobuf, 64-byte form
    loaded = Identity.load_or_create(home)
    assert loaded.peer_id == created.peer_id
    assert sorted(p.name for p in home.iterdir()) == [KEY_FILE_NAME]  # no temporary file is left behind


def test_key_file_mode_ignores_the_umask(tmp_path):
    old = os.umask(0o377)  # would leave the owner without read access
    try:
        Identity.load_or_create(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode) == 0o600


def test_spec_key_file_is_interoperable(tmp_path):
    path = tmp_path / KEY_FILE_NAME
    path.write_bytes(SPEC_PRIVATE_KEY)
    path.chmod(0o600)
    assert str(Identity.load_or_create(tmp_path).peer_id) == SPEC_PEER_ID
    assert path.read_bytes() == SPEC_PRIVATE_KEY


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602, 0o610])
def test_key_file_open_to_others_is_refused_with_the_fix(tmp_path, mode):
    path = tmp_path / KEY_FILE_NAME
    path.write_bytes(SPEC_PRIVATE_KEY)
    path.chmod(mode)
    with pytest.raises(IdentityError, match=f"mode 0{mode:o}") as error:
        Identity.load_or_create(tmp_path)
    assert f"chmod 600 {path}" in str(error.value)
    assert stat.S_IMODE(path.stat().st_mode) == mode  # refused, not silently changed
    assert path.read_bytes() == SPEC_PRIVATE_KEY


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not a libp2p Ed25519 private key"),
        (SPEC_PRIVATE_KEY[:-1], "not a libp2p Ed25519 private key"),
        (SPEC_PUBLIC_KEY, "not a libp2p Ed25519 private key"),
        (b"\x00" * 5000, "too large"),
    ],
)
def test_corrupt_key_file_is_refused(tmp_path, content, match):
    path = tmp_path / KEY_FILE_NAME
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(IdentityError, match=match):
        Identity.load_or_create(tmp_path)
    assert path.read_bytes() == content  # never overwritten


def test_key_path_that_is_not_a_file_is_refused(tmp_path):
    (tmp_path / KEY_FILE_NAME).mkdir(mode=0o700)
    with pytest.raises(IdentityError, match="not a regular file"):
        Identity.load_or_create(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_key_path_that_is_a_fifo_does_not_block(tmp_path):
    os.mkfifo(tmp_path / KEY_FILE_NAME, 0o600)
    with pytest.raises(IdentityError, match="not a regular file"):
        Identity.load_or_create(tmp_path)


def test_unwritable_home_gives_identity_error(tmp_path, monkeypatch):
    real_open = os.open

    def refuse_creation(path, flags, *args):
        if flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse_creation)
    with pytest.raises(IdentityError, match=r"cannot create the identity key .*Permission denied"):
        Identity.load_or_create(tmp_path)


def test_creation_never_replaces_a_key_created_meanwhile(tmp_path, monkeypatch):
    """Another process wins the race between our failed read and our link: its key is kept and used."""
    other = Identity.generate()
    real_link = os.link

    def link_after_the_other_process(source, destination):
        (tmp_path / KEY_FILE_NAME).write_bytes(encode_private_key(other.private_key))
        os.chmod(tmp_path / KEY_FILE_NAME, 0o600)
        real_link(source, destination)

    monkeypatch.setattr(os, "link", link_after_the_other_process)
    assert Identity.load_or_create(tmp_path).peer_id == other.peer_id
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE_NAME]


def test_crash_before_the_link_leaves_no_key_file(tmp_path, monkeypatch):
    """A failure after writing but before the key is in place leaves no partial key file to trip over."""

    def crash(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "link", crash)
    with pytest.raises(IdentityError, match="No space left"):
        Identity.load_or_create(tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert Identity.load_or_create(tmp_path).peer_id == Identity.load_or_create(tmp_path).peer_id


def test_concurrent_creators_agree_on_one_identity(tmp_path):
    results: list[PeerId] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            results.append(Identity.load_or_create(tmp_path).peer_id)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1
    assert str(results[0]) == str(Identity.load_or_create(tmp_path).peer_id)
