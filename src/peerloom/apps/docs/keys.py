"""A document's keys and the links that share them.

- The document key: an Ed25519 key pair. Its public half (32 bytes) is the document id and names it:
  `peerloom://doc/<id>` with the id in lower-case unpadded RFC 4648 base32 (52 characters).
- Writer keys: the document key may write, and it may authorise further Ed25519 writer keys with a `WriterGrant`,
  a record signed by the document key. Only updates signed by the document key or a granted key are accepted.
- The read key: 32 random bytes, a ChaCha20-Poly1305 key (RFC 8439) that encrypts every update, at rest and on the
  wire. A peer without it can relay and store updates but learns nothing from them.

Share links carry secrets in the fragment (never sent to a server by a browser):

    peerloom://doc/<id>                                 names the document, gives no access
    peerloom://doc/<id>#read=<read key>                 read access
    peerloom://doc/<id>#read=<read key>&write=<seed>    read and write (the 32-byte seed of a writer key)

Each secret is lower-case unpadded base32 of 32 bytes. Parsing is strict: exactly these forms, in this order, no
repeated or unknown parameters, no upper case, no trailing text; anything else is a `DocLinkError`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from peerloom.codec.multibase import MultibaseError, b32decode, b32encode
from peerloom.errors import ProtocolError

LINK_PREFIX = "peerloom://doc/"
KEY_SIZE = 32
SIGNATURE_SIZE = 64
MAX_LINK_LENGTH = 256  # the longest valid link is 15 + 52 + 6 + 52 + 7 + 52 = 184 characters
_ENCODED_KEY_LENGTH = 52  # base32 of 32 bytes, unpadded
GRANT_VERSION = 1
GRANT_SIZE = 1 + KEY_SIZE + KEY_SIZE + SIGNATURE_SIZE
_GRANT_CONTEXT = b"peerloom-doc-grant-v1\x00"  # domain separation: a grant signature is never an update's


class DocError(ProtocolError):
    """Input about a document (a link, a grant, an update) that is malformed or not allowed."""


class DocLinkError(DocError):
    """Text that is not a valid `peerloom://doc/` link."""


class GrantError(DocError):
    """A writer grant that is malformed, for another document, or not signed by the document key."""


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def raw_seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def public_key_from(raw: bytes, what: str = "public key") -> Ed25519PublicKey:
    """The Ed25519 key of 32 raw bytes; DocError when they are not a key."""
    if len(raw) != KEY_SIZE:
        raise DocError(f"a {what} is {KEY_SIZE} bytes, not {len(raw)}")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise DocError(f"invalid Ed25519 {what}") from None


def verify(public: bytes, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is `public`'s Ed25519 signature of `message` (False for a malformed key)."""
    try:
        public_key_from(public).verify(signature, message)
    except (InvalidSignature, DocError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class WriterGrant:
    """The document key's signed statement that `writer` may write the document `doc_id`.

    Wire form (128 bytes): version (1) | doc id (32) | writer public key (32) | Ed25519 signature (64) by the
    document key over "peerloom-doc-grant-v1\\0" | version | doc id | writer.
    """

    doc_id: bytes
    writer: bytes
    signature: bytes

    @staticmethod
    def _signed(doc_id: bytes, writer: bytes) -> bytes:
        return _GRANT_CONTEXT + bytes([GRANT_VERSION]) + doc_id + writer

    @classmethod
    def issue(cls, doc_key: Ed25519PrivateKey, writer: bytes) -> WriterGrant:
        """A grant signed by the document key (only its holder can authorise writers)."""
        public_key_from(writer, "writer key")
        doc_id = raw_public(doc_key.public_key())
        return cls(doc_id, writer, doc_key.sign(cls._signed(doc_id, writer)))

    def encode(self) -> bytes:
        return bytes([GRANT_VERSION]) + self.doc_id + self.writer + self.signature

    @classmethod
    def decode(cls, data: bytes, doc_id: bytes) -> WriterGrant:
        """A grant for `doc_id`, checked: right size and version, this document, a valid signature by its key."""
        if len(data) != GRANT_SIZE:
            raise GrantError(f"a writer grant is {GRANT_SIZE} bytes, not {len(data)}")
        if data[0] != GRANT_VERSION:
            raise GrantError(f"unknown writer grant version {data[0]}")
        grant = cls(data[1:33], data[33:65], data[65:])
        if grant.doc_id != doc_id:
            raise GrantError("the writer grant is for another document")
        public_key_from(grant.writer, "writer key")
        if not verify(doc_id, grant.signature, cls._signed(grant.doc_id, grant.writer)):
            raise GrantError("the writer grant is not signed by the document key")
        return grant


@dataclass(frozen=True, slots=True)
class DocKeys:
    """What one holder knows of a document: always its id; the read key to read; a writer key to write."""

    doc_id: bytes
    read_key: bytes | None = None
    writer: Ed25519PrivateKey | None = None

    def __post_init__(self) -> None:
        public_key_from(self.doc_id, "document id")
        if self.read_key is not None and len(self.read_key) != KEY_SIZE:
            raise DocError(f"a read key is {KEY_SIZE} bytes, not {len(self.read_key)}")
        if self.writer is not None and self.read_key is None:
            raise DocError("a writer must hold the read key (updates are encrypted with it)")

    @classmethod
    def new(cls) -> tuple[DocKeys, Ed25519PrivateKey]:
        """A new document: its keys (the document key is the first writer) and the document key itself."""
        doc_key = Ed25519PrivateKey.generate()
        return cls(raw_public(doc_key.public_key()), secrets.token_bytes(KEY_SIZE), doc_key), doc_key

    @property
    def writer_id(self) -> bytes | None:
        return None if self.writer is None else raw_public(self.writer.public_key())

    def reader(self) -> DocKeys:
        """The same document, read access only."""
        return DocKeys(self.doc_id, self.read_key)

    def link(self) -> str:
        """The share link of what these keys give (see the module docstring)."""
        text = LINK_PREFIX + b32encode(self.doc_id)
        if self.read_key is not None:
            text += "#read=" + b32encode(self.read_key)
            if self.writer is not None:
                text += "&write=" + b32encode(raw_seed(self.writer))
        return text


def _key(text: str, what: str) -> bytes:
    if len(text) != _ENCODED_KEY_LENGTH or text != text.lower():
        raise DocLinkError(f"a link's {what} is {_ENCODED_KEY_LENGTH} lower-case base32 characters")
    try:
        return b32decode(text)
    except MultibaseError:
        raise DocLinkError(f"a link's {what} is not valid base32") from None


def parse_link(text: str) -> DocKeys:
    """The keys a `peerloom://doc/` link carries; DocLinkError for anything but the three forms of the module
    docstring."""
    if len(text) > MAX_LINK_LENGTH:
        raise DocLinkError(f"a document link is at most {MAX_LINK_LENGTH} characters")
    if not text.startswith(LINK_PREFIX):
        raise DocLinkError(f"a document link starts with {LINK_PREFIX}")
    name, hashmark, fragment = text[len(LINK_PREFIX):].partition("#")
    doc_id = _key(name, "document id")
    read_key = seed = None
    if hashmark:
        params = fragment.split("&")
        if len(params) > 2 or not params[0].startswith("read="):
            raise DocLinkError("a link's fragment is read=KEY, optionally followed by &write=KEY")
        read_key = _key(params[0][len("read="):], "read key")
        if len(params) == 2:
            if not params[1].startswith("write="):
                raise DocLinkError("a link's second parameter is write=KEY")
            seed = _key(params[1][len("write="):], "write key")
    try:
        writer = None if seed is None else Ed25519PrivateKey.from_private_bytes(seed)
        return DocKeys(doc_id, read_key, writer)
    except DocError as exc:
        raise DocLinkError(str(exc)) from None
