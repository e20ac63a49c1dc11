"""A document as one node holds it: the catalog of held documents and their keys, and `HeldDoc`, what
the sync core needs of one document whether this node can read it or only relay it.

- With the read key, a `StoredDoc` (store.py) checks, stores and applies every envelope.
- Without it (a peer given only `peerloom://doc/<id>`), the node is a relay: the `UpdateGate` checks shape,
  signature, writer and sequence, and the envelope is stored as the ciphertext it is. It learns nothing of the
  content and still serves catch-up to the others.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycrdt import Doc

from peerloom.apps.docs.keys import DocError, DocKeys, WriterGrant, raw_public, raw_seed
from peerloom.apps.docs.store import DocStore, StoredDoc
from peerloom.apps.docs.updates import SeenSequences, UpdateGate, decode_envelope
from peerloom.apps.docs.yupdate import parse_state_vector

_ID = slice(33, 65)  # the writer key in an envelope
_SEQ = slice(65, 73)


class ReadOnlyDocument(DocError):
    """A write to a document this node holds no writer key for."""


@dataclass(frozen=True, slots=True)
class Held:
    keys: DocKeys  # what the node's links share: the document key when it may write
    device: Ed25519PrivateKey | None  # the key this node signs with (granted by the document key)
    title: str | None
    added: float


class DocCatalog:
    """The documents this node holds (table docs_held), their local titles, and the writer grants of each.

    Several nodes given the same write link hold the same document key; signing with it would make their sequence
    numbers collide (the second one's updates would be refused as replays). So a node that holds the document key
    signs with a device key of its own, which it grants itself with the document key (`WriterGrant`), and the sync
    sends the grants ahead of the updates."""

    def __init__(self, store: DocStore) -> None:
        self.schema = store.schema

    def put(self, keys: DocKeys, title: str | None, now: float) -> Held:
        """Remember `keys` (keeping the more powerful of what was known and what is given); what is held now."""
        old = self.get(keys.doc_id)
        device = None
        if old is not None:
            keys = DocKeys(keys.doc_id, keys.read_key or old.keys.read_key, keys.writer or old.keys.writer)
            title, now, device = title or old.title, old.added, old.device
        if keys.writer is not None and device is None:
            device = keys.writer
            if raw_public(keys.writer.public_key()) == keys.doc_id:  # the document key: sign with a granted key
                device = Ed25519PrivateKey.generate()
                grant = WriterGrant.issue(keys.writer, raw_public(device.public_key()))
                self.add_grant(keys.doc_id, grant.writer, grant.encode())
        seed = None if keys.writer is None else raw_seed(keys.writer)
        device_seed = None if device is None else raw_seed(device)
        self.schema.execute("INSERT OR REPLACE INTO docs_held VALUES (?, ?, ?, ?, ?, ?)",
                            (keys.doc_id, keys.read_key, seed, device_seed, title, now))
        return Held(keys, device, title, now)

    def get(self, doc_id: bytes) -> Held | None:
        rows = self.schema.execute(f"SELECT {_COLUMNS} FROM docs_held WHERE doc_id = ?", (doc_id,))
        return _held(rows[0]) if rows else None

    def all(self) -> list[Held]:
        return [_held(row) for row in self.schema.execute(f"SELECT {_COLUMNS} FROM docs_held ORDER BY added")]

    def add_grant(self, doc_id: bytes, writer: bytes, record: bytes) -> bool:
        """Keep a (checked) grant; False if it was known."""
        self.schema.execute("INSERT OR IGNORE INTO docs_grants VALUES (?, ?, ?)", (doc_id, writer, record))
        return bool(self.schema.execute("SELECT changes()")[0][0])

    def grants(self, doc_id: bytes) -> list[bytes]:
        return [row[0] for row in self.schema.execute("SELECT record FROM docs_grants WHERE doc_id = ?", (doc_id,))]


_COLUMNS = "doc_id, read_key, writer_seed, device_seed, title, added"


def _held(row: tuple[bytes, bytes | None, bytes | None, bytes | None, str | None, float]) -> Held:
    doc_id, read_key, seed, device_seed, title, added = row
    writer = None if seed is None else Ed25519PrivateKey.from_private_bytes(seed)
    device = None if device_seed is None else Ed25519PrivateKey.from_private_bytes(device_seed)
    return Held(DocKeys(doc_id, read_key, writer), device, title, added)


def _lacks(have: dict[bytes, SeenSequences], writer: bytes, seq: int) -> bool:
    seen = have.get(writer)
    return seen is None or seq not in seen


def _lacks_any(have: dict[bytes, SeenSequences], covers: dict[bytes, SeenSequences]) -> bool:
    for writer, covered in covers.items():
        seen = have.get(writer)
        if seen is None:
            if covered.floor > 0 or covered.above:
                return True
            continue
        if covered.floor > seen.floor and covered.floor - seen.floor > len(seen.above):
            return True
        if any(s not in seen for s in range(seen.floor, covered.floor)) or any(s not in seen for s in covered.above):
            return True
    return False


class HeldDoc:
    """One document held by this node: `have`, `missing_for`, `accept` for the sync core; `edit` for local writes."""

    def __init__(self, catalog: DocCatalog, store: DocStore, held: Held, *, compact_after: int | None = None) -> None:
        self.catalog = catalog
        self.store = store
        self.keys = held.keys  # what links share
        doc_id = held.keys.doc_id
        grants = tuple(catalog.grants(doc_id))
        self.stored: StoredDoc | None = None
        if held.keys.read_key is not None:
            signing = DocKeys(doc_id, held.keys.read_key, held.device)
            kwargs = {} if compact_after is None else {"compact_after": compact_after}
            self.stored = StoredDoc(store, signing, grants, **kwargs)  # type: ignore[arg-type]
            self.gate = self.stored.replica.gate
        else:
            self.gate = UpdateGate(doc_id)
            for grant in grants:
                self.gate.grant(grant)
            for data in store.load(doc_id).updates:  # checked again: the file may have been tampered with
                self.gate.record(self.gate.check(data))

    @property
    def doc_id(self) -> bytes:
        return self.keys.doc_id

    @property
    def readable(self) -> bool:
        return self.stored is not None

    @property
    def writable(self) -> bool:
        return self.stored is not None and self.stored.replica.keys.writer is not None

    @property
    def doc(self) -> Doc | None:
        return None if self.stored is None else self.stored.doc

    def grants(self) -> list[bytes]:
        return self.catalog.grants(self.doc_id)

    def add_grant(self, record: bytes) -> bool:
        """Check and keep a writer grant from a peer; whether it was new. GrantError when it is not valid."""
        writer = WriterGrant.decode(record, self.doc_id).writer
        if writer in self.gate.writers and writer != self.doc_id:
            return False
        self.gate.grant(record)
        return self.catalog.add_grant(self.doc_id, writer, record)

    def clocks(self) -> dict[int, int]:
        """The Yjs state vector of the document (empty on a relay, which never waits for dependencies)."""
        return {} if self.stored is None else parse_state_vector(self.stored.doc.get_state())

    def have(self) -> dict[bytes, SeenSequences]:
        """Which envelopes this node holds (or has merged), per writer."""
        return self.gate.seen

    def missing_for(self, have: dict[bytes, SeenSequences]) -> list[bytes]:
        """The envelopes a peer that holds `have` lacks, in the order they were stored (so each one's dependencies
        come before it): the snapshot first when the peer lacks any change it covers."""
        stored = self.store.load(self.doc_id)
        out = []
        if stored.snapshot is not None:
            snap = stored.snapshot
            if _lacks(have, snap[_ID], int.from_bytes(snap[_SEQ], "big")) and _lacks_any(have, stored.covers):
                out.append(snap)
        out += [d for d in stored.updates if _lacks(have, d[_ID], int.from_bytes(d[_SEQ], "big"))]
        return out

    def accept(self, data: bytes, peer: Hashable | None, now: float) -> bytes | None:
        """Check and store an envelope from a peer, and apply it when this node can read: the Yjs update applied (None
        on a relay). A DocError subclass when refused (then nothing is stored)."""
        if self.stored is not None:
            return self.stored.receive_update(data, peer, now)[1]
        envelope = self.gate.check(data, peer, now)
        self.store.append(envelope, data)
        self.gate.record(envelope)
        return None

    def edit(self, change: Callable[[Doc], None]) -> tuple[bytes, bytes] | None:
        """Apply a local change, durably: (its envelope, its Yjs update), or None when nothing changed."""
        if self.stored is None or not self.writable:
            raise ReadOnlyDocument("this node holds no writer key for the document")
        data = self.stored.edit(change)
        if data is None:
            return None
        assert self.keys.read_key is not None
        return data, decode_envelope(data).open(self.keys.read_key)

    def check_update(self, update: bytes) -> None:
        """UpdateRefused unless `update` (from a local editor) is well-formed and integrable now."""
        if self.stored is None:
            raise ReadOnlyDocument("this node cannot read the document")
        self.stored.replica.check_update(update)
