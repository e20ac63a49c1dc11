"""Choker: tit-for-tat slots and the rotating optimistic unchoke."""

from __future__ import annotations

import random

from peerloom.torrent.choker import OPTIMISTIC_EVERY, Choker, PeerView


def views(n: int, interested: bool = True) -> list[PeerView]:
    return [PeerView(f"p{i}", interested, download_rate=i * 10.0, upload_rate=(n - i) * 10.0) for i in range(n)]


def test_everyone_interested_is_unchoked_when_slots_suffice() -> None:
    c = Choker(slots=4)
    assert c.rechoke(views(3), seeding=False) == {"p0", "p1", "p2"}
    assert c.rechoke(views(3, interested=False), seeding=False) == set()


def test_leeching_rewards_the_peers_that_give_most() -> None:
    c = Choker(slots=4, rng=random.Random(3))
    chosen = c.rechoke(views(10), seeding=False)
    assert {"p9", "p8", "p7"} <= chosen and len(chosen) == 4
    assert c.optimistic in chosen and c.optimistic not in {"p9", "p8", "p7"}


def test_seeding_rewards_the_fastest_takers() -> None:
    c = Choker(slots=4, rng=random.Random(3))
    chosen = c.rechoke(views(10), seeding=True)
    assert {"p0", "p1", "p2"} <= chosen


def test_optimistic_slot_rotates() -> None:
    c = Choker(slots=2, rng=random.Random(5))
    seen = set()
    for _ in range(OPTIMISTIC_EVERY * 30):
        c.rechoke(views(12), seeding=False)
        seen.add(c.optimistic)
    assert len(seen) > 3


def test_snubbed_peers_lose_regular_slots_when_leeching() -> None:
    c = Choker(slots=3, rng=random.Random(1))
    peers = views(6)
    peers[5] = PeerView("p5", True, 1000.0, 0.0, snubbed=True)
    chosen = c.rechoke(peers, seeding=False)
    assert {"p4", "p3"} <= chosen
