"""Choking (BEP 3): which interested peers we upload to.

Tit-for-tat: every round (10 s) the peers that gave us the most (while downloading) or took the most
(while seeding, so the fastest spread the data) get the regular upload slots; one more slot is an
optimistic unchoke that rotates every third round, so a newcomer with nothing yet gets a chance.
Snubbed peers (that stopped sending us data) lose regular slots. Sans-I/O: the swarm calls `rechoke`.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

ROUND = 10.0
OPTIMISTIC_EVERY = 3


@dataclass(frozen=True, slots=True)
class PeerView:
    """What the choker needs to know about one peer."""

    key: Hashable
    interested: bool
    download_rate: float  # bytes/s we receive from it
    upload_rate: float  # bytes/s we send to it
    snubbed: bool = False


class Choker:
    def __init__(self, slots: int = 4, rng: random.Random | None = None) -> None:
        self.slots = max(1, slots)
        self.rng = rng or random.Random()
        self.optimistic: Hashable | None = None
        self._round = 0

    def rechoke(self, peers: Sequence[PeerView], seeding: bool) -> set[Hashable]:
        """The keys of the peers to unchoke this round; every other peer is choked."""
        interested = [p for p in peers if p.interested]
        if len(interested) <= self.slots:
            self.optimistic = None
            return {p.key for p in interested}

        def score(p: PeerView) -> float:
            return p.upload_rate if seeding else p.download_rate

        ranked = sorted((p for p in interested if not p.snubbed or seeding), key=score, reverse=True)
        regular = {p.key for p in ranked[: self.slots - 1]}
        keys = {p.key for p in interested}
        if self._round % OPTIMISTIC_EVERY == 0 or self.optimistic not in keys or self.optimistic in regular:
            others = [p.key for p in interested if p.key not in regular]
            self.optimistic = self.rng.choice(others) if others else None
        self._round += 1
        if self.optimistic is not None:
            regular.add(self.optimistic)
        return regular
