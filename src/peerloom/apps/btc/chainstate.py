"""The chain state: the block index, the UTXO set and undo data in the node's state database (schema "btc"),
raw blocks on disk, and the most-work chain of fully validated blocks.

    chain = ChainState(REGTEST, state.schema("btc", MIGRATIONS), BlockFiles(home / "btc" / "regtest" / "blocks"),
                       checker)
    result = chain.add_block(block, now)      # raises BtcError for a block that cannot be accepted

Synchronous and free of sockets, tasks and clocks (`now` is passed in); a driver calls it from a worker thread.

Atomicity: moving the tip (one block, a run of blocks, or a reorg: disconnect to the fork, connect the new
branch) is validated entirely in memory over an overlay of the UTXO set, scripts included, and then written in
one SQLite transaction with the new tip. A killed process leaves the database at the previous step or the new
one, never between; a block that fails leaves the database exactly as it was, is marked failed (with its
descendants) in memory, and the best remaining branch is tried. Raw blocks are written (fsync'd) before the
transaction that makes them part of the chain commits, so the database never refers to a missing block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from peerloom.state import Migration, Schema

from .block import Block, BlockHeader, ConsensusError, parse_block, parse_header
from .blockfiles import BlockFiles
from .checks import check_block
from .coins import Coin, decode_undo, encode_undo
from .headers import HeaderChain, HeaderEntry
from .params import NetworkParams
from .rules import deployments_for
from .scriptcheck import ScriptChecker
from .serialize import BtcError, hash_hex
from .tx import OutPoint
from .validation import BlockContext, connect_block

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE btc_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE btc_blocks (hash BLOB PRIMARY KEY, height INTEGER NOT NULL, header BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE btc_coins (txid BLOB NOT NULL, vout INTEGER NOT NULL, value INTEGER NOT NULL,
                            script BLOB NOT NULL, height INTEGER NOT NULL, coinbase INTEGER NOT NULL,
                            PRIMARY KEY (txid, vout)) WITHOUT ROWID;
    CREATE TABLE btc_undo (hash BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
    """,
]
MAX_BLOCKS_PER_STEP = 200  # blocks connected per database transaction during a long sync
_LOAD_NOW = 1 << 40  # stored headers were checked against the clock when they arrived


class ChainStateError(BtcError):
    """The stored chain state does not fit this network or is damaged."""


@dataclass
class Activation:
    """What one `add_block` changed: blocks disconnected (tip first) and connected (in order), and blocks found
    invalid on the way (hash, Core's reason)."""

    disconnected: list[Block] = field(default_factory=list)
    connected: list[Block] = field(default_factory=list)
    invalid: list[tuple[bytes, str]] = field(default_factory=list)


class _Overlay:
    """Pending UTXO changes over the database (None: spent), read by `connect_block` as its `CoinSource`."""

    def __init__(self, store: ChainState) -> None:
        self._store = store
        self.changes: dict[OutPoint, Coin | None] = {}

    def fetch_coins(self, outpoints: Iterable[OutPoint]) -> Mapping[OutPoint, Coin]:
        found: dict[OutPoint, Coin] = {}
        missing = []
        for outpoint in outpoints:
            if outpoint in self.changes:
                coin = self.changes[outpoint]
                if coin is not None:
                    found[outpoint] = coin
            else:
                missing.append(outpoint)
        found.update(self._store.fetch_coins(missing))
        return found


class ChainState:
    def __init__(self, params: NetworkParams, schema: Schema, files: BlockFiles, checker: ScriptChecker) -> None:
        self.params = params
        self.rules = deployments_for(params)
        self.headers = HeaderChain(params)
        self.schema = schema
        self._files = files
        self._checker = checker
        self._have_data: set[bytes] = {params.genesis_hash}
        self._failed: set[bytes] = set()
        self._children: dict[bytes, list[HeaderEntry]] = {}
        self._unconnected: set[bytes] = set()  # blocks here, not failed, not on the connected chain
        self._announced: set[bytes] = set()  # the last header of each headers message
        self._seq: dict[bytes, int] = {}
        self.tip: HeaderEntry = self.headers.tip
        self._load()
        self.best_header: HeaderEntry = self.tip  # the most-work header whose branch has no failed block
        for block_hash in self._unconnected:
            self._consider_header(self.headers.get(block_hash))  # type: ignore[arg-type]

    # -- reading -----------------------------------------------------------------------------------------------

    @property
    def height(self) -> int:
        return self.tip.height

    def on_chain(self, entry: HeaderEntry) -> bool:
        """Whether `entry` is on the connected chain."""
        return entry.height <= self.tip.height and self.headers.ancestor(self.tip, entry.height) is entry

    def has_block(self, block_hash: bytes) -> bool:
        return block_hash in self._have_data

    def is_failed(self, block_hash: bytes) -> bool:
        return block_hash in self._failed

    def blocks_to_fetch(self, limit: int) -> list[HeaderEntry]:
        """Up to `limit` blocks of the most-work header chain without a failed block that are not here, lowest
        first."""
        missing: list[HeaderEntry] = []
        walk: HeaderEntry | None = self.best_header
        while walk is not None and walk.hash not in self._have_data:
            missing.append(walk)
            walk = walk.prev
        return missing[::-1][:limit]

    def add_headers(self, headers: Sequence[BlockHeader], now: int) -> HeaderEntry | None:
        """Connect a `headers` message's list (raising `HeaderError` for a bad one); its last entry."""
        last = self.headers.connect_headers(headers, now)
        if last is not None:
            self._announced.add(last.hash)
            self._consider_header(last)
        return last

    def _consider_header(self, entry: HeaderEntry) -> None:
        if entry.chain_work > self.best_header.chain_work and self._usable(entry):
            self.best_header = entry

    def _usable(self, entry: HeaderEntry) -> bool:
        """Whether no block between the connected chain and `entry` (included) has failed."""
        walk: HeaderEntry | None = entry
        while walk is not None and not self.on_chain(walk):
            if walk.hash in self._failed:
                return False
            walk = walk.prev
        return True

    def fetch_coins(self, outpoints: Iterable[OutPoint]) -> dict[OutPoint, Coin]:
        """The unspent coins among `outpoints` in the stored UTXO set."""
        found = {}
        for outpoint in outpoints:
            rows = self.schema.execute(
                "SELECT value, script, height, coinbase FROM btc_coins WHERE txid = ? AND vout = ?",
                (outpoint.txid, outpoint.index))
            if rows:
                value, script, height, coinbase = rows[0]
                found[outpoint] = Coin(value, bytes(script), height, bool(coinbase))
        return found

    def coins(self) -> Iterator[tuple[OutPoint, Coin]]:
        """The whole UTXO set, ordered by outpoint."""
        rows = self.schema.execute("SELECT txid, vout, value, script, height, coinbase FROM btc_coins "
                                    "ORDER BY txid, vout")
        for txid, vout, value, script, height, coinbase in rows:
            yield OutPoint(bytes(txid), vout), Coin(value, bytes(script), height, bool(coinbase))

    def read_block(self, block_hash: bytes) -> Block:
        if block_hash == self.params.genesis_hash:
            return self.params.genesis
        return parse_block(self._files.get(block_hash))

    # -- accepting blocks ----------------------------------------------------------------------------------------

    def add_block(self, block: Block, now: int) -> Activation:
        """Check `block` (header rules, then Core's context-free `CheckBlock`), keep it, and move the tip to the
        most-work valid chain. Raises `BtcError` (`HeaderError`, `ConsensusError`) for a block refused before it
        is kept: nothing is written then. A block that fails when connected is reported in `Activation.invalid`
        (and raised as `ConsensusError` when it is this block)."""
        entry = self.headers.get(block.hash)
        if entry is not None and entry.hash in self._failed:
            raise ConsensusError("duplicate-invalid")
        if entry is not None and entry.hash in self._have_data:
            return Activation()
        check_block(block, self.params.pow_limit)  # before the header joins the index: a mutated block says nothing
        entry = self.headers.connect(block.header, now)
        if entry.prev is not None and entry.prev.hash in self._failed:
            self._failed.add(entry.hash)
            raise ConsensusError("bad-prevblk")
        self._seq.setdefault(entry.hash, len(self._seq))
        self._children.setdefault(entry.header.prev_hash, []).append(entry)
        self._have_data.add(entry.hash)
        self._unconnected.add(entry.hash)
        self._consider_header(entry)
        pending = {entry.hash: block}
        result = self._activate_best(pending)
        if entry.hash not in self._failed and entry.hash in pending:
            self._persist_blocks([(entry, block)])  # kept on a side branch (or waiting for its parent)
        failure = next((reason for h, reason in result.invalid if h == entry.hash), None)
        if failure is not None:
            raise ConsensusError(failure)
        return result

    # -- moving the tip --------------------------------------------------------------------------------------------

    def _best_candidate(self) -> HeaderEntry:
        """The most-work entry whose blocks from the connected chain on are all here and none failed; the tip
        wins ties, then the block seen first."""
        best = self.tip
        for block_hash in self._unconnected:
            entry = self.headers.get(block_hash)
            assert entry is not None
            if entry.chain_work < best.chain_work or not self._reachable(entry):
                continue
            if entry.chain_work > best.chain_work or (
                    best is not self.tip and self._seq.get(entry.hash, 0) < self._seq.get(best.hash, 0)):
                best = entry
        return best

    def _reachable(self, entry: HeaderEntry) -> bool:
        """Whether every block between the connected chain and `entry` is here (and none failed)."""
        walk = entry
        while walk.hash in self._unconnected:
            if walk.prev is None:
                return False
            walk = walk.prev
        return self.on_chain(walk)

    def _activate_best(self, pending: dict[bytes, Block]) -> Activation:
        result = Activation()
        while True:
            best = self._best_candidate()
            if best is self.tip:
                return result
            fork = self._fork_point(self.tip, best)
            branch = []
            walk: HeaderEntry | None = best
            while walk is not None and walk is not fork:
                branch.append(walk)
                walk = walk.prev
            branch.reverse()
            step = branch[:MAX_BLOCKS_PER_STEP]
            failed = self._move_tip(fork, step, pending, result)
            if failed is not None:
                self._mark_failed(failed[0])
                result.invalid.append((failed[0].hash, failed[1]))

    def _fork_point(self, a: HeaderEntry, b: HeaderEntry) -> HeaderEntry:
        if a.height > b.height:
            a = self.headers.ancestor(a, b.height)
        elif b.height > a.height:
            b = self.headers.ancestor(b, a.height)
        while a is not b:
            assert a.prev is not None and b.prev is not None
            a, b = a.prev, b.prev
        return a

    def _move_tip(self, fork: HeaderEntry, step: list[HeaderEntry], pending: dict[bytes, Block],
                  result: Activation) -> tuple[HeaderEntry, str] | None:
        """Disconnect to `fork` and connect `step` in memory, then write it all in one transaction. Returns
        (the failing entry, its reason) instead when a block of `step` is invalid; nothing is written then."""
        overlay = _Overlay(self)
        undo_drop: list[bytes] = []
        disconnected: list[Block] = []
        walk = self.tip
        while walk is not fork:
            block = self.read_block(walk.hash)
            self._disconnect(block, walk, overlay)
            undo_drop.append(walk.hash)
            disconnected.append(block)
            assert walk.prev is not None
            walk = walk.prev
        connected: list[tuple[HeaderEntry, Block, bytes]] = []
        for entry in step:
            block = pending.get(entry.hash) or self.read_block(entry.hash)
            try:
                delta = connect_block(block, self._context(entry), overlay)
                self._checker.check(delta.script_jobs)
            except ConsensusError as exc:
                return entry, exc.reason
            for outpoint, _ in delta.spent:
                overlay.changes[outpoint] = None
            overlay.changes.update(delta.created)
            connected.append((entry, block, encode_undo(delta.spent)))
        self._persist_blocks([(e, b) for e, b, _ in connected if e.hash in pending])
        new_tip = step[-1]
        with self.schema.transaction():
            self._write_coins(overlay.changes)
            self.schema.executemany("DELETE FROM btc_undo WHERE hash = ?", [(h,) for h in undo_drop])
            self.schema.executemany("INSERT OR REPLACE INTO btc_undo VALUES (?, ?)",
                                     [(e.hash, undo) for e, _, undo in connected])
            self.schema.execute("INSERT OR REPLACE INTO btc_meta VALUES ('tip', ?)", (new_tip.hash,))
        self.tip = new_tip
        self._unconnected.update(b.hash for b in disconnected)
        for entry, _, _ in connected:
            pending.pop(entry.hash, None)
            self._unconnected.discard(entry.hash)
        result.disconnected += disconnected
        result.connected += [b for _, b, _ in connected]
        return None

    def _disconnect(self, block: Block, entry: HeaderEntry, overlay: _Overlay) -> None:
        """Core's `DisconnectBlock` into `overlay`: remove the block's outputs, restore the coins it spent."""
        for tx in block.transactions:
            for index in range(len(tx.outputs)):
                overlay.changes[OutPoint(tx.txid, index)] = None
        rows = self.schema.execute("SELECT data FROM btc_undo WHERE hash = ?", (entry.hash,))
        if not rows:
            raise ChainStateError(f"no undo data for block {hash_hex(entry.hash)}")
        for outpoint, coin in decode_undo(bytes(rows[0][0])):
            overlay.changes[outpoint] = coin

    def _context(self, entry: HeaderEntry) -> BlockContext:
        prev = entry.prev
        assert prev is not None

        def mtp_at(height: int) -> int:
            return self.headers.median_time_past(self.headers.ancestor(prev, height))

        return BlockContext(entry.height, entry.hash, self.headers.median_time_past(prev), mtp_at, self.rules)

    def _mark_failed(self, entry: HeaderEntry) -> None:
        stack = [entry]
        while stack:
            node = stack.pop()
            self._failed.add(node.hash)
            self._unconnected.discard(node.hash)
            stack += self._children.get(node.hash, ())
        if not self._usable(self.best_header):
            self.best_header = self.tip
            for block_hash in self._announced | self._unconnected:
                candidate = self.headers.get(block_hash)
                if candidate is not None:
                    self._consider_header(candidate)

    # -- storage ---------------------------------------------------------------------------------------------------

    def _persist_blocks(self, blocks: list[tuple[HeaderEntry, Block]]) -> None:
        for entry, block in blocks:
            self._files.put(entry.hash, block.serialize())
        self.schema.executemany("INSERT OR IGNORE INTO btc_blocks VALUES (?, ?, ?)",
                                 [(e.hash, e.height, e.header.serialize()) for e, _ in blocks])

    def _write_coins(self, changes: Mapping[OutPoint, Coin | None]) -> None:
        self.schema.executemany("DELETE FROM btc_coins WHERE txid = ? AND vout = ?",
                                 [(op.txid, op.index) for op, coin in changes.items() if coin is None])
        self.schema.executemany(
            "INSERT OR REPLACE INTO btc_coins VALUES (?, ?, ?, ?, ?, ?)",
            [(op.txid, op.index, c.value, c.script_pubkey, c.height, int(c.coinbase))
             for op, c in changes.items() if c is not None])

    def _load(self) -> None:
        rows = self.schema.execute("SELECT value FROM btc_meta WHERE key = 'network'")
        if not rows:
            self.schema.execute("INSERT INTO btc_meta VALUES ('network', ?)", (self.params.name.encode(),))
        elif bytes(rows[0][0]).decode() != self.params.name:
            raise ChainStateError(f"this home's chain state is for {bytes(rows[0][0]).decode()}, "
                                  f"not {self.params.name}")
        for block_hash, _, header_raw in self.schema.execute("SELECT * FROM btc_blocks ORDER BY height"):
            header = parse_header(bytes(header_raw))
            if self.headers.get(header.prev_hash) is None:
                continue  # its parent never arrived: it is fetched again
            entry = self.headers.connect(header, _LOAD_NOW)
            self._seq.setdefault(entry.hash, len(self._seq))
            self._children.setdefault(header.prev_hash, []).append(entry)
            self._have_data.add(bytes(block_hash))
        tip_rows = self.schema.execute("SELECT value FROM btc_meta WHERE key = 'tip'")
        if tip_rows:
            tip = self.headers.get(bytes(tip_rows[0][0]))
            if tip is None:
                raise ChainStateError("the stored tip is not among the stored blocks")
            self.tip = tip
        for block_hash in self._have_data:
            entry = self.headers.get(block_hash)
            if entry is not None and not self.on_chain(entry):
                self._unconnected.add(block_hash)
