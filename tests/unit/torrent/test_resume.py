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


def test_progress_after_every_piece_leaves_the_record_and_its_metainfo_unwritten(tmp_path: Path) -> None:
    """`update_have` runs after every verified piece: it writes a row of its own (the bitfield and the totals), not
    the record, whose metainfo is large (piece hashes and layers); `load` sees the newest, and `save` folds it in."""
    state = State(tmp_path / "state.sqlite")
    store = ResumeStore(state)
    store.save(ResumeRecord(id="t", name="n", save_path="/s", torrent=b"x" * 500_000, have=b"\x00\x00"))
    written_before = state.execute("SELECT total_changes()")[0][0]
    store.update_have("t", b"\x80\x00", 16384, 5)
    store.update_have("t", b"\xc0\x00", 32768, 6)
    assert state.execute("SELECT have FROM torrent_resume WHERE id = 't'") == [(b"\x00\x00",)]  # the record: as saved
    assert state.execute("SELECT total_changes()")[0][0] - written_before == 2  # one row each time
    rec = store.load("t")
    assert rec is not None and (rec.have, rec.downloaded, rec.uploaded) == (b"\xc0\x00", 32768, 6)
    assert [r.have for r in store.all()] == [b"\xc0\x00"]
    store.save(ResumeRecord(id="t", name="n", save_path="/s", torrent=b"x", have=b"\xe0\x00", downloaded=49152))
    assert state.execute("SELECT count(*) FROM torrent_progress")[0][0] == 0
    rec = store.load("t")
    assert rec is not None and (rec.have, rec.downloaded) == (b"\xe0\x00", 49152)
    store.update_have("gone", b"\xff", 1, 1)  # no record, no progress row
    store.delete("t")
    assert state.execute("SELECT count(*) FROM torrent_progress")[0][0] == 0
    state.close()
