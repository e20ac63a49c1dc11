"""A headers-first chain of block headers in memory, sans-I/O: each header is connected to a known parent
after the checks Core's `CheckBlockHeader` and `ContextualCheckBlockHeader` make on a header alone — proof of
work against its bits, bits equal to the network's next required work (`GetNextWorkRequired`), time above
the median of the previous 11 blocks and at most 2 hours ahead of `now`, BIP 94's timewarp guard on testnet4
— and the tip is the header with the most cumulative work (the first seen on a tie)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from .block import BlockHeader, bits_to_target, target_to_bits, work_of
from .params import TARGET_SPACING, TARGET_TIMESPAN, NetworkParams
from .serialize import BtcError

MEDIAN_TIME_SPAN = 11
MAX_FUTURE_BLOCK_TIME = 2 * 60 * 60
MAX_TIMEWARP = 600  # BIP 94


class HeaderError(BtcError):
    """A header that cannot join the chain; `reason` is Core's reject code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, eq=False)
class HeaderEntry:
    """A connected header, its height, the cumulative work up to it, and its parent entry.

    `normal_bits` is the bits of the nearest block at or before it that was not mined under testnet's
    min-difficulty exception (or that starts a period): what Core finds by walking back in
    `GetNextWorkRequired`, kept here so the walk is not repeated for every header."""

    header: BlockHeader
    height: int
    chain_work: int
    prev: HeaderEntry | None
    normal_bits: int

    @property
    def hash(self) -> bytes:
        return self.header.hash


def retarget(last_bits: int, actual_timespan: int, pow_limit: int) -> int:
    """The bits after a 2016-block period that took `actual_timespan` seconds: the target scaled by
    timespan / two weeks, the timespan clamped to [1/4, 4] x two weeks, and no easier than `pow_limit`
    (Core's `CalculateNextWorkRequired`)."""
    timespan = min(max(actual_timespan, TARGET_TIMESPAN // 4), TARGET_TIMESPAN * 4)
    target = bits_to_target(last_bits)
    if target is None:
        raise ValueError(f"invalid bits {last_bits:#x}")
    return target_to_bits(min(target * timespan // TARGET_TIMESPAN, pow_limit))


class HeaderChain:
    """Every valid header seen, indexed by hash, with the most-work chain as a list by height."""

    def __init__(self, params: NetworkParams) -> None:
        self.params = params
        genesis = params.genesis.header
        root = HeaderEntry(genesis, 0, work_of(bits_to_target(genesis.bits) or 0), None, genesis.bits)
        self._index: dict[bytes, HeaderEntry] = {root.hash: root}
        self._active: list[HeaderEntry] = [root]
        self._pow_limit_bits = target_to_bits(params.pow_limit)

    @property
    def tip(self) -> HeaderEntry:
        return self._active[-1]

    @property
    def height(self) -> int:
        return self.tip.height

    def __len__(self) -> int:
        return len(self._index)

    def get(self, block_hash: bytes) -> HeaderEntry | None:
        return self._index.get(block_hash)

    def at_height(self, height: int) -> HeaderEntry | None:
        """The active chain's header at `height`."""
        return self._active[height] if 0 <= height < len(self._active) else None

    def ancestor(self, entry: HeaderEntry, height: int) -> HeaderEntry:
        """`entry`'s ancestor at `height` (<= entry.height): on the active chain by index, else by walking."""
        if not 0 <= height <= entry.height:
            raise ValueError("height out of range")
        walk: HeaderEntry | None = entry
        while walk is not None and walk.height > height:
            if self.at_height(walk.height) is walk:
                return self._active[height]
            walk = walk.prev
        assert walk is not None
        return walk

    def median_time_past(self, entry: HeaderEntry) -> int:
        """The median time of `entry` and up to 10 ancestors (Core's `GetMedianTimePast`)."""
        times = []
        walk: HeaderEntry | None = entry
        while walk is not None and len(times) < MEDIAN_TIME_SPAN:
            times.append(walk.header.time)
            walk = walk.prev
        times.sort()
        return times[len(times) // 2]

    def next_work_required(self, last: HeaderEntry, header: BlockHeader) -> int:
        """The bits a header on top of `last` must carry (Core's `GetNextWorkRequired`)."""
        p = self.params
        if (last.height + 1) % p.interval != 0:
            if not p.allow_min_difficulty_blocks:
                return last.header.bits
            if header.time > last.header.time + 2 * TARGET_SPACING:
                return self._pow_limit_bits  # testnet: a block 20 minutes late may be mined at minimum difficulty
            return last.normal_bits  # else the bits of the last block not mined under that exception
        if p.no_retargeting:
            return last.header.bits
        first = self.ancestor(last, last.height - (p.interval - 1))
        # BIP 94: scale the period's first block's target, which the min-difficulty exception cannot touch.
        base_bits = first.header.bits if p.enforce_bip94 else last.header.bits
        return retarget(base_bits, last.header.time - first.header.time, p.pow_limit)

    def connect(self, header: BlockHeader, now: int) -> HeaderEntry:
        """Add `header` (whose parent must be known) and return its entry; a header already known is returned
        as it is. Raises `HeaderError` with Core's reason for a header that breaks a rule."""
        known = self._index.get(header.hash)
        if known is not None:
            return known
        prev = self._index.get(header.prev_hash)
        if prev is None:
            raise HeaderError("prev-blk-not-found", header.hash_hex)
        if not header.check_proof_of_work(self.params.pow_limit):
            raise HeaderError("high-hash", "proof of work failed")
        expected = self.next_work_required(prev, header)
        if header.bits != expected:
            raise HeaderError("bad-diffbits", f"bits {header.bits:#x}, expected {expected:#x}")
        if header.time <= self.median_time_past(prev):
            raise HeaderError("time-too-old", "block's timestamp is too early")
        height = prev.height + 1
        timewarp = self.params.enforce_bip94 and height % self.params.interval == 0
        if timewarp and header.time < prev.header.time - MAX_TIMEWARP:
            raise HeaderError("time-timewarp-attack", "too early on a difficulty adjustment block")
        if header.time > now + MAX_FUTURE_BLOCK_TIME:
            raise HeaderError("time-too-new", "block timestamp too far in the future")
        target = bits_to_target(header.bits) or 0
        normal = height % self.params.interval == 0 or header.bits != self._pow_limit_bits
        normal_bits = header.bits if normal else prev.normal_bits
        entry = HeaderEntry(header, height, prev.chain_work + work_of(target), prev, normal_bits)
        self._index[entry.hash] = entry
        if entry.chain_work > self.tip.chain_work:
            self._activate(entry)
        return entry

    def connect_headers(self, headers: Sequence[BlockHeader], now: int) -> HeaderEntry | None:
        """Connect a `headers` message's list, which must be a continuous sequence; the last entry, if any."""
        for before, after in itertools.pairwise(headers):
            if after.prev_hash != before.hash:
                raise HeaderError("bad-headers", "non-continuous headers sequence")
        last = None
        for header in headers:
            last = self.connect(header, now)
        return last

    def locator(self, entry: HeaderEntry | None = None) -> list[bytes]:
        """Block hashes from `entry` (default: the tip) back to genesis, dense for the last 10 and then
        exponentially sparser, for `getheaders` (Core's `LocatorEntries`)."""
        walk = entry or self.tip
        hashes = []
        step = 1
        while True:
            hashes.append(walk.hash)
            if walk.height == 0:
                return hashes
            next_height = max(walk.height - step, 0)
            walk = self.ancestor(walk, next_height)
            if len(hashes) > 10:
                step *= 2

    def headers_after(self, locator: Sequence[bytes], hash_stop: bytes, limit: int) -> list[BlockHeader]:
        """The answer to `getheaders`: active-chain headers after the first locator hash on the active chain
        (genesis if none is), up to `limit` of them or through `hash_stop` (Core's `FindForkInGlobalIndex`)."""
        start = self._active[0]
        for block_hash in locator:
            entry = self._index.get(block_hash)
            if entry is not None and self.at_height(entry.height) is entry:
                start = entry
                break
        headers = []
        for entry in self._active[start.height + 1 : start.height + 1 + limit]:
            headers.append(entry.header)
            if entry.hash == hash_stop:
                break
        return headers

    def _activate(self, entry: HeaderEntry) -> None:
        """Make `entry` the tip: cut the active list at the fork point and append the new branch."""
        branch = []
        walk: HeaderEntry | None = entry
        while walk is not None and self.at_height(walk.height) is not walk:
            branch.append(walk)
            walk = walk.prev
        fork_height = walk.height if walk is not None else -1
        del self._active[fork_height + 1 :]
        self._active.extend(reversed(branch))
