"""The state database's one connection: failures of the file become one StateError naming it, programming errors do
not; schemas and their migrations (a fresh file, a file made before schemas adopted with its data, a newer file
refused, a failed migration leaving the file as it was); threads sharing the connection."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from peerloom.api.store import DaemonStore, Entry
from peerloom.dht.persist import DhtStore
from peerloom.state import Schema, State, StateError
from peerloom.torrent import resume
from peerloom.torrent.resume import ResumeRecord, ResumeStore

T = ["CREATE TABLE t_values (k TEXT PRIMARY KEY, v INTEGER)"]
# Made by the three stores of peerloom af7083d (before the state file had schemas), each opening the file itself:
# a torrent's resume record, the daemon's entry and a setting, the DHT's node id and one saved node.
BEFORE_SCHEMAS = Path(__file__).parent / "data" / "state-before-schemas.sqlite"
OLD_ID = "ab" * 20


def open_t(path: Path, **kwargs: float) -> tuple[State, Schema]:
    state = State(path, **kwargs)
    return state, state.schema("t", T)


def dump(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


# -- failures of the file ----------------------------------------------------------------------------------------
def test_a_corrupt_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"not a database " * 500)
    with pytest.raises(StateError) as failed:
        State(path)
    assert str(failed.value).startswith(f"{path}: file is not a database (move it away")


def test_a_write_lock_held_elsewhere_is_a_state_error_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    state, db = open_t(path, timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StateError, match=r"database is locked \(another process is writing it\)$"):
            db.execute("INSERT INTO t_values VALUES ('a', 1)")
    finally:
        other.execute("ROLLBACK")
        other.close()
    db.execute("INSERT INTO t_values VALUES ('a', 1)")
    assert db.execute("SELECT v FROM t_values") == [(1,)]
    state.close()


def test_a_transaction_commits_whole_or_not_at_all(tmp_path: Path) -> None:
    state, db = open_t(tmp_path / "state.sqlite")
    with db.transaction():
        db.execute("INSERT INTO t_values VALUES ('a', 1)")
        db.execute("INSERT INTO t_values VALUES ('b', 2)")
    with pytest.raises(RuntimeError), db.transaction():
        db.execute("INSERT INTO t_values VALUES ('c', 3)")
        raise RuntimeError("interrupted")
    assert db.execute("SELECT k FROM t_values ORDER BY k") == [("a",), ("b",)]
    state.close()


def test_a_folder_that_cannot_be_made_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StateError, match="Not a directory"):
        State(tmp_path / "file" / "home" / "state.sqlite")


def test_programming_errors_are_not_disguised(tmp_path: Path) -> None:
    state, db = open_t(tmp_path / "state.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        db.executemany("INSERT INTO t_values VALUES (?, ?)", [("a", 1), ("a", 2)])
    state.close()
    state.close()  # closing again is harmless
    with pytest.raises(sqlite3.ProgrammingError):
        db.execute("SELECT 1")


# -- schemas and migrations --------------------------------------------------------------------------------------
def test_a_fresh_file_gets_every_schema_at_its_latest_version_with_prefixed_tables(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite")
    ResumeStore(state)
    DaemonStore(state)
    DhtStore(state)
    versions = dict(state.execute("SELECT name, version FROM schema_versions"))
    assert versions == {"torrent": 3, "daemon": 1, "dht": 1}
    tables = {r[0] for r in state.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"schema_versions", "torrent_resume", "torrent_progress", "daemon_torrents", "daemon_settings",
                      "dht_state", "dht_nodes"}
    state.close()


def test_a_file_made_before_schemas_is_adopted_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    shutil.copyfile(BEFORE_SCHEMAS, path)
    state = State(path)
    records, daemon, dht = ResumeStore(state), DaemonStore(state), DhtStore(state)
    assert records.all() == [ResumeRecord(id=OLD_ID, name="old", save_path="/data/old", torrent=b"d4:infoe",
                                          have=b"\xf0", clean=True, file_state=[[10, 20]], selected=[0, 2],
                                          uploaded=5, downloaded=7, added_at=1000.0)]
    assert daemon.entries() == [Entry(id=OLD_ID, save_path="/data/old", torrent=b"d4:infoe", files=[0, 2],
                                      paused=True, download_limit=1000, upload_limit=2000, added_at=1000.0)]
    assert daemon.setting("download_limit", 0) == 3000
    assert dht.node_id() == b"n" * 20
    assert dht.load_nodes(4) == [(b"a" * 20, "10.0.0.1", 6881)]
    tables = {r[0] for r in state.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "torrents" not in tables and "torrent_resume" in tables
    records.update_have(OLD_ID, b"\xff", 8, 9)
    state.close()
    again = State(path)  # the second start finds every schema current: nothing runs again, nothing is lost
    assert ResumeStore(again).load(OLD_ID).have == b"\xff"  # type: ignore[union-attr]
    assert dict(again.execute("SELECT name, version FROM schema_versions")) == {"torrent": 3, "daemon": 1, "dht": 1}
    again.close()


def test_a_file_from_a_newer_peerloom_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    state = State(path)
    ResumeStore(state)
    state.execute("UPDATE schema_versions SET version = 4 WHERE name = 'torrent'")
    state.close()
    before = dump(path)
    state = State(path)
    with pytest.raises(StateError) as refused:
        ResumeStore(state)
    assert str(refused.value) == (f"{path}: its torrent tables are at version 4, made by a newer peerloom (this one "
                                  "knows version 3); run that one, or move the file away")
    state.close()
    assert dump(path) == before


def fail(schema: Schema) -> None:
    schema.execute("INSERT INTO torrent_resume (id, name, save_path, added_at) VALUES ('x', 'x', '/x', 0)")
    raise RuntimeError("the data cannot be converted")


@pytest.mark.parametrize(("failing", "error", "reason"), [
    ("CREATE TABLE torrent_more (a); INSERT INTO torrent_nowhere VALUES (1)", StateError, "no such table"),
    (fail, RuntimeError, "cannot be converted"),
])
def test_a_failed_migration_leaves_the_file_as_it_was(tmp_path: Path, failing: object, error: type, reason: str
                                                       ) -> None:
    """Even the rename of migration 2 and the tables of the steps before the failing one are undone."""
    path = tmp_path / "state.sqlite"
    shutil.copyfile(BEFORE_SCHEMAS, path)
    before = dump(path)
    state = State(path)  # adds only the empty schema_versions table
    with pytest.raises(error, match=reason):
        state.schema("torrent", [*resume.MIGRATIONS, failing])  # type: ignore[list-item]
    assert state.execute("SELECT * FROM schema_versions") == []
    state.close()
    assert [line for line in dump(path) if "schema_versions" not in line] == before


def test_tables_without_the_schema_prefix_are_a_bug_and_undone(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite")
    with pytest.raises(ValueError, match="schema t made tables without its prefix: other"):
        state.schema("t", ["CREATE TABLE t_ok (a); CREATE TABLE other (a)"])
    assert state.execute("SELECT name FROM sqlite_master WHERE name LIKE '%t_ok%'") == []
    with pytest.raises(ValueError, match="lowercase"):
        state.schema("T-1", [])
    state.close()


def test_scripts_split_on_statements_not_on_every_semicolon(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite")
    log = state.schema("log", ["""
        CREATE TABLE log_lines (line TEXT);
        CREATE TRIGGER log_mark AFTER INSERT ON log_lines BEGIN
            INSERT INTO log_lines SELECT 'after; ' || NEW.line WHERE NEW.line NOT LIKE 'after;%';
        END;
        INSERT INTO log_lines VALUES ('a;b')
    """])
    assert log.execute("SELECT line FROM log_lines ORDER BY rowid") == [("a;b",), ("after; a;b",)]
    state.close()


# -- threads -----------------------------------------------------------------------------------------------------
def test_another_threads_statement_never_lands_in_an_open_transaction(tmp_path: Path) -> None:
    """One connection: without the lock, the worker's insert would run inside the transaction and be rolled back
    with it."""
    state, db = open_t(tmp_path / "state.sqlite")
    begun = threading.Event()

    def worker() -> None:
        begun.wait()
        db.execute("INSERT INTO t_values VALUES ('worker', 2)")

    thread = threading.Thread(target=worker)
    thread.start()
    with pytest.raises(RuntimeError), db.transaction():
        db.execute("INSERT INTO t_values VALUES ('rolled back', 1)")
        begun.set()
        thread.join(0.2)  # the worker waits for the transaction to end
        assert thread.is_alive()
        raise RuntimeError("interrupted")
    thread.join()
    assert db.execute("SELECT k FROM t_values") == [("worker",)]
    state.close()
