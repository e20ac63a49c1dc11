"""What a document refuses from the network, between real nodes and a hand-driven peer: updates from a key without
write rights, tampered and oversized updates (refused, never stored, never applied), and a relay without the read
key that stores and forwards a document without learning anything of it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycrdt import Doc, Text
from support.docs import link, make_node, until

from peerloom.apps.docs.keys import DocKeys, parse_link
from peerloom.apps.docs.service import MAX_REFUSED, PROTOCOL
from peerloom.apps.docs.syncproto import MAX_MESSAGE_SIZE, SyncUpdate, encode_frame
from peerloom.apps.docs.updates import seal
from peerloom.codec.varint import encode_varint
from peerloom.identity import Identity
from peerloom.net.host import Host
from peerloom.node import Node

pytestmark = pytest.mark.timeout(60)


def update_text(content: str) -> bytes:
    doc = Doc()
    doc.get("text", type=Text).insert(0, content)
    return doc.get_update()


def log_rows(node: Node) -> int:
    assert node.state is not None
    return node.state.execute("SELECT count(*) FROM docs_updates")[0][0]


async def test_updates_without_write_rights_tampered_or_oversized_are_refused_and_never_stored(tmp_path: Path) -> None:
    harness = Host(Identity.generate())
    async with make_node(tmp_path, "b") as b, harness:
        writer_keys = parse_link((await b.docs.create()).link)  # the harness knows the write link too...
        doc_b = b.docs.get(writer_keys.doc_id.hex())
        assert doc_b is not None
        intruder = DocKeys(writer_keys.doc_id, writer_keys.read_key, Ed25519PrivateKey.generate())
        stream = await harness.new_stream(b.secure_addrs[0], [PROTOCOL])
        await stream.write(writer_keys.doc_id)
        rows = log_rows(b)
        forged = seal(intruder, 0, update_text("forged by a key without a grant"))
        tampered = bytearray(seal(writer_keys, 7, update_text("tampered")))
        tampered[100] ^= 1  # a ciphertext byte (after the 85-byte header and the length): a bad signature
        huge_claim = bytearray(seal(writer_keys, 8, update_text("x")))
        huge_claim[85:89] = (1 << 30).to_bytes(4, "big")  # a ciphertext length far over the bound
        for data in (forged, bytes(tampered), bytes(huge_claim)):
            await stream.write(encode_frame(SyncUpdate(data)))
        # ...and the document key's own signature is accepted: the path works, so the refusals above are real
        await stream.write(encode_frame(SyncUpdate(seal(writer_keys, 9, update_text("signed by the document key")))))
        await until(lambda: str(doc_b.text()) == "signed by the document key", what="the valid update")
        assert b.docs.counters["refused"] == 3
        assert log_rows(b) == rows + 1
        # a frame longer than any message: the stream is reset before the body is buffered
        await stream.write(encode_varint(MAX_MESSAGE_SIZE + 1) + b"\x00" * 64)
        await until(lambda: b.docs.counters["bad_frames"] == 1, what="the oversized frame refused")
        assert log_rows(b) == rows + 1 and str(doc_b.text()) == "signed by the document key"
        # a peer that keeps sending forged updates loses its link to the document
        stream = await harness.new_stream(b.secure_addrs[0], [PROTOCOL])
        await stream.write(writer_keys.doc_id)
        await until(lambda: b.docs.list()[0].peers == 1, what="the harness linked again")
        await stream.write(b"".join(encode_frame(SyncUpdate(seal(intruder, i, update_text(f"forged {i}"))))
                                    for i in range(1, MAX_REFUSED + 2)))
        await until(lambda: b.docs.list()[0].peers == 0, what="the forger dropped")
        assert log_rows(b) == rows + 1


async def test_a_relay_without_the_read_key_forwards_but_learns_nothing(tmp_path: Path) -> None:
    marker = "the-secret-marker-" * 4
    async with make_node(tmp_path, "a") as a, make_node(tmp_path, "r") as r, make_node(tmp_path, "b") as b:
        doc_a = await a.docs.create()
        relay = await r.docs.open(doc_a.name_link)
        doc_b = await b.docs.open(doc_a.read_link)
        await link(a, r)
        await link(b, r)
        doc_a.text().insert(0, marker)
        await until(lambda: str(doc_b.text()) == marker, what="the reader's copy through the relay")
        assert not relay.readable and relay.info().size == 0
        await asyncio.sleep(0.1)
        assert r.state is not None
        r.state.execute("PRAGMA wal_checkpoint(FULL)")
        stored = b"".join(p.read_bytes() for p in (tmp_path / "r").glob("state.sqlite*"))
        assert log_rows(r) >= 1 and marker.encode() not in stored and marker.encode("utf-16-le") not in stored
        assert parse_link(relay.link).read_key is None
