"""Document keys, writer grants and share links."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peerloom.apps.docs.keys import DocKeys, DocLinkError, GrantError, WriterGrant, parse_link, raw_public


def test_links_round_trip_with_each_level_of_access() -> None:
    keys, _ = DocKeys.new()
    full = keys.link()
    assert full.startswith("peerloom://doc/") and "#read=" in full and "&write=" in full
    back = parse_link(full)
    assert back.doc_id == keys.doc_id and back.read_key == keys.read_key and back.writer_id == keys.writer_id
    reader = parse_link(keys.reader().link())
    assert reader.read_key == keys.read_key and reader.writer is None
    name = parse_link(DocKeys(keys.doc_id).link())
    assert name == DocKeys(keys.doc_id) and "#" not in DocKeys(keys.doc_id).link()


@pytest.mark.parametrize("mangle", [
    lambda link: link.replace("peerloom://doc/", "peerloom://dot/"),
    lambda link: link.upper(),
    lambda link: link + "a",
    lambda link: link + "&x=1",
    lambda link: link.replace("#read=", "#reed="),
    lambda link: link.replace("&write=", "&wr="),
    lambda link: link.split("#")[0] + "#write=" + link.split("&write=")[1],
    lambda link: link.split("#")[0][:-1] + "8",
    lambda link: link.split("#")[0] + "#",
    lambda link: link + "x" * 300,
])
def test_malformed_links_are_refused_with_a_typed_error(mangle) -> None:
    keys, _ = DocKeys.new()
    with pytest.raises(DocLinkError):
        parse_link(mangle(keys.link()))


def test_a_grant_from_the_document_key_authorises_a_writer_and_nothing_else_does() -> None:
    keys, doc_key = DocKeys.new()
    writer = raw_public(Ed25519PrivateKey.generate().public_key())
    record = WriterGrant.issue(doc_key, writer).encode()
    assert WriterGrant.decode(record, keys.doc_id).writer == writer
    forged = WriterGrant.issue(Ed25519PrivateKey.generate(), writer)
    forged_record = bytes([1]) + keys.doc_id + writer + forged.signature
    flipped = record[:40] + bytes([record[40] ^ 1]) + record[41:]
    for bad in (forged_record, record[:-1], bytes([2]) + record[1:], flipped):
        with pytest.raises(GrantError):
            WriterGrant.decode(bad, keys.doc_id)
    other, _ = DocKeys.new()
    with pytest.raises(GrantError):
        WriterGrant.decode(record, other.doc_id)
