"""Resume store: records survive a reopen; bitfields pack like the wire's."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from peerloom.state import State
from peerloom.torrent.resume import ResumeRecord, ResumeStore, pack_bits, unpack_bits


@given(st.lists(st.booleans(), max_size=300))
def test_bits_round_trip(bits: list[bool]) -> None:
    packed = pack_bits(bits)
    assert len(packed) == (len(bits) + 7) // 8
    assert list(unpack_bits(packed, len(bits))) == [int(b) for b in bits]


def test_pack_bits_is_high_bit_first() -> None:
    assert pack_bits([True, False, False, False, False, False, False, False, True]) == b"\x80\x80"


def test_records_survive_reopen(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite")
    store = ResumeStore(state)
    rec = ResumeRecord(id="ab" * 20, name="x", save_path="/tmp/x", torrent=b"d4:infoe", have=b"\xf0",
                       clean=True, file_state=[[10, 20]], selected=[0, 2], uploaded=5, downloaded=7)
    store.save(rec)
    state.close()
    state = State(tmp_path / "state.sqlite")
    again = ResumeStore(state)
    loaded = again.load("ab" * 20)
    assert loaded == rec
    assert [r.id for r in again.all()] == ["ab" * 20]
    again.delete("ab" * 20)
    assert again.load("ab" * 20) is None
    state.close()
