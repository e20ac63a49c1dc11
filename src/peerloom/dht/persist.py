"""The DHT's state between runs, in the node's SQLite database: its node id and its routing table's nodes.

A node that comes back with the same id and the nodes it knew rejoins the DHT through them, without a bootstrap
router (BEP 5 recommends keeping the table across restarts). Each save replaces the family's rows in one
transaction, so a crash leaves the previous snapshot whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from peerloom.dht.krpc import NodeInfo
from peerloom.state import Migration, State

MIGRATIONS: list[Migration] = [
    # 1: the tables as peerloom made them before the state file had schemas (homes made then are adopted as they are)
    """
CREATE TABLE IF NOT EXISTS dht_state (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS dht_nodes (family INTEGER NOT NULL, node_id BLOB NOT NULL, ip TEXT NOT NULL,
    port INTEGER NOT NULL, PRIMARY KEY (family, node_id))
""",
]
MAX_SAVED = 2000  # more than any routing table holds (160 buckets of 8 are never all filled)


class DhtStore:
    """The `dht` schema of the node's state database (`dht_state`, `dht_nodes`); safe to call from a worker thread.
    Every method raises `StateError` when the file or its disk fails (full, read-only, locked, corrupt)."""

    def __init__(self, state: State) -> None:
        self.db = state.schema("dht", MIGRATIONS)

    def node_id(self) -> bytes:
        """This node's DHT id: made at random on first use, then kept."""
        with self.db.transaction():  # read and made under one lock: two callers never make two ids
            rows = self.db.execute("SELECT value FROM dht_state WHERE key = 'node_id'")
            if rows and len(rows[0][0]) == 20:
                return bytes(rows[0][0])
            node_id = os.urandom(20)
            self.db.execute("INSERT OR REPLACE INTO dht_state VALUES ('node_id', ?)", (node_id,))
            return node_id

    def load_nodes(self, family: int) -> list[NodeInfo]:
        """The nodes saved for an address family (4 or 6), in the order they were saved (good ones first)."""
        rows = self.db.execute(
            "SELECT node_id, ip, port FROM dht_nodes WHERE family = ? ORDER BY rowid LIMIT ?", (family, MAX_SAVED)
        )
        return [(bytes(node_id), ip, port) for node_id, ip, port in rows if len(node_id) == 20]

    def save_nodes(self, family: int, nodes: Iterable[NodeInfo]) -> int:
        """Replace the family's saved nodes; returns how many were written."""
        rows = [(family, node_id, ip, port) for node_id, ip, port in nodes][:MAX_SAVED]
        with self.db.transaction():
            self.db.execute("DELETE FROM dht_nodes WHERE family = ?", (family,))
            self.db.executemany("INSERT OR REPLACE INTO dht_nodes VALUES (?, ?, ?, ?)", rows)
        return len(rows)
