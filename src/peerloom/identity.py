"""A node's identity: its Ed25519 key, the libp2p key encodings, the PeerId and the key file.

Written from the libp2p peer-ids spec: keys travel as the protobuf `PublicKey {Type, Data}` ("Keys"),
an Ed25519 private key is stored as `PrivateKey {Type = Ed25519, Data = seed || public key}` ("Ed25519"),
and a PeerId is the identity multihash of the encoded public key when that is at most 42 bytes, else its
SHA-256 multihash ("Peer Ids"). Text PeerIds are bare base58btc multihashes or CIDv1 with the
`libp2p-key` multicodec ("String representation").
"""

from __future__ import annotations

import enum
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from peerloom.codec.multibase import MultibaseError, b58decode, b58encode, multibase_decode, multibase_encode
from peerloom.codec.protobuf import ProtobufError, encode_bytes_field, encode_varint_field, iter_fields
from peerloom.codec.varint import VarintError, decode_varint, encode_varint
from peerloom.errors import PeerloomError, ProtocolError

KEY_FILE_NAME = "identity.key"
MAX_INLINE_KEY_LENGTH = 42  # peer-ids spec: longer encoded keys are hashed with SHA-256
MULTIHASH_IDENTITY = 0x00
MULTIHASH_SHA2_256 = 0x12
MULTICODEC_LIBP2P_KEY = 0x72
_CID_VERSION = 1
_ED25519_KEY_SIZE = 32
_MAX_KEY_FILE_SIZE = 4096


class KeyType(enum.IntEnum):
    """The `KeyType` enum of the libp2p key protobuf."""

    RSA = 0
    ED25519 = 1
    SECP256K1 = 2
    ECDSA = 3


class IdentityError(PeerloomError):
    """The identity key file cannot be used: unreadable, corrupt, or open to other users."""


class KeyEncodingError(ProtocolError):
    """A libp2p PublicKey or PrivateKey protobuf is malformed."""


class UnsupportedKeyTypeError(KeyEncodingError):
    """A well-formed libp2p key of a type peerloom does not handle (only Ed25519 is)."""


class PeerIdError(ProtocolError):
    """Bytes or text that are not a valid PeerId."""


# --- key encodings ------------------------------------------------------------------------------------------------


def _key_type_name(key_type: int | None) -> str:
    if key_type is None:
        return "missing"
    try:
        return KeyType(key_type).name
    except ValueError:
        return "unknown"


def _read_ed25519_key_data(data: bytes, what: str) -> bytes | None:
    """Data of a PublicKey or PrivateKey message whose Type is Ed25519; unknown fields are ignored, the last
    duplicate wins (protobuf rules). UnsupportedKeyTypeError when Type is anything else or missing."""
    key_type: int | None = None
    key_data: bytes | None = None
    try:
        for field in iter_fields(data):
            if field.number == 1:
                key_type = field.as_int()
            elif field.number == 2:
                key_data = field.as_bytes()
    except ProtobufError as exc:
        raise KeyEncodingError(f"malformed libp2p {what}: {exc}") from None
    if key_type != KeyType.ED25519:
        raise UnsupportedKeyTypeError(
            f"unsupported libp2p key type {key_type} ({_key_type_name(key_type)}); only Ed25519 is supported"
        )
    return key_data


def encode_public_key(key: Ed25519PublicKey) -> bytes:
    """The libp2p PublicKey protobuf of an Ed25519 key: fields in number order, as the spec asks."""
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return encode_varint_field(1, KeyType.ED25519) + encode_bytes_field(2, raw)


def decode_public_key(data: bytes) -> Ed25519PublicKey:
    """The Ed25519 key in a libp2p PublicKey protobuf; UnsupportedKeyTypeError for other key types."""
    key_data = _read_ed25519_key_data(data, "PublicKey")
    if key_data is None or len(key_data) != _ED25519_KEY_SIZE:
        got = "none" if key_data is None else len(key_data)
        raise KeyEncodingError(f"an Ed25519 public key must be 32 bytes, got {got}")
    try:
        return Ed25519PublicKey.from_public_bytes(key_data)
    except ValueError:
        raise KeyEncodingError("invalid Ed25519 public key") from None


def encode_private_key(key: Ed25519PrivateKey) -> bytes:
    """The libp2p PrivateKey protobuf of an Ed25519 key, Data = 32-byte seed || 32-byte public key (as go-libp2p)."""
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return encode_varint_field(1, KeyType.ED25519) + encode_bytes_field(2, seed + public)


def decode_private_key(data: bytes) -> Ed25519PrivateKey:
    """The Ed25519 key in a libp2p PrivateKey protobuf, in the 64-byte form or the older 96-byte one.

    The public half stored with the seed must be the one the seed derives (spec: reject a mismatch).
    """
    key_data = _read_ed25519_key_data(data, "PrivateKey")
    if key_data is None or len(key_data) not in (64, 96):
        got = "none" if key_data is None else len(key_data)
        raise KeyEncodingError(f"an Ed25519 private key must be 64 (or 96) bytes, got {got}")
    seed, public = key_data[:32], key_data[32:64]
    if len(key_data) == 96 and key_data[64:] != public:
        raise KeyEncodingError("the two public keys of a 96-byte Ed25519 private key differ")
    key = Ed25519PrivateKey.from_private_bytes(seed)
    if key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != public:
        raise KeyEncodingError("the Ed25519 private key's public half does not match its seed")
    return key


# --- PeerId -------------------------------------------------------------------------------------------------------


def _multihash_parts(multihash: bytes) -> tuple[int, bytes]:
    """(hash function code, digest) of a PeerId multihash; PeerIdError unless it is identity or SHA-256."""
    try:
        code, pos = decode_varint(multihash)
        length, pos = decode_varint(multihash, pos)
    except VarintError as exc:
        raise PeerIdError(f"malformed peer id multihash: {exc}") from None
    digest = multihash[pos:]
    if len(digest) != length:
        raise PeerIdError(f"peer id multihash claims a {length}-byte digest but holds {len(digest)}")
    if code == MULTIHASH_IDENTITY:
        if not 1 <= length <= MAX_INLINE_KEY_LENGTH:
            raise PeerIdError(f"an inlined peer id key must be 1 to {MAX_INLINE_KEY_LENGTH} bytes, not {length}")
    elif code == MULTIHASH_SHA2_256:
        if length != 32:
            raise PeerIdError(f"a SHA-256 peer id digest must be 32 bytes, not {length}")
    else:
        raise PeerIdError(f"unsupported multihash 0x{code:x} in a peer id")
    return code, digest


@dataclass(frozen=True, slots=True)
class PeerId:
    """A peer's id: the multihash of its public key (identity-inlined for Ed25519, SHA-256 for larger keys).

    Equal and hashable by those bytes; `str()` is the canonical base58btc text (`12D3KooW…`, `Qm…`), computed once
    and kept: base58 is a quadratic big-integer conversion, and ids are logged and used as keys by text on hot paths
    (the compute scheduler spent 4 % of its time re-encoding the same few ids).
    """

    multihash: bytes
    _text: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "multihash", bytes(self.multihash))
        _multihash_parts(self.multihash)

    @classmethod
    def from_public_key(cls, key: Ed25519PublicKey) -> PeerId:
        """The PeerId of an Ed25519 key: its 36-byte PublicKey protobuf behind the identity multihash."""
        encoded = encode_public_key(key)
        return cls(encode_varint(MULTIHASH_IDENTITY) + encode_varint(len(encoded)) + encoded)

    @classmethod
    def from_string(cls, text: str) -> PeerId:
        """Parse either text form (peer-ids spec, "Decoding"): base58btc when it starts with '1' or 'Qm',
        else a multibase CIDv1 whose multicodec must be libp2p-key."""
        try:
            if text.startswith(("1", "Qm")):
                return cls(b58decode(text))
            cid = multibase_decode(text)
        except MultibaseError as exc:
            raise PeerIdError(f"invalid peer id text: {exc}") from None
        try:
            version, pos = decode_varint(cid)
            codec, pos = decode_varint(cid, pos)
        except VarintError as exc:
            raise PeerIdError(f"malformed peer id CID: {exc}") from None
        if version != _CID_VERSION:
            raise PeerIdError(f"a peer id CID must be CIDv1, not version {version}")
        if codec != MULTICODEC_LIBP2P_KEY:
            raise PeerIdError(f"a peer id CID must have the libp2p-key multicodec, not 0x{codec:x}")
        return cls(cid[pos:])

    def to_bytes(self) -> bytes:
        """The multihash bytes, as a PeerId travels on the wire."""
        return self.multihash

    def __bytes__(self) -> bytes:
        return self.multihash

    def to_base58(self) -> str:
        """The canonical text: the multihash in base58btc without a multibase prefix."""
        if not self._text:  # a pure function of the frozen bytes: caching it cannot go stale
            object.__setattr__(self, "_text", b58encode(self.multihash))
        return self._text

    def to_cid(self) -> str:
        """CIDv1, libp2p-key multicodec, base32 multibase (`bafz…`): the form safe in case-insensitive places."""
        cid = encode_varint(_CID_VERSION) + encode_varint(MULTICODEC_LIBP2P_KEY) + self.multihash
        return multibase_encode(cid, "base32")

    def extract_public_key(self) -> Ed25519PublicKey | None:
        """The Ed25519 key inlined in this id; None for a SHA-256 id, whose key must come from elsewhere.

        Raises UnsupportedKeyTypeError when the inlined key is of another type (such as secp256k1).
        """
        code, digest = _multihash_parts(self.multihash)
        if code != MULTIHASH_IDENTITY:
            return None
        return decode_public_key(digest)

    def __str__(self) -> str:
        return self.to_base58()

    def __repr__(self) -> str:
        return f"PeerId({self.to_base58()!r})"


# --- Identity and its key file ------------------------------------------------------------------------------------


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks = []
    size = 0
    while size < limit and (chunk := os.read(fd, limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Identity:
    """This node's Ed25519 key pair and the PeerId it gives."""

    __slots__ = ("_private_key", "_public_key", "peer_id")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self.peer_id = PeerId.from_public_key(self._public_key)

    @classmethod
    def generate(cls) -> Identity:
        """A fresh random identity."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The signing key (for the Noise handshake's identity signature)."""
        return self._private_key

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The verifying key, which the PeerId inlines."""
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        """An Ed25519 signature (RFC 8032) of data."""
        return self._private_key.sign(data)

    def __repr__(self) -> str:
        return f"Identity({self.peer_id})"

    @classmethod
    def load_or_create(cls, home: Path) -> Identity:
        """The identity stored in `home/identity.key`, created there (mode 0600) on first use.

        Like ssh, a key file that group or others may access is refused rather than silently fixed: the key
        may already have leaked, and the user should know. Raises IdentityError with the fix in the message.
        """
        path = Path(home) / KEY_FILE_NAME
        try:
            return cls._load(path)
        except FileNotFoundError:
            pass
        identity = cls.generate()
        try:
            Path(home).mkdir(mode=0o700, parents=True, exist_ok=True)
            created = identity._create(path)
        except OSError as exc:
            raise IdentityError(f"cannot create the identity key {path}: {exc.strerror or exc}") from None
        return identity if created else cls._load(path)

    @classmethod
    def _load(cls, path: Path) -> Identity:
        """Read and check the key file; FileNotFoundError passes through so the caller can create it."""
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise IdentityError(f"cannot read the identity key {path}: {exc.strerror or exc}") from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise IdentityError(f"the identity key {path} is not a regular file")
            if os.name == "posix" and mode & 0o077:
                raise IdentityError(
                    f"the identity key {path} is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
                    f"run `chmod 600 {path}` and start again"
                )
            data = _read_at_most(fd, _MAX_KEY_FILE_SIZE + 1)
        except OSError as exc:
            raise IdentityError(f"cannot read the identity key {path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        if len(data) > _MAX_KEY_FILE_SIZE:
            raise IdentityError(f"the identity key {path} is too large to be a key file")
        try:
            return cls(decode_private_key(data))
        except KeyEncodingError as exc:
            raise IdentityError(f"the identity key {path} is not a libp2p Ed25519 private key: {exc}") from None

    def _create(self, path: Path) -> bool:
        """Write the key to path; False if another process created path first (its key is then the one to use).

        The key is written and fsynced under a temporary name created with O_EXCL and mode 0600, then
        hard-linked into place: the key file appears complete or not at all, and an existing one is never
        replaced.
        """
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(temporary, flags, 0o600)
        try:
            try:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, 0o600)  # the umask may have removed the owner's own bits
                _write_all(fd, encode_private_key(self._private_key))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(temporary, path)
        except FileExistsError:
            return False
        finally:
            temporary.unlink(missing_ok=True)
        if os.name == "posix":
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return True
