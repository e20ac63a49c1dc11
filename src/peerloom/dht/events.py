"""What a `DhtCore` reports: the events its requests end with, and its counters."""

from __future__ import annotations

from dataclasses import dataclass

from peerloom.dht.krpc import Address, ErrorMessage, NodeInfo, Response
from peerloom.dht.lookup import LookupResult


@dataclass(slots=True)
class QueryDone:
    """The answer to a query sent with `query` or `ping`; `reply` is None when it timed out."""

    request_id: int
    address: Address
    reply: Response | ErrorMessage | None


@dataclass(slots=True)
class LookupDone:
    """A lookup started with `start_lookup`, `bootstrap`, `announce` or `put` is over (`result` says what it found)."""

    lookup_id: int
    result: LookupResult


@dataclass(slots=True)
class PeersFound:
    """A reply to a running get_peers lookup (of `start_lookup` or `announce`) brought peers it had not seen. They come
    as the replies do: the lookup may go on for seconds waiting on slow or departed nodes, and a torrent should dial
    the peers it already has meanwhile (libtorrent hands them to the torrent the same way)."""

    lookup_id: int
    peers: list[Address]


@dataclass(slots=True)
class StoreDone:
    """The store step of `announce` (kind "announce_peer") or `put` (kind "put") is over: `stored` lists the nodes
    that acknowledged it, `failed` counts those that did not."""

    lookup_id: int
    kind: str
    target: bytes
    stored: list[NodeInfo]
    failed: int


@dataclass(slots=True)
class OtherFamilyNodes:
    """A reply to one of our lookups named nodes of the other address family (BEP 32 `want`, asked by a node that
    runs both): the driver hands them to that family's DHT, which pings those it does not know."""

    nodes: list[NodeInfo]


Event = QueryDone | LookupDone | PeersFound | StoreDone | OtherFamilyNodes


class DhtStats:
    """Counters for `dht stats`."""

    __slots__ = (
        "errors_in", "ignored_read_only", "malformed", "packets_in", "packets_out", "queries_in", "rate_limited",
        "responses_in", "send_failures", "timeouts", "unexpected", "unknown_method", "wrong_source",
    )

    def __init__(self) -> None:
        self.packets_in = 0
        self.packets_out = 0
        self.queries_in: dict[str, int] = {}  # by method name
        self.responses_in = 0
        self.errors_in = 0
        self.malformed = 0  # dropped: not KRPC
        self.unknown_method = 0  # answered with 204
        self.rate_limited = 0  # queries dropped by the per-IP limit
        self.ignored_read_only = 0  # queries not answered because we are read-only
        self.unexpected = 0  # responses to no pending transaction
        self.wrong_source = 0  # responses from another address than the query went to
        self.timeouts = 0
        self.send_failures = 0  # queries not sent because too many were pending

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}
