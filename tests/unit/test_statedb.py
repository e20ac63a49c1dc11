"""The state file's connection: failures of the file become one StateError naming it; programming errors do not."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from peerloom.api.store import DaemonStore
from peerloom.dht.persist import DhtStore
from peerloom.statedb import StateDb, StateError
from peerloom.torrent.resume import ResumeStore

SCHEMA = ["CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER)"]


@pytest.mark.parametrize("store", [ResumeStore, DaemonStore, DhtStore])
def test_every_store_names_a_corrupt_file(tmp_path: Path, store: type) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"not a database " * 500)
    with pytest.raises(StateError) as failed:
        store(path)
    assert str(failed.value).startswith(f"{path}: file is not a database (move it away")


def test_a_write_lock_held_elsewhere_is_a_state_error_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    db = StateDb(path, SCHEMA, timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StateError, match=r"database is locked \(another process is writing it\)$"):
            db.execute("INSERT INTO t VALUES ('a', 1)")
    finally:
        other.execute("ROLLBACK")
        other.close()
    db.execute("INSERT INTO t VALUES ('a', 1)")
    assert db.execute("SELECT v FROM t") == [(1,)]
    db.close()


def test_a_transaction_commits_whole_or_not_at_all(tmp_path: Path) -> None:
    db = StateDb(tmp_path / "state.sqlite", SCHEMA)
    with db.transaction():
        db.execute("INSERT INTO t VALUES ('a', 1)")
        db.execute("INSERT INTO t VALUES ('b', 2)")
    with pytest.raises(RuntimeError), db.transaction():
        db.execute("INSERT INTO t VALUES ('c', 3)")
        raise RuntimeError("interrupted")
    assert db.execute("SELECT k FROM t ORDER BY k") == [("a",), ("b",)]
    db.close()


def test_a_folder_that_cannot_be_made_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StateError, match="Not a directory"):
        StateDb(tmp_path / "file" / "home" / "state.sqlite")


def test_programming_errors_are_not_disguised(tmp_path: Path) -> None:
    db = StateDb(tmp_path / "state.sqlite", SCHEMA)
    with pytest.raises(sqlite3.IntegrityError):
        db.executemany("INSERT INTO t VALUES (?, ?)", [("a", 1), ("a", 2)])
    db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        db.execute("SELECT 1")
