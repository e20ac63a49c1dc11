"""One owner of HOME/state.sqlite: a node running its torrents, its DHT and a daemon holds the file open once, and
holds it no more after it stops."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from support.swarm import make_single, node

from peerloom.api.service import Daemon


def open_files(path: Path) -> list[str]:
    """The file descriptors of this process open on `path` or its WAL and shared-memory files."""
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed since it was listed (the listing's own descriptor, for one)
            continue
        if target.startswith(str(path)):
            fds.append(target)
    return sorted(fds)


async def test_a_node_its_dht_and_its_daemon_share_one_connection_closed_at_stop(tmp_path: Path) -> None:
    make_single(tmp_path / "src" / "shared", size=100_000)
    state = tmp_path / "home-a" / "state.sqlite"
    async with node(tmp_path, "a", dht=True) as a:
        daemon = Daemon(a, tmp_path / "downloads", [tmp_path / "src"])
        await daemon.start()
        try:
            assert a.dht is not None and a.dht.node_id is not None
            torrent = await daemon.share(str(tmp_path / "src" / "shared"))
            # the file once, with the WAL and its index: one connection for the resume, DHT and daemon tables
            assert open_files(state) == [str(state), f"{state}-shm", f"{state}-wal"]
        finally:
            await daemon.stop()
        assert len(open_files(state)) == 3  # the daemon leaves the node's state open for the node
    assert open_files(state) == []
    db = sqlite3.connect(state)
    try:  # everything reached the one file
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"torrent_resume", "daemon_torrents", "dht_state"} <= names
        assert db.execute("SELECT id FROM torrent_resume").fetchall() == [(torrent.id,)]
    finally:
        db.close()
