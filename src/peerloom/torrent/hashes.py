"""BEP 52 hash exchange: answering hash requests from a piece layer, and fetching missing piece layers.

A v2 torrent fetched by magnet link has only each file's root; the piece layers (one hash per piece)
come from peers with `hash request` messages. We ask for a file's whole piece layer in aligned chunks
of up to 512 hashes without proofs, and accept it only when the assembled layer hashes up to the
file's root — so a lying peer can cost a retry, never a wrong hash.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from hashlib import sha256

from peerloom.torrent.merkle import HASH_SIZE, next_power_of_two, pad_hash, root_from_piece_layer
from peerloom.torrent.wire import MAX_HASHES, Hashes, HashRequest


def piece_layer_height(piece_length: int) -> int:
    """Layers between the 16 KiB block leaves (layer 0) and the piece layer."""
    return (piece_length // 16384).bit_length() - 1


def tree_above(layer: bytes, piece_length: int) -> list[list[bytes]]:
    """The tree from the (padded) piece layer up to the root: element 0 is the piece layer."""
    pad = pad_hash(piece_layer_height(piece_length))
    nodes = [layer[i : i + HASH_SIZE] for i in range(0, len(layer), HASH_SIZE)]
    width = next_power_of_two(len(nodes))
    nodes += [pad] * (width - len(nodes))
    layers = [nodes]
    while len(nodes) > 1:
        nodes = [sha256(nodes[i] + nodes[i + 1]).digest() for i in range(0, len(nodes), 2)]
        layers.append(nodes)
    return layers


def answer_hash_request(req: HashRequest, layer: bytes | None, piece_length: int) -> Hashes | None:
    """The `hashes` reply to a request for (part of) a piece layer we hold, or None to reject it.

    BEP 52: the requested base-layer hashes, then one uncle per proof layer from the lowest up; the
    first log2(length)-1 proof layers are implied by the hashes themselves and omitted.
    """
    if layer is None or req.base_layer != piece_layer_height(piece_length):
        return None
    length = req.length
    # At least 2 hashes: a reply omits the first log2(length) - 1 proof layers, which means nothing for one
    # hash (our answer would carry more than length + proof_layers hashes, which WireParser refuses).
    if length < 2 or length > MAX_HASHES or length & (length - 1) or req.index % length:
        return None
    tree = tree_above(layer, piece_length)
    base = tree[0]
    if req.index + length > len(base):  # the whole range must lie in the padded layer (as libtorrent checks)
        return None
    out = base[req.index : req.index + length]
    k = length.bit_length() - 1
    position = req.index >> k
    for level in range(k, min(req.proof_layers, len(tree) - 2) + 1):  # empty when proof_layers < k
        out.append(tree[level][position ^ 1])
        position >>= 1
    return Hashes(req.pieces_root, req.base_layer, req.index, length, req.proof_layers, b"".join(out))


@dataclass
class LayerFetch:
    """One file's piece layer being fetched from peers in chunks of up to 512 hashes."""

    pieces_root: bytes
    num_pieces: int
    piece_length: int
    chunks: dict[int, bytes] = field(default_factory=dict)
    asked: dict[int, Hashable] = field(default_factory=dict)

    def chunk_starts(self) -> range:
        return range(0, self.num_pieces, MAX_HASHES)

    def request_for(self, peer: Hashable) -> HashRequest | None:
        """The next chunk nobody is asked for, to ask `peer`."""
        for start in self.chunk_starts():
            if start not in self.chunks and start not in self.asked:
                self.asked[start] = peer
                remaining = self.num_pieces - start
                length = max(2, min(MAX_HASHES, next_power_of_two(remaining)))
                return HashRequest(self.pieces_root, piece_layer_height(self.piece_length), start, length, 0)
        return None

    def release(self, peer: Hashable, start: int | None = None) -> None:
        for s, who in list(self.asked.items()):
            if who == peer and (start is None or s == start):
                del self.asked[s]

    def receive(self, peer: Hashable, msg: Hashes) -> bytes | None:
        """Store a chunk; when the layer is whole and hashes to the root, return it. Raises ValueError
        when the assembled layer is wrong (every chunk is dropped and asked again)."""
        if self.asked.get(msg.index) != peer:
            return None
        del self.asked[msg.index]
        want = min(MAX_HASHES, self.num_pieces - msg.index)
        if len(msg.hashes) < want * HASH_SIZE:
            raise ValueError("too few hashes in the reply")
        self.chunks[msg.index] = msg.hashes[: want * HASH_SIZE]
        if len(self.chunks) < len(self.chunk_starts()):
            return None
        layer = b"".join(self.chunks[s] for s in self.chunk_starts())
        if root_from_piece_layer(layer, self.piece_length) != self.pieces_root:
            self.chunks.clear()
            raise ValueError("piece layer does not hash to the file's root")
        return layer
