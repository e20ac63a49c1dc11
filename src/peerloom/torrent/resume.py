"""Resume data: what each torrent has, kept in SQLite in the node's home.

A piece is recorded only after it was verified and written. On start the record decides how much
checking is needed: after a clean stop with the files unchanged (size, mtime) the recorded pieces
are trusted; after a crash (kill -9) or when files changed, only the recorded pieces are re-hashed
(a fast recheck of what we already had), never fetched again when they still verify.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS torrents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    save_path TEXT NOT NULL,
    torrent BLOB,
    magnet TEXT,
    have BLOB NOT NULL DEFAULT x'',
    clean INTEGER NOT NULL DEFAULT 0,
    file_state TEXT NOT NULL DEFAULT '[]',
    selected TEXT,
    uploaded INTEGER NOT NULL DEFAULT 0,
    downloaded INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'active',
    added_at REAL NOT NULL
)
"""


@dataclass(slots=True)
class ResumeRecord:
    """Everything needed to bring a torrent back after a restart."""

    id: str
    name: str
    save_path: str
    torrent: bytes | None = None
    magnet: str | None = None
    have: bytes = b""
    clean: bool = False
    file_state: list[list[int]] = field(default_factory=list)
    selected: list[int] | None = None
    uploaded: int = 0
    downloaded: int = 0
    state: str = "active"
    added_at: float = field(default_factory=time.time)


def pack_bits(bits: bytearray | list[bool]) -> bytes:
    """Pieces as a BitTorrent-style bitfield (high bit first)."""
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


def unpack_bits(data: bytes, count: int) -> bytearray:
    out = bytearray(count)
    for i in range(min(count, len(data) * 8)):
        if data[i >> 3] & (0x80 >> (i & 7)):
            out[i] = 1
    return out


class ResumeStore:
    """The torrents table of a node's state database."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(SCHEMA)

    def save(self, rec: ResumeRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO torrents VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                rec.id,
                rec.name,
                rec.save_path,
                rec.torrent,
                rec.magnet,
                rec.have,
                int(rec.clean),
                json.dumps(rec.file_state),
                None if rec.selected is None else json.dumps(rec.selected),
                rec.uploaded,
                rec.downloaded,
                rec.state,
                rec.added_at,
            ),
        )

    def load(self, torrent_id: str) -> ResumeRecord | None:
        row = self.db.execute("SELECT * FROM torrents WHERE id = ?", (torrent_id,)).fetchone()
        return None if row is None else self._record(row)

    def all(self) -> list[ResumeRecord]:
        return [self._record(r) for r in self.db.execute("SELECT * FROM torrents ORDER BY added_at")]

    def delete(self, torrent_id: str) -> None:
        self.db.execute("DELETE FROM torrents WHERE id = ?", (torrent_id,))

    def close(self) -> None:
        self.db.close()

    @staticmethod
    def _record(row: tuple) -> ResumeRecord:
        return ResumeRecord(
            id=row[0],
            name=row[1],
            save_path=row[2],
            torrent=row[3],
            magnet=row[4],
            have=row[5],
            clean=bool(row[6]),
            file_state=json.loads(row[7]),
            selected=None if row[8] is None else json.loads(row[8]),
            uploaded=row[9],
            downloaded=row[10],
            state=row[11],
            added_at=row[12],
        )
