"""Which blocks to ask which peer for: rarest-first, random first pieces, sequential, end-game.

Sans-I/O: the swarm tells the picker what peers have and what arrived; the picker answers with
(piece, begin, length) requests. A piece is asked for block by block (16 KiB); it is finished when
every block is in, then verified by the caller, who reports `piece_passed` or `piece_failed`.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

BLOCK = 16384
RANDOM_FIRST = 4  # pieces picked at random before rarest-first, so a new peer soon has something to trade
ENDGAME_DUPLICATES = 2  # at most this many peers asked for one block in end-game


@dataclass(slots=True)
class PartialPiece:
    """A piece being fetched: per block 0 = not asked, 1 = asked, 2 = received."""

    size: int
    state: bytearray
    received: int = 0
    requesters: dict[int, list[Hashable]] = field(default_factory=dict)

    @property
    def blocks(self) -> int:
        return len(self.state)


class PiecePicker:
    """Piece and block selection for one torrent."""

    def __init__(
        self,
        piece_sizes: Sequence[int],
        *,
        have: Sequence[bool] | None = None,
        wanted: Sequence[bool] | None = None,
        sequential: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.num_pieces = len(piece_sizes)
        self.sizes = list(piece_sizes)
        self.have = bytearray(self.num_pieces) if have is None else bytearray(bool(h) for h in have)
        self.wanted = bytearray(b"\x01" * self.num_pieces) if wanted is None else bytearray(bool(w) for w in wanted)
        self.availability = [0] * self.num_pieces
        self.partial: dict[int, PartialPiece] = {}
        self.sequential = sequential
        self.rng = rng or random.Random()
        self._verifying: set[int] = set()

    # -- what peers have -------------------------------------------------------------------
    def add_peer_pieces(self, bits: Sequence[bool] | bytearray) -> None:
        av = self.availability
        for i, b in enumerate(bits):
            if b:
                av[i] += 1

    def remove_peer_pieces(self, bits: Sequence[bool] | bytearray) -> None:
        av = self.availability
        for i, b in enumerate(bits):
            if b:
                av[i] -= 1

    def peer_has(self, index: int) -> None:
        self.availability[index] += 1

    # -- state -----------------------------------------------------------------------------
    def missing(self) -> int:
        """Wanted pieces we do not have yet."""
        return sum(1 for i in range(self.num_pieces) if self.wanted[i] and not self.have[i])

    @property
    def complete(self) -> bool:
        return all(h or not w for h, w in zip(self.have, self.wanted, strict=True))

    def interesting(self, bits: Sequence[bool] | bytearray, is_seed: bool = False) -> bool:
        """Whether a peer with these pieces has something we want."""
        have, wanted = self.have, self.wanted
        if is_seed:
            return any(w and not h for h, w in zip(have, wanted, strict=True))
        return any(bits[i] and wanted[i] and not have[i] for i in range(self.num_pieces))

    def set_wanted(self, wanted: Sequence[bool]) -> None:
        self.wanted = bytearray(bool(w) for w in wanted)

    # -- picking ---------------------------------------------------------------------------
    def pick(self, peer: Hashable, bits: Sequence[bool] | bytearray, count: int, is_seed: bool = False) -> list[
        tuple[int, int, int]
    ]:
        """Up to `count` block requests for a peer with pieces `bits` (all, when `is_seed`)."""
        out: list[tuple[int, int, int]] = []
        # 1. finish pieces already started (fewer partial pieces on disk, sooner verified)
        for index, part in self.partial.items():
            if len(out) >= count:
                return out
            if (is_seed or bits[index]) and part.received + len(part.requesters) < part.blocks:
                self._take_blocks(index, part, peer, count - len(out), out)
        # 2. start new pieces
        while len(out) < count:
            index = self._new_piece(bits, is_seed)
            if index is None:
                break
            part = self._start(index)
            self._take_blocks(index, part, peer, count - len(out), out)
        # 3. end-game: everything is asked for; ask this peer too for blocks others are slow with
        if len(out) < count and not out:
            self._endgame(peer, bits, is_seed, count, out)
        return out

    def _take_blocks(self, index: int, part: PartialPiece, peer: Hashable, n: int, out: list) -> None:
        state = part.state
        start = 0
        for _ in range(n):
            b = state.find(0, start)
            if b < 0:
                return
            state[b] = 1
            part.requesters[b] = [peer]
            begin = b * BLOCK
            out.append((index, begin, min(BLOCK, part.size - begin)))
            start = b + 1

    def _start(self, index: int) -> PartialPiece:
        size = self.sizes[index]
        part = PartialPiece(size, bytearray(-(-size // BLOCK)))
        self.partial[index] = part
        return part

    def _new_piece(self, bits: Sequence[bool] | bytearray, is_seed: bool) -> int | None:
        have, wanted, partial, av = self.have, self.wanted, self.partial, self.availability
        candidates = [
            i
            for i in range(self.num_pieces)
            if wanted[i] and not have[i] and i not in partial and i not in self._verifying and (is_seed or bits[i])
        ]
        if not candidates:
            return None
        if self.sequential:
            return candidates[0]
        if sum(have) < RANDOM_FIRST:
            return self.rng.choice(candidates)
        rarest = min(av[i] for i in candidates)
        return self.rng.choice([i for i in candidates if av[i] == rarest])

    def _endgame(self, peer: Hashable, bits: Sequence[bool] | bytearray, is_seed: bool, count: int, out: list) -> None:
        for index, part in self.partial.items():
            if not (is_seed or bits[index]):
                continue
            for b, who in part.requesters.items():
                if len(out) >= count:
                    return
                if peer not in who and len(who) < ENDGAME_DUPLICATES:
                    who.append(peer)
                    begin = b * BLOCK
                    out.append((index, begin, min(BLOCK, part.size - begin)))

    @property
    def in_endgame(self) -> bool:
        """Every wanted missing piece is started and every block of them is asked for."""
        if self._new_piece(b"", True) is not None:
            return False
        return all(p.received + len(p.requesters) >= p.blocks for p in self.partial.values())

    # -- outcomes --------------------------------------------------------------------------
    def block_received(self, peer: Hashable, index: int, begin: int, length: int) -> list[Hashable] | None:
        """A block arrived. Returns the other peers that were also asked for it (to cancel), or None
        when the block was not expected (not requested, wrong size, already have it)."""
        part = self.partial.get(index)
        if part is None or begin % BLOCK:
            return None
        b = begin // BLOCK
        if b >= part.blocks or length != min(BLOCK, part.size - begin) or part.state[b] == 2:
            return None
        who = part.requesters.pop(b, [])
        part.state[b] = 2
        part.received += 1
        return [p for p in who if p != peer]

    def piece_complete(self, index: int) -> bool:
        part = self.partial.get(index)
        return part is not None and part.received == part.blocks

    def start_verifying(self, index: int) -> None:
        """All blocks are in; the piece is out for hashing and must not be picked meanwhile."""
        self.partial.pop(index, None)
        self._verifying.add(index)

    def piece_passed(self, index: int) -> None:
        self._verifying.discard(index)
        self.partial.pop(index, None)
        self.have[index] = 1

    def piece_failed(self, index: int) -> None:
        """Hash check failed: the whole piece is fetched again."""
        self._verifying.discard(index)
        self.partial.pop(index, None)

    def abort(self, peer: Hashable, index: int, begin: int) -> None:
        """A request to `peer` is given up (choked, rejected, timed out, gone): the block is free again."""
        part = self.partial.get(index)
        if part is None:
            return
        b = begin // BLOCK
        who = part.requesters.get(b)
        if who is None or peer not in who:
            return
        who.remove(peer)
        if not who:
            del part.requesters[b]
            part.state[b] = 0
            if part.received == 0 and not part.requesters:
                del self.partial[index]

    def mark_have(self, index: int) -> None:
        self.have[index] = 1
        self.partial.pop(index, None)
