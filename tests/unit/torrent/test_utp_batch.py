"""How a connection's datagrams are cut into UDP GSO sends (torrent/utp_batch.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from peerloom.torrent.utp import Oversize
from peerloom.torrent.utp_batch import GSO_BYTES, GSO_SEGMENTS, gso_runs


def runs(datagrams: list[bytes], **limits: int) -> list[tuple[int, int, int]]:
    return list(gso_runs(datagrams, **limits))


def test_equal_datagrams_go_in_one_send_and_a_shorter_one_may_close_it() -> None:
    full, short = b"x" * 1452, b"y" * 300
    assert runs([full] * 5 + [short]) == [(0, 6, 1452)]
    assert runs([full] * 3 + [short, full]) == [(0, 4, 1452), (4, 5, 0)]  # nothing after the short one


def test_a_larger_datagram_starts_a_new_run() -> None:
    assert runs([b"a" * 100, b"b" * 100, b"c" * 200, b"d" * 200]) == [(0, 2, 100), (2, 4, 200)]


def test_a_single_datagram_goes_alone() -> None:
    assert runs([b"a" * 100]) == [(0, 1, 0)]
    assert runs([b"a" * 100, b"b" * 200]) == [(0, 1, 0), (1, 2, 0)]
    assert runs([]) == []


def test_an_oversize_datagram_always_goes_alone() -> None:
    full = b"x" * 1000
    assert runs([full, full, Oversize(full), full, full]) == [(0, 2, 1000), (2, 3, 0), (3, 5, 1000)]
    assert runs([full, Oversize(b"x" * 10)]) == [(0, 1, 0), (1, 2, 0)]  # not even as the short last segment


def test_a_run_stops_at_the_segment_and_byte_limits() -> None:
    assert runs([b"x" * 100] * 10, max_segments=4) == [(0, 4, 100), (4, 8, 100), (8, 10, 100)]
    assert runs([b"x" * 1000] * 100)[0] == (0, GSO_SEGMENTS, 1000)
    assert runs([b"x" * 1452] * 100)[0] == (0, GSO_BYTES // 1452, 1452)  # 46 segments would pass 65,507 bytes
    assert runs([b"x" * 1000] * 100, max_bytes=2500) == [(i, min(i + 2, 100), 1000) for i in range(0, 100, 2)]


@given(st.lists(st.one_of(st.integers(1, 1500), st.just(-1), st.integers(1, 70000)), max_size=300))
def test_runs_cover_every_datagram_in_order_within_the_kernel_limits(sizes: list[int]) -> None:
    datagrams = [Oversize(b"o" * 20) if s < 0 else b"d" * s for s in sizes]
    position = 0
    for start, end, size in gso_runs(datagrams):
        assert start == position < end
        position = end
        group = datagrams[start:end]
        if size == 0:
            assert len(group) == 1
            continue
        assert len(group) <= GSO_SEGMENTS and sum(map(len, group)) <= GSO_BYTES
        assert all(type(d) is not Oversize for d in group)
        assert all(len(d) == size for d in group[:-1]) and 0 < len(group[-1]) <= size
    assert position == len(datagrams)
