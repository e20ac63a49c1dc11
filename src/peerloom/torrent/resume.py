"""Resume data: what each torrent has, kept in SQLite in the node's home.

A piece is recorded only after it was verified and written. On start the record decides how much
checking is needed: after a clean stop with the files unchanged (size, mtime) the recorded pieces
are trusted; after a crash (kill -9) or when files changed, only the recorded pieces are re-hashed
(a fast recheck of what we already had), never fetched again when they still verify.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from peerloom.state import Migration, State

MIGRATIONS: list[Migration] = [
    # 1: the table as peerloom made it before the state file had schemas (homes made then are adopted as they are)
    """
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
""",
    # 2: named with its schema's prefix
    "ALTER TABLE torrents RENAME TO torrent_resume",
    # 3: the pieces and totals written after every verified piece get a small row of their own. Updated in
    # `torrent_resume`, each one rewrote the whole record, the torrent's metainfo (its piece hashes and layers) with
    # it: ~100 KB per piece for a 512 MiB torrent of 256 KiB pieces, megabytes with 16 KiB pieces (O(pieces) per
    # piece); here it is the bitfield alone (pieces / 8 bytes).
    """
CREATE TABLE torrent_progress (
    id TEXT PRIMARY KEY,
    have BLOB NOT NULL,
    downloaded INTEGER NOT NULL,
    uploaded INTEGER NOT NULL
)
""",
]

# A record with the newer progress of its torrent, if any (`save` folds the progress into the record).
_SELECT = (
    "SELECT r.id, r.name, r.save_path, r.torrent, r.magnet, coalesce(p.have, r.have), r.clean, r.file_state, "
    "r.selected, coalesce(p.uploaded, r.uploaded), coalesce(p.downloaded, r.downloaded), r.state, r.added_at "
    "FROM torrent_resume r LEFT JOIN torrent_progress p ON p.id = r.id"
)


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


_TO_DIGITS = bytes.maketrans(b"\x00\x01", b"01")
_FROM_DIGITS = bytes.maketrans(b"01", b"\x00\x01")


def pack_bits(bits: bytearray | bytes | list[bool]) -> bytes:
    """Pieces (one 0/1 byte each) as a BitTorrent-style bitfield, high bit first; C speed for big torrents."""
    raw = bytes(bits) if not isinstance(bits, list) else bytes(bool(b) for b in bits)
    if not raw:
        return b""
    size = (len(raw) + 7) // 8
    digits = raw.translate(_TO_DIGITS) + b"0" * (size * 8 - len(raw))
    return int(digits, 2).to_bytes(size, "big")


def unpack_bits(data: bytes, count: int) -> bytearray:
    """The first `count` bits of a bitfield as one 0/1 byte per piece."""
    data = data[: (count + 7) // 8]
    if not data:
        return bytearray(count)
    digits = bin(int.from_bytes(data, "big"))[2:].zfill(len(data) * 8).encode()
    out = bytearray(digits[:count].translate(_FROM_DIGITS))
    out.extend(bytes(count - len(out)))
    return out


class ResumeStore:
    """The `torrent` schema of a node's state database (its table `torrent_resume`); every method raises
    `StateError` when the file or its disk fails (full, read-only, locked, corrupt)."""

    def __init__(self, state: State) -> None:
        self.db = state.schema("torrent", MIGRATIONS)

    def save(self, rec: ResumeRecord) -> None:
        """The whole record; it holds the latest pieces and totals, so the progress row goes in the same
        transaction."""
        with self.db.transaction():
            self._save(rec)
            self.db.execute("DELETE FROM torrent_progress WHERE id = ?", (rec.id,))

    def _save(self, rec: ResumeRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO torrent_resume VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
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

    def update_have(self, torrent_id: str, have: bytes, downloaded: int, uploaded: int) -> None:
        """Record newly verified pieces: cheap enough to run after every piece (WAL, no fsync per commit; one small
        row, not the record with its metainfo). Only for a torrent that has a record."""
        self.db.execute(
            "INSERT INTO torrent_progress SELECT id, ?, ?, ? FROM torrent_resume WHERE id = ? "
            "ON CONFLICT(id) DO UPDATE SET have = excluded.have, downloaded = excluded.downloaded, "
            "uploaded = excluded.uploaded",
            (have, downloaded, uploaded, torrent_id),
        )

    def load(self, torrent_id: str) -> ResumeRecord | None:
        rows = self.db.execute(f"{_SELECT} WHERE r.id = ?", (torrent_id,))
        return self._record(rows[0]) if rows else None

    def all(self) -> list[ResumeRecord]:
        return [self._record(r) for r in self.db.execute(f"{_SELECT} ORDER BY r.added_at")]

    def delete(self, torrent_id: str) -> None:
        with self.db.transaction():
            self.db.execute("DELETE FROM torrent_progress WHERE id = ?", (torrent_id,))
            self.db.execute("DELETE FROM torrent_resume WHERE id = ?", (torrent_id,))

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
