"""BEP 52 merkle trees, checked against a direct, unoptimised construction."""

from hashlib import sha256

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerloom.torrent.merkle import (
    BLOCK_SIZE,
    ZERO_HASH,
    block_hashes,
    merkle_root,
    next_power_of_two,
    pad_hash,
    piece_hash,
    root_from_piece_layer,
)


def naive_root(leaves: list[bytes], width: int) -> bytes:
    layer = leaves + [ZERO_HASH] * (width - len(leaves))
    while len(layer) > 1:
        layer = [sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
    return layer[0]


def test_next_power_of_two():
    assert [next_power_of_two(n) for n in (0, 1, 2, 3, 4, 5, 1023, 1024, 1025)] == [
        1, 1, 2, 4, 4, 8, 1024, 1024, 2048
    ]


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40), st.integers(0, 3))
def test_root_matches_naive_padding(leaves, extra):
    width = next_power_of_two(len(leaves)) << extra
    assert merkle_root(leaves, width) == naive_root(leaves, width)


def test_pad_hash_is_root_of_zero_leaves():
    assert pad_hash(0) == ZERO_HASH
    assert pad_hash(3) == naive_root([], 8)


def test_width_must_be_a_power_of_two_covering_the_leaves():
    with pytest.raises(ValueError):
        merkle_root([ZERO_HASH] * 3, 3)
    with pytest.raises(ValueError):
        merkle_root([ZERO_HASH] * 5, 4)


def test_single_block_file_root_is_the_block_hash():
    data = b"x" * 1000
    assert piece_hash(data, 4 * BLOCK_SIZE, len(data)) == sha256(data).digest()


def test_piece_layer_and_root_agree_with_the_whole_tree():
    piece_length = 4 * BLOCK_SIZE
    data = bytes(range(256)) * (piece_length * 5 // 256 + 37)  # 5 pieces and a bit
    leaves = block_hashes(data)
    whole = naive_root(leaves, next_power_of_two(len(leaves)))
    layer = b"".join(
        piece_hash(data[i : i + piece_length], piece_length, len(data)) for i in range(0, len(data), piece_length)
    )
    assert len(layer) == 6 * 32
    assert root_from_piece_layer(layer, piece_length) == whole


def test_small_file_tree_is_padded_to_its_own_blocks_not_to_a_piece():
    piece_length = 8 * BLOCK_SIZE
    data = b"a" * (3 * BLOCK_SIZE)
    expected = naive_root(block_hashes(data), 4)
    assert piece_hash(data, piece_length, len(data)) == expected
