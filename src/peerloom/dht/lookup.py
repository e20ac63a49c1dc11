"""The iterative Kademlia lookup of BEP 5 (find_node, get_peers) and BEP 44 (get), as a state machine.

The caller feeds it: `next_queries(now)` hands out (candidate, query) pairs to send (the caller sets each query's
transaction id), and each sent query comes back exactly once through `on_response`, `on_error` or `on_timeout`
(timing requests out is the caller's job); `on_slow` tells it that a query has gone unanswered for the short timeout.
The lookup keeps a bounded shortlist sorted by XOR distance, keeps at most `alpha` queries in flight (a slow one no
longer counts: libtorrent's "short timeout"), and is done when the `k` closest live candidates have all answered (or
failed) and no closer one is pending.

Results do not wait for that end: `on_response` returns the peers a get_peers reply brought that the lookup had not
seen, so the caller can hand them on at once (as libtorrent does) instead of after the slowest of the closest nodes
has timed out; and a BEP 44 get of an immutable item made with `until_item` ends with the first valid item (its
target is the hash of its value: no other node can hold a better one; libtorrent stops there too).
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from peerloom.dht.bep44 import Item, immutable_target, mutable_target, verify_mutable
from peerloom.dht.krpc import Address, FindNode, Get, GetPeers, NodeInfo, Query, Response
from peerloom.dht.routing import ID_BITS, node_id_valid_for_ip, to_bytes, to_int

ALPHA = 3
K = 8
MAX_PEERS = 500

_UNKNOWN = 1 << ID_BITS  # distance of a seed whose id we do not know yet (a bootstrap address): after every real id


class LookupKind(Enum):
    FIND_NODE = "find_node"
    GET_PEERS = "get_peers"
    GET = "get"  # BEP 44


QUERY_TRIES = 3  # sends to one candidate before it counts as failed (a timeout is often one lost datagram)


class CandidateState(Enum):
    NEW = "new"
    PENDING = "pending"
    SLOW = "slow"  # unanswered past the short timeout: still awaited, asked again, no longer counted against alpha
    RESPONDED = "responded"
    FAILED = "failed"  # timed out, answered with an error, or not eligible (wrong id, BEP 42 when enforced)


_AWAITED = (CandidateState.PENDING, CandidateState.SLOW)


class Candidate:
    """A node on the shortlist. `depth` is the hop at which it was found (seeds are hop 1)."""

    __slots__ = ("address", "depth", "distance", "id", "retry_due", "sends", "state", "token", "waiting")

    def __init__(self, node_id: int | None, address: Address, distance: int, depth: int) -> None:
        self.id = node_id
        self.address = address
        self.distance = distance
        self.depth = depth
        self.state = CandidateState.NEW
        self.token: bytes | None = None
        self.sends = 0
        self.waiting = 0  # queries to it not yet answered nor timed out
        self.retry_due = False  # its last query passed the short timeout: ask it again

    def info(self) -> NodeInfo:
        assert self.id is not None
        return to_bytes(self.id), self.address[0], self.address[1]

    def __repr__(self) -> str:
        node = "?" if self.id is None else f"{self.id:040x}"
        return f"Candidate({node}, {self.address}, {self.state.value}, depth={self.depth})"


@dataclass(slots=True)
class LookupResult:
    """What a finished lookup found. `nodes` are the closest nodes that answered, nearest first; `hops` is the depth
    at which the nearest of them was found; `duration` runs from the start to the moment the lookup was done."""

    kind: LookupKind
    target: bytes
    nodes: list[NodeInfo] = field(default_factory=list)
    peers: list[Address] = field(default_factory=list)
    item: Item | None = None
    hops: int = 0
    messages: int = 0
    timeouts: int = 0
    errors: int = 0
    duration: float = 0.0


class Lookup:
    """One iterative lookup; see the module docstring.

    `seeds` are (node id or None, address) pairs, usually the routing table's closest nodes; an unknown id (a
    bootstrap address) is learnt from the node's answer. For BEP 44 `get`, `salt` is the one the target was made with
    (needed to check mutable items) and `seq` asks only for items newer than it; `until_item` ends the lookup at the
    first valid immutable item (not for a put, which needs the closest nodes). With `enforce_bep42`, nodes whose id
    does not match their IP may route the lookup but do not count towards its end and get no store.
    """

    __slots__ = (
        "_by_id", "_holders", "_item", "_own", "_peers", "_short", "alpha", "enforce_bep42", "errors", "finished_at",
        "in_flight", "k", "kind", "max_candidates", "messages", "own_id", "read_only", "salt", "seq", "started_at",
        "target", "target_int", "timeouts", "until_item", "v6", "want",
    )

    def __init__(
        self,
        target: bytes,
        kind: LookupKind,
        seeds: Iterable[tuple[int | bytes | None, Address]],
        *,
        own_id: bytes,
        now: float,
        alpha: int = ALPHA,
        k: int = K,
        read_only: bool = False,
        v6: bool = False,
        enforce_bep42: bool = False,
        salt: bytes = b"",
        seq: int | None = None,
        max_candidates: int | None = None,
        until_item: bool = False,
        want: tuple[bytes, ...] = (),
    ) -> None:
        self.target = target
        self.target_int = to_int(target)
        self.kind = kind
        self.own_id = own_id
        self._own = to_int(own_id)
        self.alpha = alpha
        self.k = k
        self.read_only = read_only
        self.v6 = v6
        self.enforce_bep42 = enforce_bep42
        self.salt = salt
        self.seq = seq
        self.until_item = until_item
        self.want = want  # BEP 32: the families whose nodes find_node/get_peers ask for (b"n4", b"n6"; () = ours)
        self.max_candidates = max_candidates or 8 * k
        self.started_at = now
        self.finished_at: float | None = None
        self.in_flight = 0
        self.messages = 0
        self.timeouts = 0
        self.errors = 0
        self._short: list[Candidate] = []
        self._by_id: dict[int, Candidate] = {}
        self._peers: dict[Address, None] = {}
        self._item: Item | None = None
        self._holders: set[int] = set()  # ids of the nodes that returned an item (BEP 44 get)
        for node_id, address in seeds:
            if node_id is None:
                self._insert(Candidate(None, address, _UNKNOWN, 1))
            else:
                self._add(to_int(node_id), address, 1)
        self._check_done(now)

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    # -- driving the lookup --------------------------------------------------------------------------------------
    def next_queries(self, now: float) -> list[tuple[Candidate, Query]]:
        """Queries to send now: to the closest unqueried candidates, keeping at most `alpha` in flight, and again to
        the slow ones among the `k` closest live whose last try passed the short timeout (not counted against
        `alpha`: the earlier queries stay out)."""
        out: list[tuple[Candidate, Query]] = []
        if self.finished_at is not None:
            return out
        live = 0
        for cand in self._short:
            if live >= self.k:
                break
            state = cand.state
            if state is CandidateState.FAILED:
                continue
            live += 1
            if state is CandidateState.NEW and self.in_flight < self.alpha:
                cand.state = CandidateState.PENDING
                self.in_flight += 1
            elif state is not CandidateState.SLOW or not cand.retry_due or cand.sends >= QUERY_TRIES:
                continue
            cand.retry_due = False
            cand.sends += 1
            cand.waiting += 1
            self.messages += 1
            out.append((cand, self._query()))
        self._check_done(now)
        return out

    def on_response(self, cand: Candidate, response: Response, now: float) -> list[Address]:
        """`cand` answered: learn the nodes, peers, token and item it sent. Returns the peers it gave that are new to
        this lookup (get_peers), for the caller to use before the lookup is over."""
        if not self._settle(cand):
            return []
        node_id = int.from_bytes(response.node_id, "big")
        if cand.id is None:
            if node_id in self._by_id or node_id == self._own:
                cand.state = CandidateState.FAILED  # a bootstrap address of a node we already have
            else:
                with contextlib.suppress(ValueError):  # it may have been pushed off the shortlist meanwhile
                    self._short.remove(cand)
                cand.id = node_id
                cand.distance = node_id ^ self.target_int
                self._insert(cand)
        elif cand.id != node_id:
            cand.state = CandidateState.FAILED  # not the node we were told about: ignore what it says
            self._check_done(now)
            return []
        if cand.state is not CandidateState.FAILED:
            eligible = not self.enforce_bep42 or node_id_valid_for_ip(node_id, cand.address[0])
            cand.state = CandidateState.RESPONDED if eligible else CandidateState.FAILED
            cand.token = response.token
        for node_id_bytes, host, port in response.nodes6 if self.v6 else response.nodes:
            self._add(int.from_bytes(node_id_bytes, "big"), (host, port), cand.depth + 1)
        fresh: list[Address] = []
        if self.kind is LookupKind.GET_PEERS:
            for peer in response.values:
                if len(self._peers) >= MAX_PEERS:
                    break
                if peer not in self._peers:
                    self._peers[peer] = None
                    fresh.append(peer)
        elif self.kind is LookupKind.GET and response.value is not None and self._take_item(response):
            self._holders.add(node_id)
            if self.until_item and response.key is None:
                self.finished_at = now
        self._check_done(now)
        return fresh

    def on_error(self, cand: Candidate, now: float) -> None:
        """`cand` answered with a KRPC error."""
        if self._settle(cand):
            self.errors += 1
            cand.state = CandidateState.FAILED
            self._check_done(now)

    def on_timeout(self, cand: Candidate, now: float) -> None:
        """A query to `cand` got no answer in time (or could not be sent). `cand` counts as failed once its last
        query has timed out and it was asked `QUERY_TRIES` times (else it is asked again): with a few percent of
        datagrams lost, giving up on the first silence would miss the closest node in about one lookup in ten."""
        if cand.state not in _AWAITED:
            return
        self.timeouts += 1
        cand.waiting -= 1
        if cand.waiting:
            return  # the other query to it is still out
        self._settle(cand)
        cand.state = CandidateState.NEW if cand.sends < QUERY_TRIES else CandidateState.FAILED
        self._check_done(now)

    def on_slow(self, cand: Candidate) -> None:
        """A query to `cand` has gone unanswered for the short timeout: most such queries were lost, so it stops
        holding one of the `alpha` slots, `cand` is asked again at once (up to `QUERY_TRIES` in all) and the next
        candidate can be asked (libtorrent's "short timeout"; the retry makes a lost datagram cost that short wait,
        not the full timeout). The query is still awaited: an answer before its full timeout is taken."""
        if cand.state is CandidateState.PENDING:
            self.in_flight -= 1
            cand.state = CandidateState.SLOW
        if cand.state is CandidateState.SLOW:
            cand.retry_due = True  # each try that goes unanswered that long brings the next (up to QUERY_TRIES)

    # -- results -------------------------------------------------------------------------------------------------
    def closest_responded(self, n: int | None = None) -> list[Candidate]:
        """The `n` (default `k`) closest candidates that answered, nearest first."""
        n = self.k if n is None else n
        out = []
        for cand in self._short:
            if cand.state is CandidateState.RESPONDED:
                out.append(cand)
                if len(out) >= n:
                    break
        return out

    def store_targets(self, n: int | None = None) -> list[Candidate]:
        """The closest answering candidates that gave a write token: where an announce or put goes."""
        return [cand for cand in self.closest_responded(n) if cand.token is not None]

    def returned_item(self, cand: Candidate) -> bool:
        """Whether `cand` answered a BEP 44 get with a valid item (only those get a put with `cas`)."""
        return cand.id in self._holders

    def result(self) -> LookupResult:
        closest = self.closest_responded()
        end = self.finished_at if self.finished_at is not None else self.started_at
        return LookupResult(
            kind=self.kind,
            target=self.target,
            nodes=[cand.info() for cand in closest],
            peers=list(self._peers),
            item=self._item,
            hops=closest[0].depth if closest else 0,
            messages=self.messages,
            timeouts=self.timeouts,
            errors=self.errors,
            duration=end - self.started_at,
        )

    # -- internals -----------------------------------------------------------------------------------------------
    def _query(self) -> Query:
        own, ro = self.own_id, self.read_only
        if self.kind is LookupKind.FIND_NODE:
            return FindNode(t=b"", node_id=own, read_only=ro, target=self.target, want=self.want)
        if self.kind is LookupKind.GET_PEERS:
            return GetPeers(t=b"", node_id=own, read_only=ro, info_hash=self.target, want=self.want)
        return Get(t=b"", node_id=own, read_only=ro, target=self.target, seq=self.seq)

    def _settle(self, cand: Candidate) -> bool:
        """`cand`'s query came back; whether it was still awaited (its slot, if it held one, is freed)."""
        if cand.state is CandidateState.PENDING:
            self.in_flight -= 1
            return True
        return cand.state is CandidateState.SLOW

    def _add(self, node_id: int, address: Address, depth: int) -> None:
        if node_id in self._by_id or node_id == self._own:
            return
        distance = node_id ^ self.target_int
        short = self._short
        if len(short) >= self.max_candidates and distance >= short[-1].distance:
            return
        self._insert(Candidate(node_id, address, distance, depth))

    def _insert(self, cand: Candidate) -> None:
        short = self._short
        bisect.insort(short, cand, key=_distance)
        if cand.id is not None:
            self._by_id[cand.id] = cand
        if len(short) > self.max_candidates:
            dropped = short.pop()
            if dropped.id is not None and self._by_id.get(dropped.id) is dropped:
                del self._by_id[dropped.id]

    def _take_item(self, response: Response) -> bool:
        """Keep a valid item from `response` (the highest seq of a mutable one); whether the item was valid."""
        value = response.value
        assert value is not None
        if response.key is None:
            if immutable_target(value) != self.target:
                return False
            if self._item is None:
                self._item = Item(value=value)
            return True
        seq, signature = response.seq, response.signature
        if seq is None or signature is None or mutable_target(response.key, self.salt) != self.target:
            return False
        best = self._item
        if best is not None and best.seq == seq and best.value == value and best.signature == signature:
            return True  # the same item again: no need to check the signature twice
        if not verify_mutable(response.key, signature, value, seq, self.salt):
            return False
        if best is None or (best.seq or 0) < seq:
            self._item = Item(value=value, key=response.key, signature=signature, seq=seq, salt=self.salt)
        return True

    def _check_done(self, now: float) -> None:
        if self.finished_at is not None:
            return
        live = 0
        for cand in self._short:
            if live >= self.k:
                break
            if cand.state is CandidateState.FAILED:
                continue
            if cand.state is not CandidateState.RESPONDED:
                return
            live += 1
        self.finished_at = now


def _distance(cand: Candidate) -> int:
    return cand.distance
