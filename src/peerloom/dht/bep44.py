"""BEP 44 items: targets, the signed buffer, Ed25519 signing and verification of mutable items.

The buffer signed for a mutable item is the bencoded `salt` (only when non-empty), `seq` and `v` entries without the
surrounding dictionary: `4:salt6:foobar3:seqi1e1:v12:Hello World!`. libtorrent's dht_put_mutable_item and
dht_get_mutable_item sign and check exactly these bytes, so items interoperate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAX_VALUE = 1000  # BEP 44: storing nodes may refuse a bencoded `v` longer than this
MAX_SALT = 64  # BEP 44: the salt MUST NOT be longer
MAX_SEQ = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Item:
    """A BEP 44 item. Immutable when `key` is None; `value` is the bencoded `v`."""

    value: bytes
    key: bytes | None = None
    signature: bytes | None = None
    seq: int | None = None
    salt: bytes = b""

    @property
    def target(self) -> bytes:
        """The DHT key the item is stored under."""
        if self.key is None:
            return immutable_target(self.value)
        return mutable_target(self.key, self.salt)


def immutable_target(value: bytes) -> bytes:
    """SHA-1 of the bencoded value."""
    return hashlib.sha1(value).digest()


def mutable_target(key: bytes, salt: bytes = b"") -> bytes:
    """SHA-1 of the public key followed by the salt."""
    return hashlib.sha1(key + salt).digest()


def signed_buffer(value: bytes, seq: int, salt: bytes = b"") -> bytes:
    """The bytes a mutable item's signature covers (BEP 44, "Signature Verification")."""
    head = b"4:salt%d:%s" % (len(salt), salt) if salt else b""
    return head + b"3:seqi%de1:v" % seq + value


def make_mutable(
    private_key: Ed25519PrivateKey | bytes, value: bytes, seq: int, salt: bytes = b""
) -> tuple[bytes, bytes]:
    """Sign a mutable item: returns (32-byte public key `k`, 64-byte signature `sig`).

    `private_key` is a key object or its 32-byte seed; `value` is the bencoded `v`.
    """
    if isinstance(private_key, bytes):
        private_key = Ed25519PrivateKey.from_private_bytes(private_key)
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number out of range: {seq}")
    if len(salt) > MAX_SALT:
        raise ValueError(f"salt of {len(salt)} bytes is longer than {MAX_SALT}")
    key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return key, private_key.sign(signed_buffer(value, seq, salt))


def verify_mutable(key: bytes, signature: bytes, value: bytes, seq: int, salt: bytes = b"") -> bool:
    """Whether `signature` is `key`'s signature of the item; False for malformed keys or signatures too."""
    if len(key) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, signed_buffer(value, seq, salt))
    except (InvalidSignature, ValueError):
        return False
    return True


def mutable_item(private_key: Ed25519PrivateKey | bytes, value: bytes, seq: int, salt: bytes = b"") -> Item:
    """A signed mutable item, ready to put."""
    key, signature = make_mutable(private_key, value, seq, salt)
    return Item(value=value, key=key, signature=signature, seq=seq, salt=salt)
