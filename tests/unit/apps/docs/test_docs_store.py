"""The update log: stored before applied, refused updates never stored, compaction, reload, and SIGKILL safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycrdt import Doc, Text

import peerloom
from peerloom.apps.docs.keys import DocKeys
from peerloom.apps.docs.store import DocStore, StoredDoc
from peerloom.apps.docs.updates import ReplayRefused, SignatureRefused, WriterRefused, seal
from peerloom.state import State


def append_text(word: str):
    def change(doc: Doc) -> None:
        text = doc.get("t", type=Text)
        text.insert(len(text), word)
    return change


def text_of(doc: StoredDoc) -> str:
    return str(doc.doc.get("t", type=Text))


def log_rows(state: State) -> int:
    return state.execute("SELECT count(*) FROM docs_updates")[0][0]


def test_edits_and_received_updates_survive_a_reopen(tmp_path: Path) -> None:
    keys, _ = DocKeys.new()
    state = State(tmp_path / "a.sqlite")
    writer = StoredDoc(DocStore(state), keys)
    sent = [writer.edit(append_text(w)) for w in ("日本", "語 ", "a😀b")]
    assert writer.edit(lambda doc: None) is None  # nothing changed, nothing stored
    reader_state = State(tmp_path / "b.sqlite")
    reader = StoredDoc(DocStore(reader_state), keys.reader())
    for data in sent:
        assert data is not None
        reader.receive(data, peer="a", now=0.0)
    state.close()
    reader_state.close()
    for path, k in ((tmp_path / "a.sqlite", keys), (tmp_path / "b.sqlite", keys.reader())):
        state = State(path)
        again = StoredDoc(DocStore(state), k)
        assert text_of(again) == "日本語 a😀b"
        state.close()


def test_refused_updates_are_not_stored(tmp_path: Path) -> None:
    keys, _ = DocKeys.new()
    state = State(tmp_path / "s.sqlite")
    doc = StoredDoc(DocStore(state), keys.reader())
    stranger = DocKeys(keys.doc_id, keys.read_key, Ed25519PrivateKey.generate())
    source = Doc()
    source.get("t", type=Text).insert(0, "evil")
    with pytest.raises(WriterRefused):
        doc.receive(seal(stranger, 0, source.get_update()))
    good = seal(keys, 0, source.get_update())
    doc.receive(good)
    with pytest.raises(ReplayRefused):
        doc.receive(good)
    assert log_rows(state) == 1


def test_compaction_replaces_the_log_with_one_signed_snapshot(tmp_path: Path) -> None:
    keys, _ = DocKeys.new()
    path = tmp_path / "s.sqlite"
    state = State(path)
    doc = StoredDoc(DocStore(state), keys)
    for word in ("one ", "two "):
        doc.edit(append_text(word))
    assert doc.compact() == 2 and log_rows(state) == 0
    doc.edit(append_text("three"))
    replayed = doc.store.load(keys.doc_id)
    assert replayed.snapshot is not None and len(replayed.updates) == 1
    state.close()
    state = State(path)
    again = StoredDoc(DocStore(state), keys)
    assert text_of(again) == "one two three"
    with pytest.raises(ReplayRefused):  # what the snapshot covers is still known as seen
        again.receive(replayed.updates[0])
    assert again.edit(append_text("!")) is not None
    assert [row[0] for row in state.execute("SELECT seq FROM docs_updates ORDER BY seq")] == [3, 4]
    state.close()


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from pycrdt import Text
    from peerloom.apps.docs.keys import parse_link
    from peerloom.apps.docs.store import DocStore, StoredDoc
    from peerloom.state import State

    doc = StoredDoc(DocStore(State(Path(sys.argv[1]))), parse_link(sys.argv[2]))
    i = 0
    while True:
        def change(d, i=i):
            text = d.get("t", type=Text)
            text.insert(len(text), f"<{i}😀>")
        doc.edit(change)
        print(i, flush=True)  # acknowledged: the edit call returned
        i += 1
""")


def test_an_acknowledged_edit_survives_sigkill(tmp_path: Path) -> None:
    keys, _ = DocKeys.new()
    path = tmp_path / "s.sqlite"
    env = dict(os.environ, PYTHONPATH=str(Path(peerloom.__file__).parent.parent))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), keys.link()], stdout=subprocess.PIPE,
                             env=env, text=True)
    acked = -1
    try:
        assert child.stdout is not None
        while acked < 30:
            acked = int(child.stdout.readline())
        os.kill(child.pid, signal.SIGKILL)  # right after reading an acknowledgement, mid-way through the next edit
    finally:
        child.kill()
        child.wait()
    state = State(path)
    text = text_of(StoredDoc(DocStore(state), keys))
    assert all(f"<{i}😀>" in text for i in range(acked + 1))
    state.close()


def test_a_row_tampered_with_on_disk_is_refused_on_reopen(tmp_path: Path) -> None:
    keys, _ = DocKeys.new()
    path = tmp_path / "s.sqlite"
    state = State(path)
    StoredDoc(DocStore(state), keys).edit(append_text("signed"))
    (envelope,), = state.execute("SELECT envelope FROM docs_updates")
    flipped = envelope[:100] + bytes([envelope[100] ^ 1]) + envelope[101:]
    state.execute("UPDATE docs_updates SET envelope = ?", (flipped,))
    with pytest.raises(SignatureRefused):
        StoredDoc(DocStore(state), keys.reader())
    state.close()


def test_a_writer_compacts_its_log_once_enough_rows_pile_up(tmp_path: Path) -> None:
    keys, _ = DocKeys.new()
    path = tmp_path / "s.sqlite"
    state = State(path)
    doc = StoredDoc(DocStore(state), keys, compact_after=3)
    reader_state = State(tmp_path / "r.sqlite")
    reader = StoredDoc(DocStore(reader_state), keys.reader(), compact_after=3)
    for i in range(7):
        data = doc.edit(append_text(f"{i}日"))
        assert data is not None
        reader.receive(data)
        assert log_rows(state) < 3
    assert doc.store.load(keys.doc_id).snapshot is not None
    assert reader.log_rows == 7  # a reader cannot sign a snapshot: it keeps the writers' envelopes
    state.close()
    state = State(path)
    again = StoredDoc(DocStore(state), keys)
    assert text_of(again) == text_of(reader) == "".join(f"{i}日" for i in range(7))
    state.close()
    reader_state.close()
