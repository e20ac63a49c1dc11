"""The message cache (gossipsub v1.0 "Message Cache"): windows, gossip ids by topic, per-peer ask counts."""

from __future__ import annotations

import pytest
from support.gossip_net import make_identity

from peerloom.apps.pubsub.mcache import MessageCache
from peerloom.apps.pubsub.rpc import Message


def test_windows_gossip_and_history() -> None:
    cache = MessageCache(history=3, gossip=2)
    cache.put(b"a1", Message("a"), b"A1")
    cache.put(b"b1", Message("b"), b"B1")
    cache.shift()
    cache.put(b"a2", Message("a"), b"A2")
    assert cache.gossip_ids("a") == [b"a2", b"a1"] and cache.gossip_ids("b") == [b"b1"]
    cache.shift()
    assert cache.gossip_ids("a") == [b"a2"] and cache.gossip_ids("b") == []
    assert cache.get(b"a1") is not None and len(cache) == 3  # still served, no longer gossiped
    cache.shift()
    assert cache.get(b"a1") is None and b"b1" not in cache and b"a2" in cache and len(cache) == 1
    cache.shift()
    assert len(cache) == 0


def test_a_message_is_cached_once_and_asks_are_counted_per_peer() -> None:
    cache = MessageCache(history=2, gossip=1)
    cache.put(b"x", Message("t"), b"X")
    cache.put(b"x", Message("t"), b"X")
    assert cache.gossip_ids("t") == [b"x"]
    p, q = make_identity(1).peer_id, make_identity(2).peer_id
    assert [cache.ask(b"x", p)[1] for _ in range(3)] == [1, 2, 3]
    entry, count = cache.ask(b"x", q)
    assert count == 1 and entry is not None and entry.encoded == b"X"
    assert cache.ask(b"missing", p) == (None, 0)


def test_gossip_must_fit_the_history() -> None:
    with pytest.raises(ValueError):
        MessageCache(history=2, gossip=3)
