"""What the daemon was asked to keep: its torrents (source, save path, file selection, paused, limits)
and its own settings (global rate limits), in the node's SQLite state next to the resume data.

The engine's resume table records what each torrent *has*; this table records what the user *wants*,
so a restart (clean or after SIGKILL) brings every torrent back as it was.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from peerloom.state import Migration, State

MIGRATIONS: list[Migration] = [
    # 1: the tables as peerloom made them before the state file had schemas (homes made then are adopted as they are)
    """
CREATE TABLE IF NOT EXISTS daemon_torrents (
    id TEXT PRIMARY KEY,
    magnet TEXT,
    torrent BLOB,
    save_path TEXT NOT NULL,
    files TEXT,
    paused INTEGER NOT NULL DEFAULT 0,
    download_limit INTEGER NOT NULL DEFAULT 0,
    upload_limit INTEGER NOT NULL DEFAULT 0,
    shared INTEGER NOT NULL DEFAULT 0,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS daemon_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)
""",
]


@dataclass(slots=True)
class Entry:
    """One torrent the daemon manages. `torrent` holds the metainfo of .torrent files and shared paths;
    a magnet's metadata, once fetched, is in the resume table."""

    id: str
    save_path: str
    magnet: str | None = None
    torrent: bytes | None = None
    files: list[int] | None = None  # selected data files (None: all)
    paused: bool = False
    download_limit: int = 0
    upload_limit: int = 0
    shared: bool = False  # made from a local path by this node: its data is trusted complete when first added
    added_at: float = field(default_factory=time.time)


class DaemonStore:
    """The `daemon` schema of the node's state database; every method raises `StateError` when the file or its disk
    fails (full, read-only, locked, corrupt)."""

    def __init__(self, state: State) -> None:
        self.db = state.schema("daemon", MIGRATIONS)

    def entries(self) -> list[Entry]:
        rows = self.db.execute(
            "SELECT id, save_path, magnet, torrent, files, paused, download_limit, upload_limit, shared, added_at "
            "FROM daemon_torrents ORDER BY added_at"
        )
        return [
            Entry(id=r[0], save_path=r[1], magnet=r[2], torrent=r[3], files=None if r[4] is None else json.loads(r[4]),
                  paused=bool(r[5]), download_limit=r[6], upload_limit=r[7], shared=bool(r[8]), added_at=r[9])
            for r in rows
        ]

    def save(self, e: Entry) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO daemon_torrents VALUES (?,?,?,?,?,?,?,?,?,?)",
            (e.id, e.magnet, e.torrent, e.save_path, None if e.files is None else json.dumps(e.files), int(e.paused),
             e.download_limit, e.upload_limit, int(e.shared), e.added_at),
        )

    def delete(self, torrent_id: str) -> None:
        self.db.execute("DELETE FROM daemon_torrents WHERE id = ?", (torrent_id,))

    def setting(self, key: str, default: int) -> int:
        rows = self.db.execute("SELECT value FROM daemon_settings WHERE key = ?", (key,))
        return int(json.loads(rows[0][0])) if rows else default

    def set_setting(self, key: str, value: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO daemon_settings VALUES (?, ?)", (key, json.dumps(value)))
