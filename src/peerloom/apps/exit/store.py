"""What the exit keeps in the state database (schema "exit"): byte accounting per peer on both sides, and the
policy set through the daemon's API (so a daemon that restarts is the same exit).

Each node counts, per peer and role, the payload bytes of exit connections: `served` on the exit (connections a
peer made through us), `used` on the client (connections we made through that peer). `to_destination` counts what
the client sent towards the destination, `from_destination` what came back, with the same meaning on both sides, so
the two nodes' figures for one connection match. Counts add up in memory as bytes move and are written in one
transaction by `flush` (after each connection and when the service stops), on the event loop's thread like the
counting itself: one small transaction, and no counter changes under a reader in another thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from peerloom.state import Schema, State

SERVED, USED = "served", "used"
MIGRATIONS = [
    "CREATE TABLE exit_traffic (peer TEXT NOT NULL, role TEXT NOT NULL, to_destination INTEGER NOT NULL, "
    "from_destination INTEGER NOT NULL, connections INTEGER NOT NULL, PRIMARY KEY (peer, role));"
    "CREATE TABLE exit_policy (id INTEGER PRIMARY KEY CHECK (id = 1), policy TEXT NOT NULL)",
]


@dataclass
class Traffic:
    to_destination: int = 0
    from_destination: int = 0
    connections: int = 0

    def add(self, other: Traffic) -> None:
        self.to_destination += other.to_destination
        self.from_destination += other.from_destination
        self.connections += other.connections

    def as_json(self) -> dict[str, int]:
        return {"to_destination": self.to_destination, "from_destination": self.from_destination,
                "connections": self.connections}


class ExitStore:
    """Per (peer, role) traffic: what is saved plus what has moved since the last `flush`; the saved policy."""

    def __init__(self, state: State) -> None:
        self.db: Schema = state.schema("exit", MIGRATIONS)
        self._pending: dict[tuple[str, str], Traffic] = {}

    def traffic(self, peer: str, role: str) -> Traffic:
        """The pending counter of `peer` in `role`, which the pumps add to as bytes move."""
        return self._pending.setdefault((peer, role), Traffic())

    def flush(self) -> None:
        """Add the pending counts to the saved ones, in one transaction, and take them off the pending counters
        (which live pumps keep adding to)."""
        rows = [(peer, role, t.to_destination, t.from_destination, t.connections)
                for (peer, role), t in self._pending.items()
                if t.to_destination or t.from_destination or t.connections]
        if not rows:
            return
        with self.db.transaction():
            self.db.executemany(
                "INSERT INTO exit_traffic VALUES (?, ?, ?, ?, ?) ON CONFLICT (peer, role) DO UPDATE SET "
                "to_destination = to_destination + excluded.to_destination, "
                "from_destination = from_destination + excluded.from_destination, "
                "connections = connections + excluded.connections", rows)
        for peer, role, up, down, count in rows:
            t = self._pending[(peer, role)]
            t.to_destination -= up
            t.from_destination -= down
            t.connections -= count

    def totals(self) -> dict[str, dict[str, Traffic]]:
        """role -> peer -> traffic, saved and pending together."""
        out: dict[str, dict[str, Traffic]] = {SERVED: {}, USED: {}}
        for peer, role, up, down, count in self.db.execute(
                "SELECT peer, role, to_destination, from_destination, connections FROM exit_traffic"):
            out.setdefault(role, {})[peer] = Traffic(up, down, count)
        for (peer, role), t in list(self._pending.items()):
            out.setdefault(role, {}).setdefault(peer, Traffic()).add(t)
        return out

    def saved_policy(self) -> dict[str, Any] | None:
        """The policy last saved (`ExitPolicy.as_json()`'s shape), or None."""
        rows = self.db.execute("SELECT policy FROM exit_policy WHERE id = 1")
        return json.loads(rows[0][0]) if rows else None

    def save_policy(self, policy: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO exit_policy VALUES (1, ?)", (json.dumps(policy),))
