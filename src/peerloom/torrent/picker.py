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


class _Pool:
    """A set of piece indices with O(1) add, discard and uniformly random choice."""

    __slots__ = ("items", "pos")

    def __init__(self) -> None:
        self.items: list[int] = []
        self.pos: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, index: int) -> None:
        if index not in self.pos:
            self.pos[index] = len(self.items)
            self.items.append(index)

    def discard(self, index: int) -> None:
        at = self.pos.pop(index, None)
        if at is None:
            return
        last = self.items.pop()
        if last != index:
            self.items[at] = last
            self.pos[last] = at


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
        self._have_count = sum(self.have)
        self._missing = self._count_missing()  # wanted pieces we do not have: `complete` is asked once per piece
        # pieces that may be started (wanted, missing, not started, not being verified), grouped by availability,
        # so rarest-first costs O(1) per new piece instead of a scan of every piece
        self._todo = bytearray(self.num_pieces)
        self._pools: dict[int, _Pool] = {}
        for i in range(self.num_pieces):
            self._refresh(i)

    def _refresh(self, index: int) -> None:
        """Bring piece `index`'s place in the to-do pools up to date after its state changed."""
        todo = bool(
            self.wanted[index] and not self.have[index] and index not in self.partial and index not in self._verifying
        )
        if todo == bool(self._todo[index]):
            return
        self._todo[index] = todo
        a = self.availability[index]
        if todo:
            self._pools.setdefault(a, _Pool()).add(index)
        else:
            self._leave_pool(a, index)

    def _leave_pool(self, a: int, index: int) -> None:
        pool = self._pools[a]
        pool.discard(index)
        if not pool:
            del self._pools[a]

    def _change_availability(self, index: int, delta: int) -> None:
        a = self.availability[index]
        self.availability[index] = a + delta
        if self._todo[index]:
            self._leave_pool(a, index)
            self._pools.setdefault(a + delta, _Pool()).add(index)

    # -- what peers have -------------------------------------------------------------------
    def add_peer_pieces(self, bits: Sequence[bool] | bytearray) -> None:
        for i, b in enumerate(bits):
            if b:
                self._change_availability(i, 1)

    def remove_peer_pieces(self, bits: Sequence[bool] | bytearray) -> None:
        for i, b in enumerate(bits):
            if b:
                self._change_availability(i, -1)

    def peer_has(self, index: int) -> None:
        self._change_availability(index, 1)

    # -- state -----------------------------------------------------------------------------
    def missing(self) -> int:
        """Wanted pieces we do not have yet."""
        return self._missing

    def _count_missing(self) -> int:
        return sum(1 for h, w in zip(self.have, self.wanted, strict=True) if w and not h)

    @property
    def complete(self) -> bool:
        return self._missing == 0

    def interesting(self, bits: Sequence[bool] | bytearray, is_seed: bool = False) -> bool:
        """Whether a peer with these pieces has something we want."""
        have, wanted = self.have, self.wanted
        if is_seed:
            return any(w and not h for h, w in zip(have, wanted, strict=True))
        return any(bits[i] and wanted[i] and not have[i] for i in range(self.num_pieces))

    def set_wanted(self, wanted: Sequence[bool]) -> None:
        self.wanted = bytearray(bool(w) for w in wanted)
        self._missing = self._count_missing()
        for i in range(self.num_pieces):
            self._refresh(i)

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

    def claim_pieces(self, bits: Sequence[bool] | bytearray, count: int) -> list[int]:
        """Up to `count` consecutive pieces, none of them started, for a source that fetches whole pieces itself (a
        web seed, BEP 19) and has pieces `bits`: the lowest such piece and those after it, since an HTTP server
        serves runs of a file best and peers, which start pieces at random, rarely want the same ones. They are out
        of the picking, as pieces being verified are, until `piece_passed`, or `piece_failed` (which also gives back
        a claimed piece that was not fetched)."""
        todo = self._todo
        first = todo.find(1)
        while first >= 0 and not bits[first]:
            first = todo.find(1, first + 1)
        if first < 0:
            return []
        run = [first]
        while len(run) < count and run[-1] + 1 < self.num_pieces and todo[run[-1] + 1] and bits[run[-1] + 1]:
            run.append(run[-1] + 1)
        for index in run:
            self._verifying.add(index)
            self._refresh(index)
        return run

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
        self._refresh(index)
        return part

    def _new_piece(self, bits: Sequence[bool] | bytearray, is_seed: bool) -> int | None:
        """The next piece to start: the lowest (sequential), a random one (the first few), else a random one
        among the rarest the peer has."""
        todo = self._todo
        if self.sequential:
            i = todo.find(1)
            while i >= 0 and not (is_seed or bits[i]):
                i = todo.find(1, i + 1)
            return i if i >= 0 else None
        rng = self.rng
        if self._have_count < RANDOM_FIRST:
            candidates = [i for pool in self._pools.values() for i in pool.items if is_seed or bits[i]]
            return rng.choice(candidates) if candidates else None
        for a in sorted(self._pools):
            items = self._pools[a].items
            if is_seed:
                return items[rng.randrange(len(items))]
            for _ in range(4):  # a peer usually has most pieces: a few random probes nearly always hit
                i = items[rng.randrange(len(items))]
                if bits[i]:
                    return i
            held = [i for i in items if bits[i]]
            if held:
                return rng.choice(held)
        return None

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
        if self._todo.find(1) >= 0:
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
        who = part.requesters.pop(b, None)
        part.state[b] = 2
        part.received += 1
        if who is None:
            return []
        if peer in who:
            who.remove(peer)  # the list is no longer the picker's: hand it over instead of building another
        return who

    def piece_complete(self, index: int) -> bool:
        part = self.partial.get(index)
        return part is not None and part.received == part.blocks

    def start_verifying(self, index: int) -> None:
        """All blocks are in; the piece is out for hashing and must not be picked meanwhile."""
        self.partial.pop(index, None)
        self._verifying.add(index)
        self._refresh(index)

    def piece_passed(self, index: int) -> None:
        self._verifying.discard(index)
        self.mark_have(index)

    def piece_failed(self, index: int) -> None:
        """Hash check failed (or a claimed piece was not fetched): the whole piece is fetched again."""
        self._verifying.discard(index)
        self.partial.pop(index, None)
        self._refresh(index)

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
                self._refresh(index)

    def mark_have(self, index: int) -> None:
        if not self.have[index]:
            self.have[index] = 1
            self._have_count += 1
            if self.wanted[index]:
                self._missing -= 1
        self.partial.pop(index, None)
        self._refresh(index)
