"""What a DHT node stores for others: write tokens (BEP 5), peers per info-hash (BEP 5) and BEP 44 items.

All three are bounded and take the current time as an argument; expiry runs from `expire(now)`.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

from peerloom.codec.compact import unpack_peers
from peerloom.dht import krpc
from peerloom.dht.bep44 import MAX_SALT, MAX_SEQ, MAX_VALUE, Item, verify_mutable
from peerloom.dht.krpc import Address, pack_address
from peerloom.errors import ProtocolError

TOKEN_ROTATE = 5 * 60.0  # BEP 5: the secret changes every five minutes; tokens up to ten minutes old are accepted
TOKEN_LEN = 8
PEER_TTL = 30 * 60.0  # an announce is good for 30 minutes (clients re-announce every 15 to 30)
ITEM_TTL = 2 * 60 * 60.0  # BEP 44: items may expire after 2 hours without a re-announce
MAX_INFO_HASHES = 2000
MAX_PEERS_PER_HASH = 200
MAX_ITEMS = 1000
MAX_VALUES_PER_REPLY = 50  # keeps a get_peers reply under the 1024-byte packet size of BEP 32


class TokenManager:
    """Write tokens: `sha1(secret + packed ip)[:8]`, valid under the current or the previous secret, so for five to
    ten minutes after they are handed out (BEP 5)."""

    __slots__ = ("_current", "_previous", "_randbytes", "_rotated_at")

    def __init__(self, now: float, *, randbytes: Callable[[int], bytes] = os.urandom) -> None:
        self._randbytes = randbytes
        self._current = randbytes(16)
        self._previous = randbytes(16)
        self._rotated_at = now

    def rotate_if_due(self, now: float) -> None:
        periods = int((now - self._rotated_at) // TOKEN_ROTATE)
        if periods <= 0:
            return
        if periods >= 2:  # both secrets are too old: no token handed out before may pass
            self._previous = self._randbytes(16)
        else:
            self._previous = self._current
        self._current = self._randbytes(16)
        # Stay on the five-minute schedule even when called late, so no token outlives two periods.
        self._rotated_at += periods * TOKEN_ROTATE

    def make(self, ip: str, now: float) -> bytes:
        """The token for a node at `ip`."""
        self.rotate_if_due(now)
        return self._token(self._current, ip)

    def check(self, token: bytes, ip: str, now: float) -> bool:
        """Whether `token` was handed to `ip` within the validity window."""
        self.rotate_if_due(now)
        if len(token) != TOKEN_LEN:
            return False
        return token in (self._token(self._current, ip), self._token(self._previous, ip))

    @staticmethod
    def _token(secret: bytes, ip: str) -> bytes:
        return hashlib.sha1(secret + pack_address((ip, 0))[:-2]).digest()[:TOKEN_LEN]


class PeerStore:
    """Peers announced per info-hash, each kept until `ttl` after its last announce. At most `max_info_hashes`
    swarms (the least recently announced one goes first) and `max_peers` per swarm (the oldest announce goes)."""

    __slots__ = ("_swarms", "max_info_hashes", "max_peers", "ttl")

    def __init__(
        self, *, max_info_hashes: int = MAX_INFO_HASHES, max_peers: int = MAX_PEERS_PER_HASH, ttl: float = PEER_TTL
    ) -> None:
        self.max_info_hashes = max_info_hashes
        self.max_peers = max_peers
        self.ttl = ttl
        self._swarms: dict[bytes, dict[bytes, float]] = {}  # info-hash -> compact peer -> expiry

    def __len__(self) -> int:
        return len(self._swarms)

    def count(self, info_hash: bytes) -> int:
        return len(self._swarms.get(info_hash, ()))

    def announce(self, info_hash: bytes, peer: Address, now: float) -> None:
        """Record (or refresh) `peer` for `info_hash`."""
        compact = pack_address(peer)
        swarm = self._swarms.pop(info_hash, None)
        if swarm is None:
            if len(self._swarms) >= self.max_info_hashes:
                self.expire(now)
                if len(self._swarms) >= self.max_info_hashes:
                    del self._swarms[next(iter(self._swarms))]
            swarm = {}
        self._swarms[info_hash] = swarm  # re-inserted: the most recently announced swarm is last
        swarm.pop(compact, None)
        swarm[compact] = now + self.ttl
        if len(swarm) > self.max_peers:
            del swarm[next(iter(swarm))]

    def get(
        self, info_hash: bytes, now: float, *, v6: bool = False, limit: int = MAX_VALUES_PER_REPLY,
        rng: random.Random | None = None,
    ) -> list[Address]:
        """Up to `limit` live peers of one address family, a random sample when there are more."""
        swarm = self._swarms.get(info_hash)
        if not swarm:
            return []
        size = 18 if v6 else 6
        live = [peer for peer, expiry in swarm.items() if expiry > now and len(peer) == size]
        if len(live) > limit:
            live = (rng or random).sample(live, limit)
        return unpack_peers(b"".join(live), v6, limit)

    def sample(self, n: int, rng: random.Random | None = None) -> list[bytes]:
        """Up to `n` stored info-hashes, chosen at random (BEP 51)."""
        hashes = list(self._swarms)
        return hashes if len(hashes) <= n else (rng or random).sample(hashes, n)

    def expire(self, now: float) -> int:
        """Drop expired announces and empty swarms; returns how many announces went."""
        removed = 0
        for info_hash in list(self._swarms):
            swarm = self._swarms[info_hash]
            dead = [peer for peer, expiry in swarm.items() if expiry <= now]
            for peer in dead:
                del swarm[peer]
            removed += len(dead)
            if not swarm:
                del self._swarms[info_hash]
        return removed


class ItemError(ProtocolError):
    """A BEP 44 put that the store refuses; `code` is the KRPC error code to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class _Stored:
    item: Item
    expires: float


class ItemStore:
    """BEP 44 items by target, each kept until `ttl` after its last put; at most `max_items` (the least recently put
    goes first)."""

    __slots__ = ("_items", "max_items", "ttl")

    def __init__(self, *, max_items: int = MAX_ITEMS, ttl: float = ITEM_TTL) -> None:
        self.max_items = max_items
        self.ttl = ttl
        self._items: dict[bytes, _Stored] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, target: bytes, now: float) -> Item | None:
        stored = self._items.get(target)
        if stored is None or stored.expires <= now:
            return None
        return stored.item

    def put(self, item: Item, now: float, *, cas: int | None = None) -> bytes:
        """Store `item` after the BEP 44 checks; returns its target. ItemError (with the KRPC code) on refusal."""
        if len(item.value) > MAX_VALUE:
            raise ItemError(krpc.ERROR_VALUE_TOO_BIG, f"value of {len(item.value)} bytes is larger than {MAX_VALUE}")
        if item.key is None:
            return self._keep(item.target, item, now)
        if len(item.salt) > MAX_SALT:
            raise ItemError(krpc.ERROR_SALT_TOO_BIG, f"salt of {len(item.salt)} bytes is longer than {MAX_SALT}")
        if item.seq is None or not 0 <= item.seq <= MAX_SEQ or item.signature is None:
            raise ItemError(krpc.ERROR_PROTOCOL, "mutable item without a valid seq and signature")
        if not verify_mutable(item.key, item.signature, item.value, item.seq, item.salt):
            raise ItemError(krpc.ERROR_BAD_SIGNATURE, "invalid signature")
        target = item.target
        current = self.get(target, now)
        if current is not None and current.seq is not None:
            if cas is not None and cas != current.seq:
                raise ItemError(krpc.ERROR_CAS_MISMATCH, f"cas {cas} does not match the stored seq {current.seq}")
            if item.seq < current.seq or (item.seq == current.seq and item.value != current.value):
                raise ItemError(krpc.ERROR_SEQ_TOO_LOW, f"seq {item.seq} is not above the stored {current.seq}")
        return self._keep(target, item, now)

    def _keep(self, target: bytes, item: Item, now: float) -> bytes:
        self._items.pop(target, None)
        if len(self._items) >= self.max_items:
            self.expire(now)
            if len(self._items) >= self.max_items:
                del self._items[next(iter(self._items))]
        self._items[target] = _Stored(item, now + self.ttl)
        return target

    def expire(self, now: float) -> int:
        dead = [target for target, stored in self._items.items() if stored.expires <= now]
        for target in dead:
            del self._items[target]
        return len(dead)
