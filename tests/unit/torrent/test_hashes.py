"""BEP 52 hash exchange: answering hash requests from a piece layer (valid, out of range, unaligned) and
LayerFetch accepting only a piece layer that hashes to the file's root."""

from __future__ import annotations

from hashlib import sha256

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerloom.torrent import wire
from peerloom.torrent.hashes import LayerFetch, answer_hash_request, piece_layer_height, tree_above
from peerloom.torrent.merkle import HASH_SIZE, next_power_of_two, pad_hash, root_from_piece_layer
from peerloom.torrent.wire import MAX_HASHES, Hashes, HashRequest

PIECE_LENGTH = 4 * 16384  # two layers above the blocks
BASE = piece_layer_height(PIECE_LENGTH)


def make_layer(num_pieces: int, seed: int = 0) -> bytes:
    return b"".join(sha256(b"%d/%d" % (seed, i)).digest() for i in range(num_pieces))


def hashes_of(layer: bytes) -> list[bytes]:
    return [layer[i : i + HASH_SIZE] for i in range(0, len(layer), HASH_SIZE)]


def root_from_reply(reply: Hashes, piece_length: int) -> bytes:
    """Climb from the reply's base hashes through its uncles, the way a requester verifies a reply."""
    nodes = hashes_of(reply.hashes)
    base, uncles = nodes[: reply.length], nodes[reply.length :]
    while len(base) > 1:
        base = [sha256(base[i] + base[i + 1]).digest() for i in range(0, len(base), 2)]
    node = base[0]
    position = reply.index // reply.length
    for uncle in uncles:
        node = sha256(uncle + node).digest() if position & 1 else sha256(node + uncle).digest()
        position >>= 1
    assert position == 0, "the proof must reach the root"
    return node


def request(layer_root: bytes, index: int, length: int, proofs: int = 0, base: int = BASE) -> HashRequest:
    return HashRequest(layer_root, base, index, length, proofs)


def test_piece_layer_height() -> None:
    assert [piece_layer_height(16384 << k) for k in range(5)] == [0, 1, 2, 3, 4]


def test_tree_above_pads_the_piece_layer_up_to_the_root() -> None:
    layer = make_layer(5)
    tree = tree_above(layer, PIECE_LENGTH)
    assert [len(level) for level in tree] == [8, 4, 2, 1]
    assert tree[0][5:] == [pad_hash(BASE)] * 3
    assert tree[-1][0] == root_from_piece_layer(layer, PIECE_LENGTH)


# -- answering requests ------------------------------------------------------------------------------
def test_answer_whole_layer_without_proofs() -> None:
    layer = make_layer(16)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    reply = answer_hash_request(request(root, 0, 16), layer, PIECE_LENGTH)
    assert reply == Hashes(root, BASE, 0, 16, 0, layer)
    assert root_from_reply(reply, PIECE_LENGTH) == root


@pytest.mark.parametrize(
    ("num_pieces", "index", "length", "proofs", "uncles"),
    [
        (16, 4, 4, 4, 2),  # levels 2 and 3: everything up to the root
        (16, 4, 4, 3, 2),
        (16, 4, 4, 2, 1),  # only the uncle at level 2
        (16, 4, 4, 1, 0),  # fewer proof layers than the hashes imply: none
        (16, 6, 2, 9, 3),  # proof layers beyond the root are clamped
        (16, 6, 2, 1, 1),
        (13, 8, 8, 5, 1),  # a range that is partly padding
        (2, 0, 2, 3, 0),  # the range is the whole tree
        (3, 0, 4, 0, 0),
    ],
)
def test_answer_with_proofs_reaches_the_root(
    num_pieces: int, index: int, length: int, proofs: int, uncles: int
) -> None:
    layer = make_layer(num_pieces)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    reply = answer_hash_request(request(root, index, length, proofs), layer, PIECE_LENGTH)
    assert reply is not None
    assert (reply.pieces_root, reply.base_layer, reply.index, reply.length, reply.proof_layers) == (
        root, BASE, index, length, proofs,
    )
    padded = hashes_of(layer) + [pad_hash(BASE)] * (next_power_of_two(num_pieces) - num_pieces)
    assert hashes_of(reply.hashes)[:length] == padded[index : index + length]
    assert len(reply.hashes) == (length + uncles) * HASH_SIZE
    if length.bit_length() - 1 + uncles == next_power_of_two(num_pieces).bit_length() - 1:
        assert root_from_reply(reply, PIECE_LENGTH) == root
    parsed = wire.WireParser().feed(wire.encode(reply))  # our answer passes our own wire checks
    assert parsed == [reply]


@pytest.mark.parametrize(
    ("index", "length", "why"),
    [
        (16, 4, "index past the padded layer"),
        (1 << 31, 4, "index far out of range"),
        (12, 8, "unaligned"),
        (2, 4, "unaligned"),
        (3, 2, "unaligned"),
        (0, 3, "length not a power of two"),
        (0, 0, "empty"),
        (5, 1, "a single hash: no proof layer is implied, so BEP 52's proof count is undefined"),
        (0, 1, "a single hash"),
        (0, -4, "negative"),
        (0, 2 * MAX_HASHES, "more hashes than one message may carry"),
        (0, 32, "range longer than the whole padded layer"),
        (0, 64, "range longer than the whole padded layer"),
    ],
)
def test_requests_out_of_range_or_unaligned_are_rejected(index: int, length: int, why: str) -> None:
    layer = make_layer(16)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    assert answer_hash_request(request(root, index, length), layer, PIECE_LENGTH) is None, why


def test_requests_for_another_layer_or_a_layer_we_lack_are_rejected() -> None:
    layer = make_layer(16)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    assert answer_hash_request(request(root, 0, 4, base=0), layer, PIECE_LENGTH) is None  # block layer
    assert answer_hash_request(request(root, 0, 4, base=BASE + 1), layer, PIECE_LENGTH) is None
    assert answer_hash_request(request(root, 0, 4), None, PIECE_LENGTH) is None


@settings(max_examples=300, deadline=None)
@given(
    num_pieces=st.integers(1, 70),
    index=st.integers(0, 140),
    log_length=st.integers(0, 8),
    proofs=st.integers(0, 12),
)
def test_every_answer_is_whole_and_verifies(num_pieces: int, index: int, log_length: int, proofs: int) -> None:
    layer = make_layer(num_pieces)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    length = 1 << log_length
    reply = answer_hash_request(request(root, index, length, proofs), layer, PIECE_LENGTH)
    width = next_power_of_two(num_pieces)
    if log_length == 0 or index % length or index + length > width:
        assert reply is None
        return
    assert reply is not None
    levels = width.bit_length() - 1  # uncles exist at levels log_length .. levels - 1
    uncles = max(0, min(proofs, levels - 1) - log_length + 1)
    assert len(reply.hashes) == (length + uncles) * HASH_SIZE
    if log_length + uncles == levels:
        assert root_from_reply(reply, PIECE_LENGTH) == root
    assert wire.WireParser().feed(wire.encode(reply)) == [reply]  # a peerloom requester accepts it


# -- fetching a piece layer --------------------------------------------------------------------------
class Peer:
    """A peer that answers from a layer (the true one, or a corrupt one)."""

    def __init__(self, layer: bytes, piece_length: int = PIECE_LENGTH) -> None:
        self.layer = layer
        self.piece_length = piece_length

    def answer(self, req: HashRequest) -> Hashes:
        reply = answer_hash_request(req, self.layer, self.piece_length)
        assert reply is not None
        return reply


def fetch_all(fetch: LayerFetch, peer: Peer) -> bytes | None:
    result = None
    while (req := fetch.request_for(peer)) is not None:
        result = fetch.receive(peer, peer.answer(req))
    return result


@pytest.mark.parametrize("num_pieces", [2, 3, 5, 512, 513, 1100])
def test_layer_fetch_accepts_the_true_layer(num_pieces: int) -> None:
    layer = make_layer(num_pieces)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    fetch = LayerFetch(root, num_pieces, PIECE_LENGTH)
    assert fetch_all(fetch, Peer(layer)) == layer
    assert fetch.asked == {}


def test_layer_fetch_asks_each_chunk_once_in_aligned_powers_of_two() -> None:
    layer = make_layer(1100)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    fetch = LayerFetch(root, 1100, PIECE_LENGTH)
    a, b = Peer(layer), Peer(layer)
    reqs = [fetch.request_for(a), fetch.request_for(b), fetch.request_for(a)]
    assert [(r.index, r.length, r.base_layer, r.proof_layers) for r in reqs if r] == [
        (0, 512, BASE, 0), (512, 512, BASE, 0), (1024, 128, BASE, 0),
    ]
    assert fetch.request_for(b) is None
    assert fetch.asked == {0: a, 512: b, 1024: a}


def test_layer_fetch_ignores_replies_it_did_not_ask_that_peer_for() -> None:
    layer = make_layer(600)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    fetch = LayerFetch(root, 600, PIECE_LENGTH)
    asked, other = Peer(layer), Peer(layer)
    req = fetch.request_for(asked)
    assert req is not None
    assert fetch.receive(other, asked.answer(req)) is None  # from a peer we did not ask
    unasked = HashRequest(root, BASE, 512, 128, 0)
    assert fetch.receive(asked, asked.answer(unasked)) is None  # a chunk nobody was asked for
    assert fetch.chunks == {}
    assert fetch.asked == {0: asked}


def test_layer_fetch_rejects_a_short_reply_and_asks_again() -> None:
    layer = make_layer(5)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    fetch = LayerFetch(root, 5, PIECE_LENGTH)
    peer = Peer(layer)
    req = fetch.request_for(peer)
    assert req is not None and req.length == 8
    short = Hashes(root, BASE, 0, 8, 0, layer[: 4 * HASH_SIZE])
    with pytest.raises(ValueError, match="too few"):
        fetch.receive(peer, short)
    assert fetch.chunks == {} and fetch.asked == {}
    assert fetch_all(fetch, peer) == layer


def test_layer_fetch_uses_only_the_hashes_it_needs() -> None:
    layer = make_layer(3)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    fetch = LayerFetch(root, 3, PIECE_LENGTH)
    peer = Peer(layer)
    req = fetch.request_for(peer)
    assert req is not None
    reply = peer.answer(HashRequest(root, BASE, 0, 4, 2))  # padding and proof hashes after the three
    assert len(reply.hashes) > 3 * HASH_SIZE
    assert fetch.receive(peer, reply) == layer


@pytest.mark.parametrize("num_pieces", [4, 1100])
def test_layer_fetch_rejects_wrong_hashes_then_recovers(num_pieces: int) -> None:
    layer = make_layer(num_pieces)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    corrupt = bytearray(layer)
    corrupt[-1] ^= 1
    liar, honest = Peer(bytes(corrupt)), Peer(layer)
    fetch = LayerFetch(root, num_pieces, PIECE_LENGTH)
    with pytest.raises(ValueError, match="does not hash"):
        fetch_all(fetch, liar)
    assert fetch.chunks == {} and fetch.asked == {}  # every chunk is dropped and asked again
    assert fetch_all(fetch, honest) == layer


def test_layer_fetch_rejects_a_layer_from_another_file() -> None:
    layer = make_layer(8)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    fetch = LayerFetch(root, 8, PIECE_LENGTH)
    with pytest.raises(ValueError):
        fetch_all(fetch, Peer(make_layer(8, seed=1)))


def test_layer_fetch_release() -> None:
    layer = make_layer(1100)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    fetch = LayerFetch(root, 1100, PIECE_LENGTH)
    a, b = Peer(layer), Peer(layer)
    fetch.request_for(a)
    fetch.request_for(a)
    fetch.request_for(b)
    fetch.release(a, 512)
    assert fetch.asked == {0: a, 1024: b}
    fetch.release(a)
    assert fetch.asked == {1024: b}
    req = fetch.request_for(b)
    assert req is not None and req.index == 0


@settings(max_examples=100, deadline=None)
@given(num_pieces=st.integers(2, 1100), position=st.integers(0), bit=st.integers(0, 7))
def test_layer_fetch_never_returns_a_wrong_layer(num_pieces: int, position: int, bit: int) -> None:
    layer = make_layer(num_pieces)
    root = root_from_piece_layer(layer, PIECE_LENGTH)
    corrupt = bytearray(layer)
    corrupt[position % len(corrupt)] ^= 1 << bit
    fetch = LayerFetch(root, num_pieces, PIECE_LENGTH)
    with pytest.raises(ValueError):
        fetch_all(fetch, Peer(bytes(corrupt)))
    assert fetch_all(fetch, Peer(layer)) == layer
