"""The content-addressed store of modules and inputs: blobs come back only as they went in."""

from __future__ import annotations

import hashlib

import pytest

from peerloom.apps.compute.blobs import BadBlob, BlobMissing, BlobStore, blob_hash, check_hash
from peerloom.errors import ProtocolError


def test_put_then_get_by_sha256(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    name = store.put(b"a module")
    assert name == hashlib.sha256(b"a module").hexdigest() == blob_hash(b"a module")
    assert store.has(name) and store.get(name) == b"a module"
    assert store.put(b"a module") == name  # idempotent
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == [name]  # no temporary file left


def test_put_under_an_expected_name_refuses_other_data(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(BadBlob, match="hashes to"):
        store.put(b"evil", expected=blob_hash(b"good"))
    assert not store.has(blob_hash(b"evil")) and not store.has(blob_hash(b"good"))
    assert store.put(b"good", expected=blob_hash(b"good")) == blob_hash(b"good")


def test_a_blob_changed_on_disk_is_refused_and_removed(tmp_path):
    store = BlobStore(tmp_path)
    name = store.put(b"original")
    store.path(name).write_bytes(b"tampered")
    with pytest.raises(BadBlob, match="does not match its hash"):
        store.get(name)
    assert not store.has(name)
    with pytest.raises(BlobMissing):
        store.get(name)


def test_sizes_are_bounded_both_ways(tmp_path):
    store = BlobStore(tmp_path, max_size=10)
    assert store.get(store.put(b"0123456789")) == b"0123456789"
    with pytest.raises(BadBlob, match="over the 10-byte bound"):
        store.put(b"0123456789a")
    big = b"x" * 11
    (tmp_path / blob_hash(big)).write_bytes(big)  # planted by something else
    with pytest.raises(BadBlob, match="over the 10-byte bound"):
        store.get(blob_hash(big))
    assert not store.has(blob_hash(big))


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "", "A" * 64, "0" * 63, "0" * 65, "/" + "0" * 63, "0" * 63 + "\n", "g" * 64]
)
def test_names_that_are_not_hashes_never_reach_the_filesystem(tmp_path, name):
    store = BlobStore(tmp_path)
    with pytest.raises(BadBlob):
        store.get(name)
    with pytest.raises(BadBlob):
        store.has(name)
    assert issubclass(BadBlob, ProtocolError)
    assert check_hash("0" * 64) == "0" * 64


def test_a_missing_blob(tmp_path):
    with pytest.raises(BlobMissing, match="no blob"):
        BlobStore(tmp_path).get("0" * 64)
