"""atheris fuzz target for the messages of document sync streams (`/peerloom/doc/1.0.0`, apps/docs).

Run: `python tests/fuzz/fuzz_docs_sync.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target:
0 decodes the rest as one sync message (one that decodes encodes back to the same bytes); 1 parses the rest as a
y-protocols awareness update and passes it through an awareness relay; 2 feeds the rest, as a message from a peer,
to the sync core of a document held with its read key (its answers must be well-formed frames). Only DocError (and
its subclasses) escapes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import harness
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycrdt import Doc, Text

from peerloom.apps.docs.awareness import AwarenessEntry, AwarenessRelay, encode_awareness, parse_awareness
from peerloom.apps.docs.held import DocCatalog, HeldDoc
from peerloom.apps.docs.keys import DocError, DocKeys, raw_public
from peerloom.apps.docs.store import DocStore
from peerloom.apps.docs.sync import DocSync, Send
from peerloom.apps.docs.syncproto import (
    MAX_MESSAGE_SIZE,
    AwarenessMessage,
    SyncStep1,
    SyncUpdate,
    decode_message,
    encode_message,
)
from peerloom.apps.docs.updates import seal
from peerloom.codec.varint import read_frame
from peerloom.state import State

_DOC_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYS = DocKeys(raw_public(_DOC_KEY.public_key()), bytes(range(32, 64)), _DOC_KEY)
_STORES: list[DocStore] = []  # one store, opened on first use (not when the module is imported)


def _store() -> DocStore:
    if not _STORES:
        _STORES.append(DocStore(State(Path(tempfile.mkdtemp(prefix="fuzz-docs-sync-")) / "state.sqlite")))
    return _STORES[0]


def _message(data: bytes) -> None:
    assert decode_message(data) is not None
    message = decode_message(data)
    if not isinstance(message, SyncStep1):  # a have vector may list its sequences in another order
        assert encode_message(message) == data


def _awareness(data: bytes) -> None:
    entries = parse_awareness(data)
    fresh = AwarenessRelay().accept(data, 0.0)
    assert fresh is None or len(parse_awareness(fresh)) <= len(entries)


def _sync(data: bytes) -> None:
    store = _store()
    catalog = DocCatalog(store)
    sync = DocSync(HeldDoc(catalog, store, catalog.put(KEYS.reader(), None, 0.0)))
    sync.add_peer("fuzz", 0.0)
    sync.receive("fuzz", data, 0.0)
    sync.settle(0.0)
    for event in sync.take_events():
        if isinstance(event, Send):
            pos = 0
            while pos < len(event.data):
                frame = read_frame(event.data, MAX_MESSAGE_SIZE, pos)
                assert frame is not None
                decode_message(frame[0])
                pos = frame[1]


TestOneInput = harness.Pick(_message, _awareness, _sync, allowed=DocError)


def seeds() -> list[bytes]:
    """A valid update message, step 1, and awareness update for each target."""
    doc = Doc()
    doc.get("t", type=Text).insert(0, "héllo 日本語 a😀b")
    update = encode_message(SyncUpdate(seal(KEYS, 0, doc.get_update(), nonce=bytes(12))))
    awareness = encode_awareness([AwarenessEntry(1, 3, '{"user":{"name":"ana","color":"#f00"}}')])
    step1 = encode_message(SyncStep1({}))
    return [b"\x00" + update, b"\x00" + step1, b"\x00" + encode_message(AwarenessMessage(awareness)),
            b"\x01" + awareness, b"\x02" + update, b"\x02" + step1]


if __name__ == "__main__":
    harness.main(TestOneInput)
