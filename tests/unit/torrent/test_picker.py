"""Piece picker: rarest-first, random first pieces, sequential, end-game, aborts, failures."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from peerloom.torrent.picker import BLOCK, RANDOM_FIRST, PartialPiece, PiecePicker

PIECE = 4 * BLOCK


def picker(n: int = 10, **kw) -> PiecePicker:
    return PiecePicker([PIECE] * (n - 1) + [BLOCK + 100], rng=random.Random(1), **kw)


def test_requests_cover_each_piece_in_blocks_and_last_block_is_short() -> None:
    p = picker(2)
    reqs = p.pick("a", bytearray([1, 1]), 100, False)
    assert sorted(reqs) == [(0, 0, BLOCK), (0, BLOCK, BLOCK), (0, 2 * BLOCK, BLOCK), (0, 3 * BLOCK, BLOCK),
                            (1, 0, BLOCK), (1, BLOCK, 100)]


def test_rarest_first_after_random_start() -> None:
    p = picker(10)
    for i in range(RANDOM_FIRST):
        p.mark_have(i)
    everyone = bytearray([1] * 10)
    p.add_peer_pieces(everyone)
    p.add_peer_pieces(everyone)
    p.add_peer_pieces(bytearray(1 if i != 7 else 0 for i in range(10)))  # piece 7 is the rarest
    reqs = p.pick("a", everyone, 1, False)
    assert reqs[0][0] == 7


def test_sequential_takes_pieces_in_order() -> None:
    p = picker(10, sequential=True)
    reqs = p.pick("a", bytearray([1] * 10), 8, False)
    assert [r[0] for r in reqs] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_only_pieces_the_peer_has_and_we_want() -> None:
    wanted = [i % 2 == 0 for i in range(10)]
    p = picker(10, wanted=wanted)
    bits = bytearray([1 if i in (3, 4) else 0 for i in range(10)])
    reqs = p.pick("a", bits, 100, False)
    assert {r[0] for r in reqs} == {4}
    assert p.interesting(bits)
    assert not p.interesting(bytearray([1 if i == 3 else 0 for i in range(10)]))


def test_abort_frees_blocks_for_another_peer() -> None:
    p = PiecePicker([3 * BLOCK], rng=random.Random(0))
    first = p.pick("a", b"", 2, True)
    assert [r[1] for r in first] == [0, BLOCK]
    assert p.pick("b", b"", 5, True) == [(0, 2 * BLOCK, BLOCK)]  # only the block nobody was asked for
    for index, begin, _ in first:
        p.abort("a", index, begin)
    assert sorted(p.pick("c", b"", 5, True)) == sorted(first)


def test_piece_complete_verify_pass_and_fail() -> None:
    p = PiecePicker([2 * BLOCK], rng=random.Random(0))
    reqs = p.pick("a", b"", 10, True)
    assert len(reqs) == 2
    for index, begin, length in reqs:
        assert p.block_received("a", index, begin, length) == []
    assert p.piece_complete(0)
    p.start_verifying(0)
    assert p.pick("b", b"", 10, True) == []  # out for hashing: not picked again
    p.piece_failed(0)
    again = p.pick("b", b"", 10, True)
    assert sorted(again) == sorted(reqs)  # failed: the whole piece is fetched again
    for index, begin, length in again:
        p.block_received("b", index, begin, length)
    p.start_verifying(0)
    p.piece_passed(0)
    assert p.complete


def test_unexpected_blocks_are_refused() -> None:
    p = PiecePicker([2 * BLOCK])
    assert p.block_received("a", 0, 0, BLOCK) is None  # piece not started
    p.pick("a", b"", 1, True)
    assert p.block_received("a", 0, 5, BLOCK) is None  # not block aligned
    assert p.block_received("a", 0, 0, 10) is None  # wrong size
    assert p.block_received("a", 0, 0, BLOCK) == []
    assert p.block_received("a", 0, 0, BLOCK) is None  # duplicate


def test_endgame_asks_a_second_peer_and_reports_whom_to_cancel() -> None:
    p = PiecePicker([2 * BLOCK], rng=random.Random(0))
    first = p.pick("slow", b"", 10, True)
    assert len(first) == 2
    assert p.in_endgame
    dup = p.pick("fast", b"", 10, True)
    assert sorted(dup) == sorted(first)
    assert p.pick("third", b"", 10, True) == []  # at most two peers per block
    index, begin, length = dup[0]
    assert p.block_received("fast", index, begin, length) == ["slow"]


def test_availability_tracking() -> None:
    p = picker(3)
    p.add_peer_pieces(bytearray([1, 0, 1]))
    p.peer_has(1)
    assert p.availability == [1, 1, 1]
    p.remove_peer_pieces(bytearray([1, 0, 1]))
    assert p.availability == [0, 1, 0]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_new_pieces_are_always_among_the_rarest_the_peer_has(data: st.DataObject) -> None:
    """Against a brute-force oracle, through random peers joining and leaving, haves, picks, aborts,
    verifications passing and failing, and file selection changes."""
    n = data.draw(st.integers(1, 40))
    picker = PiecePicker([BLOCK * 2] * n, rng=random.Random(data.draw(st.integers(0, 9))))
    peers: list[bytearray] = []
    for _ in range(data.draw(st.integers(1, 40))):
        op = data.draw(st.sampled_from(["join", "leave", "have", "pick", "abort", "pass", "fail", "want"]))
        if op == "join":
            bits = bytearray(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
            peers.append(bits)
            picker.add_peer_pieces(bits)
        elif op == "leave" and peers:
            picker.remove_peer_pieces(peers.pop(data.draw(st.integers(0, len(peers) - 1))))
        elif op == "have" and peers:
            bits = peers[data.draw(st.integers(0, len(peers) - 1))]
            i = data.draw(st.integers(0, n - 1))
            if not bits[i]:
                bits[i] = 1
                picker.peer_has(i)
        elif op == "pick":
            bits = peers[data.draw(st.integers(0, len(peers) - 1))] if peers else bytearray(n)
            seed = data.draw(st.booleans())
            candidates = [
                i for i in range(n)
                if picker.wanted[i] and not picker.have[i] and i not in picker.partial
                and i not in picker._verifying and (seed or bits[i])
            ]
            got = picker._new_piece(bits, seed)
            if not candidates:
                assert got is None
            else:
                assert got in candidates
                if sum(picker.have) >= 4 and not picker.sequential:
                    assert picker.availability[got] == min(picker.availability[i] for i in candidates)
                picker._start(got)
        elif op == "abort" and picker.partial:
            index = data.draw(st.sampled_from(sorted(picker.partial)))
            picker.pick("p", b"\x01" * n, 1, True)
            for b, who in list(picker.partial.get(index, PartialPiece(0, bytearray())).requesters.items()):
                picker.abort(who[0], index, b * BLOCK)
        elif op in ("pass", "fail") and picker.partial:
            index = data.draw(st.sampled_from(sorted(picker.partial)))
            picker.start_verifying(index)
            (picker.piece_passed if op == "pass" else picker.piece_failed)(index)
        elif op == "want":
            picker.set_wanted(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
