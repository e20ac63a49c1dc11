"""The routing table of the Mainline DHT (BEP 5) and the BEP 42 node-id check.

Node ids are 160-bit ints. Only the bucket that holds our own id ever splits (BEP 5), so the table is a list where
bucket `i` (all but the last) holds the nodes sharing exactly `i` leading bits with our id, and the last bucket holds
every node sharing at least that many: a node's bucket is found in O(1) from the bit length of `id ^ own_id`.

Nodes are good (answered us within 15 minutes, or queried us within 15 minutes after having answered once),
questionable (otherwise) or bad (failed `MAX_FAILS` queries in a row). A full bucket takes a newcomer only in place
of a bad node; otherwise the newcomer waits in a bounded replacement cache and the table hands back the least
recently seen questionable node for the caller to ping ("ping before evict"): if that ping fails twice the node is
bad and the best replacement takes its place.

Entries are small (`__slots__`, the id as an int, the address in its 6/18-byte compact form) because a simulator
runs 100,000 tables in one process.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from peerloom.dht.krpc import Address, NodeInfo, pack_address, unpack_address

ID_BITS = 160
ID_SPACE = (1 << ID_BITS) - 1
K = 8
GOOD_FOR = 15 * 60.0  # BEP 5: a node is good for 15 minutes after it last proved alive
REFRESH_AFTER = 15 * 60.0  # BEP 5: refresh a bucket not changed in 15 minutes
MAX_FAILS = 2  # BEP 5: bad after failing "multiple queries in a row"; "try once more before discarding"
REPLACEMENTS = 8

_SHARED_RNG = random.Random()  # for tables built without a generator of their own: a Random weighs 2.5 KB

_RESPONDED = 1  # the node has answered one of our queries at least once
_BEP42_OK = 2  # the node id matches its IP (BEP 42), or the IP is local and exempt
_PINGING = 4  # handed out for a ping-before-evict that has not come back yet


class NodeState(Enum):
    GOOD = "good"
    QUESTIONABLE = "questionable"
    BAD = "bad"


def to_int(node_id: bytes | int) -> int:
    """A node id as the 160-bit int the table works with."""
    return node_id if isinstance(node_id, int) else int.from_bytes(node_id, "big")


def to_bytes(node_id: int) -> bytes:
    return node_id.to_bytes(20, "big")


class NodeEntry:
    """One known node: id, compact address, when it last proved alive, consecutive failures, flags."""

    __slots__ = ("addr", "fails", "flags", "id", "seen")

    def __init__(self, node_id: int, addr: bytes, seen: float, flags: int) -> None:
        self.id = node_id
        self.addr = addr
        self.seen = seen
        self.fails = 0
        self.flags = flags

    @property
    def node_id(self) -> bytes:
        return to_bytes(self.id)

    @property
    def address(self) -> Address:
        return unpack_address(self.addr)

    @property
    def responded(self) -> bool:
        return bool(self.flags & _RESPONDED)

    @property
    def bep42_valid(self) -> bool:
        return bool(self.flags & _BEP42_OK)

    def info(self) -> NodeInfo:
        host, port = unpack_address(self.addr)
        return to_bytes(self.id), host, port

    def state(self, now: float) -> NodeState:
        if self.fails >= MAX_FAILS:
            return NodeState.BAD
        if self.flags & _RESPONDED and now - self.seen < GOOD_FOR:
            return NodeState.GOOD
        return NodeState.QUESTIONABLE

    def __repr__(self) -> str:
        host, port = self.address
        return f"NodeEntry({self.id:040x}, {host}:{port}, fails={self.fails}, flags={self.flags})"


class Bucket:
    """Up to K nodes, a bounded replacement cache, and when the bucket last changed (BEP 5 "last changed")."""

    __slots__ = ("changed", "nodes", "replacements")

    def __init__(self, changed: float) -> None:
        self.nodes: list[NodeEntry] = []
        self.replacements: list[NodeEntry] = []
        self.changed = changed


@dataclass(frozen=True, slots=True)
class BucketStats:
    """One bucket's figures for `dht stats`: `depth` leading bits are shared with our id."""

    index: int
    depth: int
    good: int
    questionable: int
    bad: int
    replacements: int
    idle: float  # seconds since the bucket last changed


class RoutingTable:
    """BEP 5 routing table; see the module docstring. `enforce_bep42` keeps nodes whose id does not match their IP
    (BEP 42) out of the table; it is off by default because tests and simulations run many nodes on one IP."""

    __slots__ = ("buckets", "enforce_bep42", "k", "max_replacements", "own", "rng")

    def __init__(
        self,
        own_id: bytes | int,
        *,
        k: int = K,
        replacements: int = REPLACEMENTS,
        enforce_bep42: bool = False,
        rng: random.Random | None = None,
        now: float = 0.0,
    ) -> None:
        self.own = to_int(own_id)
        self.k = k
        self.max_replacements = replacements
        self.enforce_bep42 = enforce_bep42
        self.rng = rng if rng is not None else _SHARED_RNG
        self.buckets = [Bucket(now)]

    # -- lookups in the table ------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Nodes in the buckets (replacement caches not counted)."""
        return sum(len(bucket.nodes) for bucket in self.buckets)

    def __iter__(self) -> Iterator[NodeEntry]:
        for bucket in self.buckets:
            yield from bucket.nodes

    def bucket_index(self, node_id: int) -> int:
        return min(ID_BITS - (node_id ^ self.own).bit_length(), len(self.buckets) - 1)

    def find(self, node_id: bytes | int) -> NodeEntry | None:
        """The table entry for `node_id`, if it is in a bucket."""
        node_id = to_int(node_id)
        for entry in self.buckets[self.bucket_index(node_id)].nodes:
            if entry.id == node_id:
                return entry
        return None

    def closest(self, target: bytes | int, n: int = K, *, verified_only: bool = False) -> list[NodeEntry]:
        """The `n` nodes closest to `target` by XOR distance, bad nodes left out; with `verified_only`, only nodes that
        have answered us at least once (what we hand to other nodes).

        Buckets cover disjoint distance ranges, so only the buckets that can hold the answer are visited and sorted.
        """
        target = to_int(target)
        out: list[NodeEntry] = []
        for group in self._buckets_by_distance(target):
            found = [
                entry for entry in group
                if entry.fails < MAX_FAILS and (entry.flags & _RESPONDED or not verified_only)
            ]
            if len(found) > 1:
                found.sort(key=lambda entry: entry.id ^ target)
            out += found
            if len(out) >= n:
                break
        return out[:n]

    def _buckets_by_distance(self, target: int) -> Iterator[list[NodeEntry]]:
        """Groups of nodes in increasing distance ranges from `target` (nodes within one group are unordered)."""
        buckets = self.buckets
        last = len(buckets) - 1
        shared = ID_BITS - (target ^ self.own).bit_length()  # bits `target` shares with our id
        if shared >= last:
            yield buckets[last].nodes
        else:
            # Nodes of bucket `shared` agree with `target` on one more bit than those of the deeper buckets, which all
            # sit at the same distance range from it.
            yield buckets[shared].nodes
            yield [entry for bucket in buckets[shared + 1 :] for entry in bucket.nodes]
        for i in range(min(shared, last) - 1, -1, -1):
            yield buckets[i].nodes

    # -- what we learn about nodes -------------------------------------------------------------------------------
    def on_response(self, node_id: bytes | int, addr: Address, now: float) -> list[NodeEntry]:
        """`node_id` at `addr` answered one of our queries. Returns nodes to ping (ping before evict)."""
        return self._heard(to_int(node_id), addr, now, True)

    def on_query(self, node_id: bytes | int, addr: Address, now: float) -> list[NodeEntry]:
        """`node_id` at `addr` sent us a query (not BEP 43 read-only). Returns nodes to ping (ping before evict)."""
        return self._heard(to_int(node_id), addr, now, False)

    def on_failure(self, node_id: bytes | int, now: float) -> None:
        """A query to `node_id` went unanswered; a node that turns bad makes way for its best replacement."""
        node_id = to_int(node_id)
        bucket = self.buckets[self.bucket_index(node_id)]
        for i, entry in enumerate(bucket.nodes):
            if entry.id == node_id:
                entry.fails += 1
                entry.flags &= ~_PINGING
                if entry.fails >= MAX_FAILS and bucket.replacements:
                    bucket.nodes[i] = self._pop_replacement(bucket)
                    bucket.changed = now
                return
        for i, entry in enumerate(bucket.replacements):
            if entry.id == node_id:
                del bucket.replacements[i]
                return

    @staticmethod
    def ping_abandoned(entry: NodeEntry) -> None:
        """The caller could not send the ping-before-evict it was handed: the node may be handed out again."""
        entry.flags &= ~_PINGING

    def remove(self, node_id: bytes | int) -> bool:
        """Drop a node (e.g. one found to lie about its id); its best replacement takes its place."""
        node_id = to_int(node_id)
        bucket = self.buckets[self.bucket_index(node_id)]
        for i, entry in enumerate(bucket.nodes):
            if entry.id == node_id:
                if bucket.replacements:
                    bucket.nodes[i] = self._pop_replacement(bucket)
                else:
                    del bucket.nodes[i]
                return True
        return False

    def _heard(self, node_id: int, addr: Address, now: float, responded: bool, ping: bool = True) -> list[NodeEntry]:
        if node_id == self.own:
            return []
        bucket = self.buckets[self.bucket_index(node_id)]
        packed = pack_address(addr)
        for entry in bucket.nodes:
            if entry.id == node_id:
                self._refresh(entry, packed, now, responded)
                if responded or entry.flags & _RESPONDED:
                    bucket.changed = now
                return []
        for i, entry in enumerate(bucket.replacements):
            if entry.id == node_id:
                self._refresh(entry, packed, now, responded)
                del bucket.replacements[i]
                return self._insert(entry, now, ping)
        flags = (_RESPONDED if responded else 0) | (_BEP42_OK if node_id_valid_for_ip(node_id, addr[0]) else 0)
        return self._insert(NodeEntry(node_id, packed, now, flags), now, ping)

    @staticmethod
    def _refresh(entry: NodeEntry, packed: bytes, now: float, responded: bool) -> None:
        if entry.addr != packed:
            # Same id, new address: believe it only if the old address has not proved alive recently, so that a
            # node cannot take over a good node's id by claiming it.
            if entry.flags & _RESPONDED and entry.fails < MAX_FAILS and now - entry.seen < GOOD_FOR:
                return
            host = unpack_address(packed)[0]
            entry.addr = packed
            entry.flags = _BEP42_OK if node_id_valid_for_ip(entry.id, host) else 0
        if responded:
            entry.flags = (entry.flags | _RESPONDED) & ~_PINGING
        if responded or entry.flags & _RESPONDED:
            entry.seen = now
            entry.fails = 0

    def _insert(self, entry: NodeEntry, now: float, ping: bool = True) -> list[NodeEntry]:
        if self.enforce_bep42 and not entry.flags & _BEP42_OK:
            return []
        while True:
            index = self.bucket_index(entry.id)
            bucket = self.buckets[index]
            if len(bucket.nodes) < self.k:
                bucket.nodes.append(entry)
                bucket.changed = now
                return []
            if index == len(self.buckets) - 1 and index < ID_BITS - 1:
                self._split()
                continue
            break
        for i, old in enumerate(bucket.nodes):
            if old.fails >= MAX_FAILS:
                bucket.nodes[i] = entry
                bucket.changed = now
                return []
        self._add_replacement(bucket, entry)
        if not ping:
            return []
        stale = [old for old in bucket.nodes if old.state(now) is not NodeState.GOOD and not old.flags & _PINGING]
        if not stale:
            return []
        oldest = min(stale, key=lambda old: old.seen)
        oldest.flags |= _PINGING
        return [oldest]

    def _split(self) -> None:
        """Split the last bucket (the one holding our id): nodes sharing more bits with us move to a new last one."""
        depth = len(self.buckets) - 1
        old = self.buckets[-1]
        new = Bucket(old.changed)
        for attr in ("nodes", "replacements"):
            stay, move = [], []
            for entry in getattr(old, attr):
                (move if ID_BITS - (entry.id ^ self.own).bit_length() > depth else stay).append(entry)
            setattr(old, attr, stay)
            setattr(new, attr, move)
        self.buckets.append(new)

    def _add_replacement(self, bucket: Bucket, entry: NodeEntry) -> None:
        cache = bucket.replacements
        cache.append(entry)
        if len(cache) > self.max_replacements:
            # Drop the oldest node that never answered us, else the oldest one.
            drop = next((i for i, old in enumerate(cache) if not old.flags & _RESPONDED), 0)
            del cache[drop]

    @staticmethod
    def _pop_replacement(bucket: Bucket) -> NodeEntry:
        """The best waiting node: one that answered us, most recently seen."""
        cache = bucket.replacements
        best = max(range(len(cache)), key=lambda i: (cache[i].flags & _RESPONDED, cache[i].seen))
        return cache.pop(best)

    # -- maintenance ---------------------------------------------------------------------------------------------
    def stale_buckets(self, now: float, limit: int | None = None) -> list[bytes]:
        """Random ids in the ranges of buckets not changed for 15 minutes, to refresh with a find_node lookup
        (BEP 5). At most `limit`; the buckets returned count as changed now, so they come back only after another
        15 minutes without news."""
        out: list[bytes] = []
        last = len(self.buckets) - 1
        for index, bucket in enumerate(self.buckets):
            if limit is not None and len(out) >= limit:
                break
            if now - bucket.changed >= REFRESH_AFTER:
                bucket.changed = now
                out.append(to_bytes(self.random_id_in(index, index == last)))
        return out

    def random_id_in(self, index: int, last: bool) -> int:
        """A random id in bucket `index`'s range: our first `index` bits, then (unless it is the last bucket) the
        opposite of our next bit."""
        noise = self.rng.getrandbits(ID_BITS)
        fixed = index if last else index + 1
        high = (ID_SPACE >> (ID_BITS - fixed)) << (ID_BITS - fixed) if fixed else 0
        prefix = self.own if last else self.own ^ (1 << (ID_BITS - 1 - index))
        return (prefix & high) | (noise & ~high & ID_SPACE)

    def snapshot(self) -> list[NodeInfo]:
        """Every node in the buckets as (id, ip, port), good ones first, to persist between runs."""
        entries = sorted(self, key=lambda entry: (entry.fails, not entry.flags & _RESPONDED))
        return [entry.info() for entry in entries]

    def load(self, nodes: Iterable[NodeInfo], now: float) -> int:
        """Add persisted nodes as not yet verified (they must answer before we hand them to others); returns how
        many entered a bucket."""
        count = 0
        for node_id, host, port in nodes:
            if len(node_id) != 20:
                continue
            try:
                self._heard(to_int(node_id), (host, port), now, False, ping=False)
            except ValueError:
                continue
            count += self.find(node_id) is not None
        return count

    def stats(self, now: float) -> list[BucketStats]:
        """Per-bucket figures for `dht stats`."""
        out = []
        for index, bucket in enumerate(self.buckets):
            states = [entry.state(now) for entry in bucket.nodes]
            out.append(BucketStats(
                index=index,
                depth=index,
                good=states.count(NodeState.GOOD),
                questionable=states.count(NodeState.QUESTIONABLE),
                bad=states.count(NodeState.BAD),
                replacements=len(bucket.replacements),
                idle=now - bucket.changed,
            ))
        return out


# -- BEP 42 ------------------------------------------------------------------------------------------------------
def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli polynomial, reflected
        table.append(crc)
    return tuple(table)


_CRC32C = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli), table-driven; `crc` continues an earlier checksum."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


_V4_MASK = bytes((0x03, 0x0F, 0x3F, 0xFF))
_V6_MASK = bytes((0x01, 0x03, 0x07, 0x0F, 0x1F, 0x3F, 0x7F, 0xFF))


def _ip_bytes(ip: str) -> bytes:
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    except (OSError, TypeError) as exc:
        raise ValueError(f"not an IP address: {ip!r}") from exc


def is_local_address(ip: str) -> bool:
    """Addresses exempt from BEP 42: private, link-local and loopback ranges (and their IPv6 counterparts)."""
    raw = _ip_bytes(ip)
    if len(raw) == 16:
        if raw[:12] == b"\x00" * 10 + b"\xff\xff":  # IPv4-mapped
            raw = raw[12:]
        else:
            return raw == bytes(15) + b"\x01" or raw[0] & 0xFE == 0xFC or (raw[0] == 0xFE and raw[1] & 0xC0 == 0x80)
    a, b = raw[0], raw[1]
    return a in (10, 127) or (a == 172 and b & 0xF0 == 16) or (a, b) in ((192, 168), (169, 254))


def bep42_prefix(ip: str, rand: int) -> int:
    """CRC32C of the masked IP with `rand & 7` in its top bits: the first 21 bits of a valid node id (BEP 42)."""
    raw = _ip_bytes(ip)
    if len(raw) == 16:
        masked = bytearray(a & m for a, m in zip(raw[:8], _V6_MASK, strict=True))
    else:
        masked = bytearray(a & m for a, m in zip(raw, _V4_MASK, strict=True))
    masked[0] |= (rand & 7) << 5
    return crc32c(bytes(masked))


def node_id_valid_for_ip(node_id: bytes | int, ip: str) -> bool:
    """Whether `node_id` is one a node at `ip` may use (BEP 42); always True for local addresses."""
    if is_local_address(ip):
        return True
    raw = node_id if isinstance(node_id, bytes) else to_bytes(node_id)
    if len(raw) != 20:
        return False
    crc = bep42_prefix(ip, raw[19])
    return raw[0] == crc >> 24 and raw[1] == (crc >> 16) & 0xFF and raw[2] & 0xF8 == (crc >> 8) & 0xF8


def bep42_node_id(ip: str, rng: random.Random | None = None, rand: int | None = None) -> bytes:
    """A random node id that is valid for `ip` under BEP 42; `rand` is the last byte (random if None)."""
    rng = rng if rng is not None else _SHARED_RNG
    rand = rng.getrandbits(8) if rand is None else rand & 0xFF
    crc = bep42_prefix(ip, rand)
    head = bytes((crc >> 24, (crc >> 16) & 0xFF, ((crc >> 8) & 0xF8) | rng.getrandbits(3)))
    return head + rng.randbytes(16) + bytes((rand,))
