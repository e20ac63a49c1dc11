"""atheris fuzz target for collaborative documents' untrusted inputs (apps/docs).

Run: `python tests/fuzz/fuzz_docs_updates.py [corpus dir] [-max_total_time=N]`. The first input byte picks the
target: 0 decodes the rest as an update envelope (one that decodes encodes back to the same bytes); 1 runs the
rest through a document's `UpdateGate` (shape, document, signature, writer, sequence); 2 reads the rest as a Yjs
update with the strict reader and, when it passes, checks it against an empty replica on a scratch pycrdt copy;
3 seals the rest as a Yjs update from the document's writer and lets a reader replica receive it (decrypt, read,
scratch-apply, apply); 4 parses the rest as a `peerloom://doc/` link. Only DocError (and its subclasses) escapes.
"""

from __future__ import annotations

import harness
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycrdt import Doc, Text

from peerloom.apps.docs.keys import DocError, DocKeys, parse_link, raw_public
from peerloom.apps.docs.updates import Replica, UpdateGate, decode_envelope, seal
from peerloom.apps.docs.yupdate import parse_update

_DOC_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYS = DocKeys(raw_public(_DOC_KEY.public_key()), bytes(range(32, 64)), _DOC_KEY)


def _envelope(data: bytes) -> None:
    assert decode_envelope(data).encode() == data


def _gate(data: bytes) -> None:
    UpdateGate(KEYS.doc_id).check(data, peer="fuzz", now=0.0)


def _yjs_update(data: bytes) -> None:
    parse_update(data)
    Replica(KEYS.reader()).check_update(data)


def _sealed(data: bytes) -> None:
    replica = Replica(KEYS.reader())
    replica.receive(seal(KEYS, 0, data, nonce=bytes(12)))
    assert replica.gate.sequences(KEYS.doc_id).floor == 1


def _link(data: bytes) -> None:
    keys = parse_link(data.decode("utf-8", "replace"))
    assert parse_link(keys.link()) == keys or keys.writer is not None


TestOneInput = harness.Pick(_envelope, _gate, _yjs_update, _sealed, _link, allowed=DocError)


def _text_update() -> bytes:
    doc = Doc()
    doc.get("t", type=Text).insert(0, "héllo 日本語 a😀b")
    return doc.get_update()


def seeds() -> list[bytes]:
    """A valid envelope, Yjs update and link for each target."""
    update = _text_update()
    envelope = seal(KEYS, 3, update, nonce=bytes(12))
    return [b"\x00" + envelope, b"\x01" + envelope, b"\x02" + update, b"\x03" + update,
            b"\x04" + KEYS.link().encode(), b"\x04" + KEYS.reader().link().encode()]


if __name__ == "__main__":
    harness.main(TestOneInput)
