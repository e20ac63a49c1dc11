"""SHA-256 merkle trees of BitTorrent v2 (BEP 52).

A file's tree has one leaf per 16 KiB block (the SHA-256 of the block; the last block may be
shorter). Leaves are padded with zero hashes up to a power of two. The "piece layer" is the layer
whose nodes each cover one piece; a file's "pieces root" is the root of the whole tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

BLOCK_SIZE = 16384
HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)


def next_power_of_two(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def pad_hash(height: int) -> bytes:
    """Root of a subtree of 2**height zero leaves: what stands in for data beyond the file's end."""
    node = ZERO_HASH
    for _ in range(height):
        node = sha256(node + node).digest()
    return node


def merkle_root(leaves: Sequence[bytes], width: int | None = None, pad: bytes = ZERO_HASH) -> bytes:
    """Root of the tree over `leaves` padded with `pad` nodes to `width` leaves (a power of two).

    `pad` is the node standing for a missing leaf; its parents are derived level by level, so a
    tree over a huge padded width costs only the real leaves.
    """
    if width is None:
        width = next_power_of_two(len(leaves))
    if width & (width - 1) or width < len(leaves):
        raise ValueError("width must be a power of two at least the number of leaves")
    layer = b"".join(leaves)
    while width > 1:
        if (len(layer) // HASH_SIZE) % 2:
            layer += pad
        view = memoryview(layer)
        layer = b"".join(sha256(view[i : i + 2 * HASH_SIZE]).digest() for i in range(0, len(view), 64))
        pad = sha256(pad + pad).digest()
        width //= 2
    return layer if layer else pad


def block_hashes(data: bytes | memoryview) -> list[bytes]:
    """SHA-256 of each 16 KiB block of `data` (the last one may be shorter)."""
    view = memoryview(data)
    return [sha256(view[i : i + BLOCK_SIZE]).digest() for i in range(0, len(view), BLOCK_SIZE)]


def blocks_per_piece(piece_length: int) -> int:
    """Leaves under one piece-layer node."""
    return piece_length // BLOCK_SIZE


def root_from_piece_layer(layer: bytes, piece_length: int) -> bytes:
    """A file's pieces root computed from its piece layer (concatenated 32-byte hashes)."""
    height = blocks_per_piece(piece_length).bit_length() - 1
    nodes = [layer[i : i + HASH_SIZE] for i in range(0, len(layer), HASH_SIZE)]
    return merkle_root(nodes, pad=pad_hash(height))


def piece_hash(data: bytes | memoryview, piece_length: int, file_length: int) -> bytes:
    """The node covering one piece of a file: the piece-layer hash when the file spans several
    pieces, the file's root itself when the whole file fits in one piece."""
    leaves = block_hashes(data)
    if file_length > piece_length:
        return merkle_root(leaves, blocks_per_piece(piece_length))
    return merkle_root(leaves, next_power_of_two(-(-file_length // BLOCK_SIZE)))
