"""The node's state database, HOME/state.sqlite: one owner, one connection, a schema per service, migrations.

`Node` opens one `State` at start and closes it at stop; each service that keeps something between runs (the
torrent engine's resume data, the daemon's choices, the DHT's table) asks it for its own `Schema`:

    state = State(home / "state.sqlite")
    schema = state.schema("dht", MIGRATIONS)   # runs the migrations this file has not seen yet
    schema.execute("SELECT ... FROM dht_nodes")

A schema's tables are named with its prefix (`dht_nodes`, `torrent_resume`), so services never share a table.
`schema_versions` records how far each schema's migrations have run. Migrations are append-only: an SQL script or a
callable per version, and those past the recorded version run in one transaction with the version bump, so a failed
migration leaves the file as it was. A file whose version is newer than this peerloom knows was written by a newer
release: it is refused instead of being read with the wrong layout.

A home on a full disk, a read-only or unmounted home, another process holding the write lock, or a file that is not
(or no longer) a SQLite database all surface from `sqlite3` as `OperationalError`/`DatabaseError` at any statement.
They become one `StateError("HOME/state.sqlite: database or disk is full")`: the CLI prints it as one line, the
daemon answers it as an error instead of crashing. Misuse of the API (a programming error) is not translated: it
stays a bug with its traceback.

The connection is shared by the event loop and worker threads (the DHT saves its table from one): a lock serialises
the statements, and a transaction holds it from BEGIN to COMMIT, so no other thread's statement lands inside it.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from peerloom.errors import PeerloomError

LOCK_TIMEOUT = 5.0  # seconds a statement waits for another connection's write lock before "database is locked"

# what sqlite3 raises for a programming error, not for the state of the file or the disk
_BUGS = (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.NotSupportedError, sqlite3.InterfaceError)
_HINTS = {
    "database is locked": "another process is writing it",
    "file is not a database": "move it away to start afresh; its resume data and DHT nodes are lost",
    "database disk image is malformed": "move it away to start afresh; its resume data and DHT nodes are lost",
}
_NAME = re.compile(r"[a-z][a-z0-9]*\Z")

Migration = str | Callable[["Schema"], None]
"""One step of a schema's layout: an SQL script (statements separated by `;`), or a function for what SQL alone
cannot say. Step n (from 1) brings the schema from version n-1 to n."""


class StateError(PeerloomError):
    """The node's state file cannot be opened, read or written (disk full, read-only, locked, corrupt), or it was
    written by a newer peerloom."""


class State:
    """The one connection to a state file, in WAL mode (autocommit: each statement is its own transaction unless
    inside `transaction()`). Safe to share between threads. Raises `StateError` when the file cannot be opened."""

    def __init__(self, path: Path, *, timeout: float = LOCK_TIMEOUT) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"{self.path.parent}: {exc.strerror}") from exc
        with self.errors():
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=timeout)
        try:
            with self.errors():
                self._db.execute("PRAGMA journal_mode=WAL")
                # with WAL, a power loss may lose the last commits but never corrupts the file; a killed process
                # loses nothing
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS schema_versions "
                                 "(name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        except BaseException:
            self._db.close()
            raise

    def schema(self, name: str, migrations: Sequence[Migration]) -> Schema:
        """The schema `name` (its tables are named `name_...`), brought to version `len(migrations)` first."""
        if not _NAME.match(name):
            raise ValueError(f"a schema name is lowercase letters and digits: {name!r}")
        schema = Schema(self, name)
        with self.transaction():
            rows = self.execute("SELECT version FROM schema_versions WHERE name = ?", (name,))
            version = rows[0][0] if rows else 0
            if version > len(migrations):
                raise StateError(f"{self.path}: its {name} tables are at version {version}, made by a newer peerloom "
                                 f"(this one knows version {len(migrations)}); run that one, or move the file away")
            if version == len(migrations):
                return schema
            before = self._tables()
            for step in migrations[version:]:
                if callable(step):
                    step(schema)
                else:
                    for statement in _statements(step):
                        self.execute(statement)
            strays = sorted(t for t in self._tables() - before if not t.startswith(f"{name}_"))
            if strays:  # a bug in the migrations: the transaction rolls back
                raise ValueError(f"schema {name} made tables without its prefix: {', '.join(strays)}")
            self.execute("INSERT OR REPLACE INTO schema_versions VALUES (?, ?)", (name, len(migrations)))
        return schema

    def _tables(self) -> set[str]:
        return {row[0] for row in self.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn a failure of the file or the disk inside the block into `StateError`."""
        try:
            yield
        except sqlite3.Error as exc:
            if isinstance(exc, _BUGS):
                raise
            reason = str(exc)
            hint = _HINTS.get(reason)
            raise StateError(f"{self.path}: {reason}" + (f" ({hint})" if hint else "")) from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement; its rows (all fetched here, where a read error is still caught)."""
        with self._lock, self.errors():
            return self._db.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._lock, self.errors():
            self._db.executemany(sql, rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The statements of the block commit together or not at all (the write lock is taken at the start). Other
        threads wait until it ends; do not await inside it."""
        with self._lock:
            self.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # there may be no transaction left to roll back
                    self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection (and with it the file, its WAL and shared-memory files); later calls are no-ops."""
        with self._lock, self.errors():
            self._db.close()


class Schema:
    """One service's part of the state file: its statements go through the shared connection. Made by
    `State.schema`, which has run its migrations."""

    def __init__(self, state: State, name: str) -> None:
        self.state = state
        self.name = name

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement; its rows. Raises `StateError` when the file or its disk fails."""
        return self.state.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.state.executemany(sql, rows)

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """The statements of the block commit together or not at all."""
        return self.state.transaction()


def _statements(script: str) -> Iterator[str]:
    """The statements of an SQL script one by one (`executescript` would commit the migration's transaction first);
    a `;` inside a string or a trigger's body does not end a statement."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                yield pending
            pending = ""
    if pending.strip(" \t\r\n;"):
        yield pending
