"""The mempool's policy, sans-I/O: a standard spend is accepted with its fee; dust, a fee under the minimum
relay fee, a non-final transaction and an immature coinbase are refused with Core's reasons; a conflict is
refused unless it pays more in total and per byte, and then replaces the old transaction and its children;
orphans wait (bounded) for their parents; a block removes what it confirmed and what conflicted with it."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from peerloom.apps.btc.block import Block, BlockHeader
from peerloom.apps.btc.coins import Coin
from peerloom.apps.btc.mempool import MAX_ORPHANS, Mempool, MempoolReject
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut
from peerloom.apps.btc.validation import ScriptJob

P2WSH_TRUE = b"\x00\x20" + bytes(32)
HEIGHT, MTP, NOW = 300, 1_700_000_000, 1_700_000_500


class Coins:
    def __init__(self, coins: dict[OutPoint, Coin]) -> None:
        self.coins = coins

    def fetch_coins(self, outpoints: Iterable[OutPoint]) -> dict[OutPoint, Coin]:
        return {op: self.coins[op] for op in outpoints if op in self.coins}


def verified(job: ScriptJob) -> None:
    assert job.flags == {"STANDARD"}


def tx(inputs: list[OutPoint], values: list[int], locktime: int = 0) -> Transaction:
    return Transaction(2, tuple(TxIn(op, b"", 0xFFFFFFFD) for op in inputs),
                       tuple(TxOut(v, P2WSH_TRUE) for v in values), locktime)


COIN_A, COIN_B, YOUNG = OutPoint(b"\x0a" * 32, 0), OutPoint(b"\x0b" * 32, 0), OutPoint(b"\x0c" * 32, 0)
SOURCE = Coins({COIN_A: Coin(100_000, P2WSH_TRUE, 10, False), COIN_B: Coin(100_000, P2WSH_TRUE, 10, False),
                YOUNG: Coin(5_000_000_000, P2WSH_TRUE, HEIGHT - 50, True)})


def accept(pool: Mempool, t: Transaction) -> list[Transaction]:
    return pool.accept(t, SOURCE, HEIGHT, MTP, NOW, verified)


def test_standard_spends_are_accepted_and_bad_ones_refused_with_cores_reasons() -> None:
    pool = Mempool()
    good = tx([COIN_A], [99_000])
    assert accept(pool, good) == [good] and pool.entries[good.txid].fee == 1000
    assert pool.get(good.wtxid) == good
    cases = {
        "dust": tx([COIN_B], [99_000, 100]),
        "min relay fee not met": tx([COIN_B], [99_990]),
        "non-final": tx([COIN_B], [99_000], locktime=HEIGHT + 5),
        "bad-txns-premature-spend-of-coinbase": tx([YOUNG], [4_999_000_000]),
        "bad-txns-in-belowout": tx([COIN_B], [100_001]),
        "txn-already-in-mempool": good,
    }
    for reason, bad in cases.items():
        with pytest.raises(MempoolReject) as err:
            accept(pool, bad)
        assert err.value.reason == reason
    assert list(pool.entries) == [good.txid]


def test_a_conflict_needs_a_higher_fee_and_then_replaces_the_old_one_and_its_children() -> None:
    pool = Mempool()
    first = tx([COIN_A], [99_000])
    child = tx([OutPoint(first.txid, 0)], [98_000])
    accept(pool, first)
    accept(pool, child)
    with pytest.raises(MempoolReject, match="insufficient fee"):
        accept(pool, tx([COIN_A], [98_990]))  # more than the 1,000 but less than 1,000 + its own relay fee
    better = tx([COIN_A], [97_000])
    assert accept(pool, better) == [better]
    assert set(pool.entries) == {better.txid}


def test_orphans_wait_for_their_parent_and_are_bounded() -> None:
    pool = Mempool()
    parent = tx([COIN_A], [99_000])
    orphan = tx([OutPoint(parent.txid, 0)], [98_000])
    assert accept(pool, orphan) == [] and orphan.txid in pool.orphans
    assert accept(pool, parent) == [parent, orphan]
    assert not pool.orphans and set(pool.entries) == {parent.txid, orphan.txid}
    for i in range(MAX_ORPHANS + 20):
        accept(pool, tx([OutPoint(bytes([i % 256, i // 256]) * 16, 0)], [1000]))
    assert len(pool.orphans) == MAX_ORPHANS


def test_a_block_removes_what_it_confirms_and_what_conflicts_with_it() -> None:
    pool = Mempool()
    a, b = tx([COIN_A], [99_000]), tx([COIN_B], [99_000])
    child = tx([OutPoint(a.txid, 0)], [98_000])
    for t in (a, b, child):
        accept(pool, t)
    rival = tx([COIN_B], [90_000])  # mined instead of b
    block = Block(BlockHeader(4, bytes(32), bytes(32), 0, 0, 0), (a, rival))
    pool.block_connected(block)
    assert set(pool.entries) == {child.txid}
