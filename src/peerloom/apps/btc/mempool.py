"""The memory pool of unconfirmed transactions, sans-I/O: Core's `AcceptToMemoryPool` policy in small —
consensus checks, standardness (version, weight, push-only scriptSigs, dust, one OP_RETURN), the minimum
relay fee, conflicts (refused, or replaced by a transaction paying more in total and per byte: Core's full-RBF
rules 3 and 4), coinbase maturity, and script verification with the standard flags — plus a bounded pool of
orphans (transactions whose parents have not arrived).

The caller gives the UTXO view, the tip height and its median time past, and a script verifier, and relays
what was accepted; `block_connected` drops what a block confirmed or conflicted with.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .block import Block, ConsensusError
from .checks import check_transaction
from .coins import Coin, CoinSource, is_unspendable
from .rules import COINBASE_MATURITY
from .serialize import BtcError
from .tx import OutPoint, Transaction, TxOut
from .validation import ScriptJob, is_final

MIN_RELAY_FEE = 1000  # satoshis per 1,000 virtual bytes (Core's DEFAULT_MIN_RELAY_TX_FEE)
DUST_RELAY_FEE = 3000  # DUST_RELAY_TX_FEE
MAX_STANDARD_TX_WEIGHT = 400_000
MAX_STANDARD_SCRIPTSIG_SIZE = 1650
MAX_ORPHANS = 100  # DEFAULT_MAX_ORPHAN_TRANSACTIONS
MAX_ORPHAN_WEIGHT = 400_000
MAX_MEMPOOL_TXS = 50_000


class MempoolReject(BtcError):
    """A transaction the pool does not take; `reason` is Core's reject string."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MempoolEntry:
    tx: Transaction
    fee: int
    vsize: int
    time: int


def vsize(tx: Transaction) -> int:
    return (tx.weight() + 3) // 4


def dust_threshold(out: TxOut) -> int:
    """Core's `GetDustThreshold`: what spending the output would cost at the dust relay fee."""
    if is_unspendable(out.script_pubkey):
        return 0
    size = 8 + 1 + len(out.script_pubkey)
    witness = len(out.script_pubkey) >= 4 and out.script_pubkey[0] in (0, *range(0x51, 0x61)) and (
        out.script_pubkey[1] + 2 == len(out.script_pubkey))
    size += 32 + 4 + 1 + (107 // 4) + 4 if witness else 32 + 4 + 1 + 107 + 4
    return size * DUST_RELAY_FEE // 1000


class Mempool:
    def __init__(self) -> None:
        self.entries: dict[bytes, MempoolEntry] = {}  # by txid
        self.by_wtxid: dict[bytes, bytes] = {}
        self._spent_by: dict[OutPoint, bytes] = {}
        self.orphans: OrderedDict[bytes, Transaction] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, txid: bytes) -> bool:
        return txid in self.entries

    def get(self, txid_or_wtxid: bytes) -> Transaction | None:
        entry = self.entries.get(txid_or_wtxid) or self.entries.get(self.by_wtxid.get(txid_or_wtxid, b""))
        return entry.tx if entry is not None else None

    def accept(self, tx: Transaction, coins: CoinSource, height: int, mtp: int, now: int,
               verify: Callable[[ScriptJob], None]) -> list[Transaction]:
        """Add `tx` (and any orphans it makes whole); the transactions added, in order. Raises `MempoolReject`,
        or returns [] when `tx` was kept as an orphan."""
        added = [self._accept_one(tx, coins, height, mtp, now, verify)] if self._accept_or_orphan(
            tx, coins, height, mtp, now, verify) else []
        progress = bool(added)
        while progress:
            progress = False
            for orphan in list(self.orphans.values()):
                if all(i.prevout.txid not in self.orphans for i in orphan.inputs):
                    try:
                        if self._accept_or_orphan(orphan, coins, height, mtp, now, verify, keep=False):
                            added.append(self._accept_one(orphan, coins, height, mtp, now, verify))
                            self.orphans.pop(orphan.txid, None)
                            progress = True
                    except MempoolReject:
                        self.orphans.pop(orphan.txid, None)
        return added

    def _accept_or_orphan(self, tx: Transaction, coins: CoinSource, height: int, mtp: int, now: int,
                          verify: Callable[[ScriptJob], None], keep: bool = True) -> bool:
        """True when every input is found; else keeps `tx` as an orphan (if `keep`) and returns False."""
        if tx.txid in self.entries:
            raise MempoolReject("txn-already-in-mempool")
        self._check_standard(tx, height, mtp)
        if self._inputs(tx, coins) is None:
            if keep:
                self._add_orphan(tx)
            return False
        return True

    def _accept_one(self, tx: Transaction, coins: CoinSource, height: int, mtp: int, now: int,
                    verify: Callable[[ScriptJob], None]) -> Transaction:
        found = self._inputs(tx, coins)
        assert found is not None
        value_in = 0
        for coin in found:
            if coin.coinbase and height + 1 - coin.height < COINBASE_MATURITY:
                raise MempoolReject("bad-txns-premature-spend-of-coinbase")
            value_in += coin.value
        value_out = sum(o.value for o in tx.outputs)
        if value_in < value_out:
            raise MempoolReject("bad-txns-in-belowout")
        fee, size = value_in - value_out, vsize(tx)
        if fee < MIN_RELAY_FEE * size // 1000:
            raise MempoolReject("min relay fee not met")
        conflicts = {self._spent_by[i.prevout] for i in tx.inputs if i.prevout in self._spent_by}
        if conflicts:
            old_fee = sum(self.entries[c].fee for c in conflicts)
            old_size = sum(self.entries[c].vsize for c in conflicts)
            if fee * old_size <= old_fee * size:
                raise MempoolReject("insufficient fee")  # rule 4 of BIP 125: a higher feerate
            if fee < old_fee + MIN_RELAY_FEE * size // 1000:
                raise MempoolReject("insufficient fee")  # rule 3: pays for its own relay on top
        if len(self.entries) >= MAX_MEMPOOL_TXS and not conflicts:
            raise MempoolReject("mempool full")
        try:
            verify(ScriptJob(tx, tuple(c.output for c in found), frozenset({"STANDARD"})))
        except ConsensusError as exc:
            raise MempoolReject(exc.reason) from None
        for txid in conflicts:
            self._remove_with_descendants(txid)
        self.entries[tx.txid] = MempoolEntry(tx, fee, size, now)
        self.by_wtxid[tx.wtxid] = tx.txid
        for txin in tx.inputs:
            self._spent_by[txin.prevout] = tx.txid
        return tx

    def _inputs(self, tx: Transaction, coins: CoinSource) -> list[Coin] | None:
        """The coins `tx` spends, from the pool's own outputs or the UTXO set; None if any is missing."""
        wanted = [i.prevout for i in tx.inputs]
        stored = coins.fetch_coins([op for op in wanted if op.txid not in self.entries])
        found = []
        for op in wanted:
            parent = self.entries.get(op.txid)
            if parent is not None:
                if op.index >= len(parent.tx.outputs):
                    return None
                out = parent.tx.outputs[op.index]
                found.append(Coin(out.value, out.script_pubkey, 0x7FFFFFFF, False))
            elif op in stored:
                found.append(stored[op])
            else:
                return None
        return found

    def _check_standard(self, tx: Transaction, height: int, mtp: int) -> None:
        try:
            check_transaction(tx)
        except ConsensusError as exc:
            raise MempoolReject(exc.reason) from None
        if tx.is_coinbase():
            raise MempoolReject("coinbase")
        if not 1 <= tx.version <= 3:
            raise MempoolReject("version")
        if tx.weight() > MAX_STANDARD_TX_WEIGHT:
            raise MempoolReject("tx-size")
        if any(len(i.script_sig) > MAX_STANDARD_SCRIPTSIG_SIZE for i in tx.inputs):
            raise MempoolReject("scriptsig-size")
        if sum(1 for o in tx.outputs if o.script_pubkey[:1] == b"\x6a") > 1:
            raise MempoolReject("multi-op-return")
        if any(o.value < dust_threshold(o) for o in tx.outputs if o.script_pubkey[:1] != b"\x6a"):
            raise MempoolReject("dust")
        if not is_final(tx, height + 1, mtp):
            raise MempoolReject("non-final")

    def _add_orphan(self, tx: Transaction) -> None:
        if tx.weight() > MAX_ORPHAN_WEIGHT:
            raise MempoolReject("orphan too large")
        self.orphans[tx.txid] = tx
        while len(self.orphans) > MAX_ORPHANS:
            self.orphans.popitem(last=False)  # Core evicts at random; the oldest is as good a victim here

    def _remove_with_descendants(self, txid: bytes) -> None:
        stack = [txid]
        while stack:
            entry = self.entries.pop(stack.pop(), None)
            if entry is None:
                continue
            self.by_wtxid.pop(entry.tx.wtxid, None)
            for txin in entry.tx.inputs:
                if self._spent_by.get(txin.prevout) == entry.tx.txid:
                    del self._spent_by[txin.prevout]
            for index in range(len(entry.tx.outputs)):
                child = self._spent_by.get(OutPoint(entry.tx.txid, index))
                if child is not None:
                    stack.append(child)

    def block_connected(self, block: Block) -> None:
        """Drop the block's transactions and whatever in the pool spent the same coins."""
        for tx in block.transactions:
            self._remove_with_descendants_keep_children(tx.txid)
            for txin in tx.inputs:
                rival = self._spent_by.get(txin.prevout)
                if rival is not None:
                    self._remove_with_descendants(rival)

    def _remove_with_descendants_keep_children(self, txid: bytes) -> None:
        """Remove a confirmed transaction only: its children stay (their parent is now in the UTXO set)."""
        entry = self.entries.pop(txid, None)
        if entry is None:
            return
        self.by_wtxid.pop(entry.tx.wtxid, None)
        for txin in entry.tx.inputs:
            if self._spent_by.get(txin.prevout) == txid:
                del self._spent_by[txin.prevout]
