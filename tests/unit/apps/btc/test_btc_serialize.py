"""Bitcoin serialization primitives: CompactSize (canonical, bounded), the bounded reader, double-SHA-256."""

from __future__ import annotations

import hashlib

import pytest

from peerloom.apps.btc.serialize import BtcError, Reader, compact_size, hash_from_hex, hash_hex, sha256d, var_bytes
from peerloom.errors import ProtocolError


@pytest.mark.parametrize(
    ("n", "wire"),
    [
        (0, "00"), (0xFC, "fc"), (0xFD, "fdfd00"), (0xFFFF, "fdffff"), (0x10000, "fe00000100"),
        (0xFFFFFFFF, "feffffffff"), (0x100000000, "ff0000000001000000"),
    ],
)
def test_compact_size_encodes_in_the_shortest_form_and_reads_back(n: int, wire: str) -> None:
    assert compact_size(n).hex() == wire
    assert Reader(bytes.fromhex(wire)).compact_size(maximum=1 << 64) == n


@pytest.mark.parametrize("wire", ["fd0000", "fdfc00", "fe00000000", "feffff0000", "ffffffffff00000000"])
def test_non_canonical_compact_sizes_are_rejected(wire: str) -> None:
    with pytest.raises(BtcError, match="non-canonical"):
        Reader(bytes.fromhex(wire)).compact_size(maximum=1 << 64)


def test_a_compact_size_above_the_limit_is_rejected_before_anything_is_read() -> None:
    r = Reader(compact_size(0x02000001) + b"x")
    with pytest.raises(BtcError, match="above the limit"):
        r.compact_size()


def test_a_claimed_length_longer_than_the_buffer_is_an_error_not_an_allocation() -> None:
    r = Reader(compact_size(1_000_000) + b"abc")
    with pytest.raises(BtcError, match="exceeds"):
        r.var_bytes()
    # A count of items is bounded by the bytes left times the item size.
    with pytest.raises(BtcError):
        Reader(compact_size(100) + bytes(32 * 99)).count(32)
    assert Reader(compact_size(2) + bytes(64)).count(32) == 2


def test_reader_reads_little_endian_integers_and_refuses_to_run_past_the_end() -> None:
    r = Reader(bytes.fromhex("ffffffff" "0100000000000080" "0102") + var_bytes(b"hi"))
    assert r.i32() == -1
    assert r.u64() == (1 << 63) + 1
    assert r.u16be() == 0x0102
    assert r.var_bytes() == b"hi"
    r.end()
    with pytest.raises(BtcError, match="truncated"):
        r.u8()
    with pytest.raises(BtcError, match="trailing"):
        Reader(b"\x00\x01").end()
    assert issubclass(BtcError, ProtocolError)


def test_sha256d_and_the_displayed_byte_order() -> None:
    assert sha256d(b"") == hashlib.sha256(hashlib.sha256(b"").digest()).digest()
    assert sha256d(b"").hex() == "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
    text = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    assert hash_hex(hash_from_hex(text)) == text
    assert hash_from_hex(text)[-1] == 0  # displayed big-endian, stored little-endian
