"""A connection to the node's SQLite state file (HOME/state.sqlite) whose failures are one clear `StateError`.

A home on a full disk, a read-only or unmounted home, another process holding the write lock, or a file that is not
(or no longer) a SQLite database all surface from `sqlite3` as `OperationalError`/`DatabaseError` at any statement.
Every store of the state file (torrent resume data, the daemon's choices, the DHT's table) goes through `StateDb`,
so each of those becomes `StateError("HOME/state.sqlite: database or disk is full")`: the CLI prints it as one
line, the daemon answers it as an error instead of crashing. Misuse of the API (a programming error) is not
translated: it stays a bug with its traceback.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
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


class StateError(PeerloomError):
    """The node's state file cannot be opened, read or written (disk full, read-only, locked, corrupt)."""


class StateDb:
    """One connection to a state file in WAL mode (autocommit: each statement is its own transaction unless
    inside `transaction()`). Safe to call from one thread at a time; callers that share it across threads lock."""

    def __init__(self, path: Path, schema: Iterable[str] = (), *, timeout: float = LOCK_TIMEOUT) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"{self.path.parent}: {exc.strerror}") from exc
        with self.errors():
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=timeout)
        try:
            with self.errors():
                self.db.execute("PRAGMA journal_mode=WAL")
                # with WAL, a power loss may lose the last commits but never corrupts the file; a killed process
                # loses nothing
                self.db.execute("PRAGMA synchronous=NORMAL")
                for statement in schema:
                    self.db.execute(statement)
        except BaseException:
            self.db.close()
            raise

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
        with self.errors():
            return self.db.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.errors():
            self.db.executemany(sql, rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The statements of the block commit together or not at all (the write lock is taken at the start)."""
        self.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # there may be no transaction left to roll back
                self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self.errors():
            self.db.close()
