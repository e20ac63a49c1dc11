"""The DHT's saved state: a node id made once and kept, and routing-table snapshots replaced whole per family."""

from __future__ import annotations

from pathlib import Path

from peerloom.dht.persist import MAX_SAVED, DhtStore
from peerloom.state import State

A, B, C = b"a" * 20, b"b" * 20, b"c" * 20


def test_the_node_id_is_made_once_and_kept(tmp_path: Path) -> None:
    state = State(tmp_path / "home" / "state.sqlite")
    first = DhtStore(state).node_id()
    assert len(first) == 20 and DhtStore(state).node_id() == first
    state.close()
    state = State(tmp_path / "home" / "state.sqlite")
    assert DhtStore(state).node_id() == first
    state.close()


def test_snapshots_replace_the_family_rows_in_order(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite")
    store = DhtStore(state)
    assert store.load_nodes(4) == []
    store.save_nodes(4, [(B, "10.0.0.2", 2), (A, "10.0.0.1", 1)])
    store.save_nodes(6, [(C, "2001:db8::1", 3)])
    assert store.load_nodes(4) == [(B, "10.0.0.2", 2), (A, "10.0.0.1", 1)]  # good nodes were saved first
    store.save_nodes(4, [(C, "10.0.0.3", 3)])
    assert store.load_nodes(4) == [(C, "10.0.0.3", 3)]
    assert store.load_nodes(6) == [(C, "2001:db8::1", 3)]
    written = store.save_nodes(4, [(i.to_bytes(20, "big"), "10.0.0.1", 1 + i % 60000) for i in range(MAX_SAVED + 5)])
    assert written == MAX_SAVED == len(store.load_nodes(4))
    state.close()
