"""A document's updates on disk: an append-only log of signed, encrypted envelopes in the node's state database
(schema "docs"), compacted now and then into one snapshot, and the replica that edits through it.

Crash safety: `State` runs SQLite in WAL mode, and each append is its own committed statement, so once `append`
(and with it `StoredDoc.edit` or `StoredDoc.receive`) returns, the update survives the process being killed. An
update is stored before it is applied, and a refused one is never stored.

Compaction replaces the log with one snapshot: the merged state of the document as one update, sealed and signed
by the local writer like any other update (so it can be relayed as is), stored with the sequence numbers it covers
per writer; the covered log rows are deleted in the same transaction. Only a replica holding a writer key can
compact; a read-only replica keeps the writers' own envelopes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from pycrdt import Doc

from peerloom.apps.docs.keys import DocError, DocKeys
from peerloom.apps.docs.updates import Envelope, Replica, SeenSequences, decode_envelope, seal
from peerloom.state import Migration, State

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE docs_updates (doc_id BLOB NOT NULL, writer BLOB NOT NULL, seq INTEGER NOT NULL,
                               envelope BLOB NOT NULL, PRIMARY KEY (doc_id, writer, seq));
    CREATE TABLE docs_snapshots (doc_id BLOB PRIMARY KEY, envelope BLOB NOT NULL, covers TEXT NOT NULL)
    """,
    # the documents a node holds (held.py): the keys of its link, this node's own writer key (device_seed) and the
    # grant of it; the writer grants known for each document
    """
    CREATE TABLE docs_held (doc_id BLOB PRIMARY KEY, read_key BLOB, writer_seed BLOB, device_seed BLOB,
                            title TEXT, added REAL NOT NULL);
    CREATE TABLE docs_grants (doc_id BLOB NOT NULL, writer BLOB NOT NULL, record BLOB NOT NULL,
                              PRIMARY KEY (doc_id, writer))
    """,
]


def _encode_covers(seen: dict[bytes, SeenSequences]) -> str:
    return json.dumps({w.hex(): [s.floor, sorted(s.above)] for w, s in sorted(seen.items())})


def _decode_covers(text: str) -> dict[bytes, SeenSequences]:
    covers = {}
    for writer, (floor, above) in json.loads(text).items():
        seen = SeenSequences(floor)
        seen.above.update(above)
        covers[bytes.fromhex(writer)] = seen
    return covers


@dataclass(frozen=True, slots=True)
class Stored:
    """What the log holds for one document: the snapshot (if any), the ids it covers, the later envelopes in the
    order they were stored."""

    snapshot: bytes | None
    covers: dict[bytes, SeenSequences]
    updates: list[bytes]


class DocStore:
    """The "docs" schema of a state database."""

    def __init__(self, state: State) -> None:
        self.schema = state.schema("docs", MIGRATIONS)

    def append(self, envelope: Envelope, data: bytes) -> bool:
        """Store one verified envelope (committed when this returns); False if it was already there."""
        self.schema.execute("INSERT OR IGNORE INTO docs_updates VALUES (?, ?, ?, ?)",
                            (envelope.doc_id, envelope.writer, envelope.seq, data))
        return bool(self.schema.execute("SELECT changes()")[0][0])

    def load(self, doc_id: bytes) -> Stored:
        rows = self.schema.execute("SELECT envelope, covers FROM docs_snapshots WHERE doc_id = ?", (doc_id,))
        updates = [row[0] for row in self.schema.execute(
            "SELECT envelope FROM docs_updates WHERE doc_id = ? ORDER BY rowid", (doc_id,))]
        if not rows:
            return Stored(None, {}, updates)
        return Stored(rows[0][0], _decode_covers(rows[0][1]), updates)

    def replace_with_snapshot(self, doc_id: bytes, snapshot: bytes, covers: dict[bytes, SeenSequences]) -> int:
        """Store `snapshot` as the document's and delete the log rows it covers, atomically; how many were."""
        deleted = 0
        with self.schema.transaction():
            self.schema.execute("INSERT OR REPLACE INTO docs_snapshots VALUES (?, ?, ?)",
                                (doc_id, snapshot, _encode_covers(covers)))
            rows = self.schema.execute("SELECT writer, seq FROM docs_updates WHERE doc_id = ?", (doc_id,))
            doomed = [(doc_id, w, s) for w, s in rows if w in covers and s in covers[w]]
            self.schema.executemany("DELETE FROM docs_updates WHERE doc_id = ? AND writer = ? AND seq = ?", doomed)
            deleted = len(doomed)
        return deleted


COMPACT_AFTER = 1000  # log rows after which a writer replica replaces its log with a snapshot


class StoredDoc:
    """A replica whose every accepted update is in the store before it is applied. A replica with a writer key
    compacts its log into a snapshot once `compact_after` rows have piled up (None: only when asked)."""

    def __init__(self, store: DocStore, keys: DocKeys, grants: tuple[bytes, ...] = (), *,
                 compact_after: int | None = COMPACT_AFTER) -> None:
        self.store = store
        self.compact_after = compact_after
        self.log_rows = 0
        self.replica = Replica(keys)
        for grant in grants:
            self.replica.gate.grant(grant)
        self._load()

    @property
    def doc(self) -> Doc:
        return self.replica.doc

    def _load(self) -> None:
        """Rebuild the document from the snapshot and the log, checking every envelope again (the file may have
        been tampered with)."""
        stored = self.store.load(self.replica.keys.doc_id)
        if stored.snapshot is not None:
            self.replica.receive(stored.snapshot)
            for writer, seen in stored.covers.items():
                self.replica.gate.sequences(writer).merge(seen)
        for data in stored.updates:
            self.replica.receive(data)
        self.log_rows = len(stored.updates)

    def _append(self, envelope: Envelope, data: bytes) -> None:
        if self.store.append(envelope, data):
            self.log_rows += 1

    def _maybe_compact(self) -> None:
        if self.compact_after is not None and self.log_rows >= self.compact_after and self.replica.keys.writer:
            self.compact()

    def edit(self, change: Callable[[Doc], None]) -> bytes | None:
        """Apply `change` to the document and store its signed envelope; when this returns the edit is durable.
        The envelope (to send to peers), or None when nothing changed."""
        updates: list[bytes] = []
        subscription = self.doc.observe(lambda event: updates.append(event.update))
        try:
            with self.doc.transaction():  # one transaction, one update (nested transactions join it)
                change(self.doc)
        finally:
            self.doc.unobserve(subscription)
        data = self.replica.commit_update(updates[0]) if updates else None
        if data is not None:
            self._append(decode_envelope(data), data)
            self._maybe_compact()
        return data

    def receive(self, data: bytes, peer: Hashable | None = None, now: float = 0.0) -> Envelope:
        """Verify, check, store, then apply an envelope from a peer; a DocError subclass when it is refused (and
        then nothing is stored)."""
        return self.receive_update(data, peer, now)[0]

    def receive_update(self, data: bytes, peer: Hashable | None = None, now: float = 0.0) -> tuple[Envelope, bytes]:
        """`receive`, also giving the Yjs update that was applied (for editors following the document)."""
        envelope, update = self.replica.open(data, peer, now)
        self._append(envelope, data)
        self.doc.apply_update(update)
        self.replica.gate.record(envelope)
        self._maybe_compact()
        return envelope, update

    def compact(self) -> int:
        """Replace the log with one snapshot signed by the local writer; how many log rows it replaced."""
        writer = self.replica.keys.writer_id
        if writer is None:
            raise DocError("only a replica with a writer key can compact its log")
        seen = self.replica.gate.sequences(writer)
        seq = max(seen.next(), seen.highest() + 1)
        snapshot = seal(self.replica.keys, seq, self.doc.get_update())
        seen.add(seq)
        covers = dict(self.replica.gate.seen)
        replaced = self.store.replace_with_snapshot(self.replica.keys.doc_id, snapshot, covers)
        self.log_rows -= replaced
        return replaced
