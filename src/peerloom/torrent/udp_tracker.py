"""UDP tracker protocol (BEP 15, with the BEP 41 URL option), sans-I/O.

Encoders and parsers for the connect, announce, scrape and error packets, a bounded cache of
connection ids, and `UdpTrackerExchange`: one announce or scrape as a state machine (connect when the
connection id is missing or stale, send, retransmit on a doubling timeout). Time is passed in; the
asyncio driver lives in `udp_tracker_client.py`.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from peerloom.codec.compact import unpack_peers
from peerloom.torrent.tracker import (
    MAX_PEERS,
    AnnounceRequest,
    AnnounceResponse,
    ScrapeStats,
    TrackerError,
    TrackerProtocolError,
)

PROTOCOL_ID = 0x41727101980  # BEP 15: the magic constant that opens every connect request
CONNECTION_ID_LIFETIME = 60.0  # BEP 15: a client may use a connection id for one minute after receiving it
RETRANSMIT_BASE = 15.0  # BEP 15: wait 15 * 2^n seconds before retransmitting, n = 0..8
MAX_RETRANSMITS = 8
MAX_SCRAPE_HASHES = 74  # BEP 15: at most about 74 torrents per scrape packet
MAX_DATAGRAM = 65_535
MAX_ERROR_MESSAGE = 1024
MAX_URL_DATA = 1024  # longest BEP 41 path+query we send (in URLData options of at most 255 bytes)
MAX_CACHED_CONNECTIONS = 1024

EVENTS = {"": 0, "completed": 1, "started": 2, "stopped": 3}

_HEADER = struct.Struct(">II")  # action, transaction id: the start of every response
_CONNECT = struct.Struct(">QII")  # protocol id / connection id, action, transaction id
_ANNOUNCE = struct.Struct(">QII20s20sqqqiIIiH")
_ANNOUNCE_REPLY = struct.Struct(">IIiII")  # action, transaction id, interval, leechers, seeders
_CONNECT_REPLY = struct.Struct(">IIQ")
_SCRAPE_ENTRY = struct.Struct(">III")  # seeders, completed, leechers
_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1


class Action(IntEnum):
    CONNECT = 0
    ANNOUNCE = 1
    SCRAPE = 2
    ERROR = 3


@dataclass(frozen=True, slots=True)
class UdpTrackerUrl:
    """Where a `udp://host:port/path` tracker is, and the path+query to send as BEP 41 URL data."""

    host: str
    port: int
    url_data: bytes = b""


def parse_udp_url(url: str) -> UdpTrackerUrl:
    """The parts of a UDP tracker URL; TrackerError when it is not one we can contact."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TrackerError(f"bad UDP tracker URL {url!r}: {exc}") from exc
    if parts.scheme.lower() != "udp":
        raise TrackerError(f"not a UDP tracker URL: {url!r}")
    if not parts.hostname or not port:
        raise TrackerError(f"UDP tracker URL needs a host and a port: {url!r}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    url_data = path.encode("utf-8")
    if len(url_data) > MAX_URL_DATA:
        raise TrackerError("UDP tracker URL path too long")
    return UdpTrackerUrl(parts.hostname, port, url_data)


# -- requests ---------------------------------------------------------------------------------------
def encode_connect(txid: int) -> bytes:
    return _CONNECT.pack(PROTOCOL_ID, Action.CONNECT, txid)


def encode_announce(connection_id: int, txid: int, req: AnnounceRequest, url_data: bytes = b"") -> bytes:
    """A 98-byte announce, then the URL path as BEP 41 URLData options (type 2, length, at most 255 bytes)."""
    if len(req.info_hash) != 20 or len(req.peer_id) != 20:
        raise ValueError("info-hash and peer id must be 20 bytes")
    if req.event not in EVENTS:
        raise ValueError(f"unknown announce event {req.event!r}")

    def u64(v: int) -> int:
        return min(max(v, 0), _INT64_MAX)

    packet = _ANNOUNCE.pack(
        connection_id, Action.ANNOUNCE, txid, req.info_hash, req.peer_id,
        u64(req.downloaded), u64(req.left), u64(req.uploaded), EVENTS[req.event],
        0,  # ip: 0 lets the tracker take the packet's source address
        req.key & 0xFFFFFFFF, max(-1, min(req.numwant, _INT32_MAX)), req.port,
    )
    options = b"".join(bytes((2, len(chunk))) + chunk for chunk in _chunks(url_data[:MAX_URL_DATA], 255))
    return packet + options


def encode_scrape(connection_id: int, txid: int, info_hashes: Sequence[bytes]) -> bytes:
    if not 0 < len(info_hashes) <= MAX_SCRAPE_HASHES:
        raise ValueError(f"a scrape packet asks about 1 to {MAX_SCRAPE_HASHES} info-hashes")
    if any(len(h) != 20 for h in info_hashes):
        raise ValueError("info-hashes must be 20 bytes")
    return _CONNECT.pack(connection_id, Action.SCRAPE, txid) + b"".join(info_hashes)


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- responses --------------------------------------------------------------------------------------
def transaction_id(datagram: bytes) -> int | None:
    """The transaction id of a response, for routing it to its request; None when too short to hold one."""
    if len(datagram) < _HEADER.size:
        return None
    return _HEADER.unpack_from(datagram)[1]


def _body(data: bytes, txid: int, action: Action, header_size: int) -> memoryview:
    """The bytes after the common header, once action and transaction id are checked; an error packet
    (action 3) raises TrackerError with the tracker's message."""
    if len(data) > MAX_DATAGRAM:
        raise TrackerProtocolError("UDP tracker response larger than a datagram")
    if len(data) < _HEADER.size:
        raise TrackerProtocolError("UDP tracker response shorter than its header")
    got_action, got_txid = _HEADER.unpack_from(data)
    if got_txid != txid:
        raise TrackerProtocolError("UDP tracker response for another transaction")
    if got_action == Action.ERROR:
        message = bytes(data[8 : 8 + MAX_ERROR_MESSAGE]).decode("utf-8", "replace").rstrip("\x00")
        raise TrackerError(f"tracker refused: {message}")
    if got_action != action:
        raise TrackerProtocolError(f"UDP tracker answered action {got_action} to a {action.name.lower()}")
    if len(data) < header_size:
        raise TrackerProtocolError(f"UDP tracker {action.name.lower()} response shorter than its header")
    return memoryview(data)[_HEADER.size :]


def parse_connect(data: bytes, txid: int) -> int:
    """The connection id of a connect response."""
    _body(data, txid, Action.CONNECT, _CONNECT_REPLY.size)
    return _CONNECT_REPLY.unpack_from(data)[2]


def parse_announce(data: bytes, txid: int, *, v6: bool) -> AnnounceResponse:
    """An announce response. BEP 15: peers are 6-byte IPv4 entries when the packet came over IPv4 and
    18-byte IPv6 entries when it came over IPv6, so `v6` is the family of the socket, not a guess."""
    _body(data, txid, Action.ANNOUNCE, _ANNOUNCE_REPLY.size)
    _, _, interval, leechers, seeders = _ANNOUNCE_REPLY.unpack_from(data)
    if interval <= 0:
        raise TrackerProtocolError("UDP tracker announce response has no interval")
    try:
        peers = unpack_peers(data[_ANNOUNCE_REPLY.size :], v6, MAX_PEERS)
    except ValueError as exc:
        raise TrackerProtocolError(str(exc)) from exc
    return AnnounceResponse(interval=interval, min_interval=None, peers=peers, complete=seeders, incomplete=leechers)


def parse_scrape(data: bytes, txid: int, info_hashes: Sequence[bytes]) -> dict[bytes, ScrapeStats]:
    """Counts per info-hash; the tracker answers in the order of the request, one 12-byte entry each."""
    body = _body(data, txid, Action.SCRAPE, _HEADER.size)
    if len(body) < _SCRAPE_ENTRY.size * len(info_hashes):
        raise TrackerProtocolError("UDP tracker scrape response holds fewer torrents than asked")
    out = {}
    for i, info_hash in enumerate(info_hashes):
        seeders, completed, leechers = _SCRAPE_ENTRY.unpack_from(body, i * _SCRAPE_ENTRY.size)
        out[info_hash] = ScrapeStats(complete=seeders, downloaded=completed, incomplete=leechers)
    return out


# -- timing and connection ids ----------------------------------------------------------------------
def retransmit_timeout(attempt: int, base: float = RETRANSMIT_BASE) -> float:
    """How long to wait for an answer to the `attempt`-th send (0 = first): base * 2^n, n capped at 8."""
    return base * 2 ** min(attempt, MAX_RETRANSMITS)


@dataclass(frozen=True, slots=True)
class ConnectionId:
    value: int
    expires: float

    @classmethod
    def received(cls, value: int, now: float) -> ConnectionId:
        return cls(value, now + CONNECTION_ID_LIFETIME)

    def valid_at(self, now: float) -> bool:
        return now < self.expires


class ConnectionIds:
    """Connection ids per tracker address, dropped once expired; at most `limit` trackers are kept."""

    def __init__(self, limit: int = MAX_CACHED_CONNECTIONS) -> None:
        self.limit = limit
        self._ids: dict[Hashable, ConnectionId] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, address: Hashable, now: float) -> ConnectionId | None:
        cid = self._ids.get(address)
        if cid is not None and not cid.valid_at(now):
            del self._ids[address]
            return None
        return cid

    def put(self, address: Hashable, cid: ConnectionId, now: float) -> None:
        self._ids.pop(address, None)
        if len(self._ids) >= self.limit:
            for key in [k for k, v in self._ids.items() if not v.valid_at(now)]:
                del self._ids[key]
        while len(self._ids) >= self.limit:
            del self._ids[next(iter(self._ids))]  # the oldest insertion goes first
        self._ids[address] = cid

    def forget(self, address: Hashable) -> None:
        self._ids.pop(address, None)


# -- one request as a state machine -----------------------------------------------------------------
class Phase(Enum):
    CONNECTING = "connecting"
    REQUESTING = "requesting"
    DONE = "done"
    FAILED = "failed"


R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Query(Protocol[R_co]):
    """What an exchange asks once connected: how to encode it and how to parse the answer."""

    def encode(self, connection_id: int, txid: int) -> bytes: ...

    def parse(self, data: bytes, txid: int) -> R_co: ...


@dataclass(frozen=True, slots=True)
class AnnounceQuery:
    """An announce; `v6` says the tracker is reached over IPv6, which makes its peers 18-byte entries."""

    request: AnnounceRequest
    v6: bool = False
    url_data: bytes = b""

    def encode(self, connection_id: int, txid: int) -> bytes:
        return encode_announce(connection_id, txid, self.request, self.url_data)

    def parse(self, data: bytes, txid: int) -> AnnounceResponse:
        return parse_announce(data, txid, v6=self.v6)


@dataclass(frozen=True, slots=True)
class ScrapeQuery:
    """A scrape of 1 to 74 info-hashes: what fits one packet."""

    info_hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not 0 < len(self.info_hashes) <= MAX_SCRAPE_HASHES:
            raise ValueError(f"a scrape packet asks about 1 to {MAX_SCRAPE_HASHES} info-hashes")

    def encode(self, connection_id: int, txid: int) -> bytes:
        return encode_scrape(connection_id, txid, self.info_hashes)

    def parse(self, data: bytes, txid: int) -> dict[bytes, ScrapeStats]:
        return parse_scrape(data, txid, self.info_hashes)


def _random_txid() -> int:
    return secrets.randbits(32)


class UdpTrackerExchange(Generic[R]):
    """One announce or scrape with one tracker.

    `start` gives the first datagram; feed each answer carrying `txid` to `receive`, and call
    `timed_out` when `deadline` passes without one. Both return the next datagram to send (None once
    `result` is set). The retransmit count n runs over the whole exchange and never resets, so a
    tracker that answers connects but never the request still ends it after 9 unanswered sends.
    """

    def __init__(
        self,
        query: Query[R],
        *,
        connection: ConnectionId | None = None,
        retransmit_base: float = RETRANSMIT_BASE,
        new_txid: Callable[[], int] = _random_txid,
    ) -> None:
        self.query = query
        self.connection = connection
        self.retransmit_base = retransmit_base
        self._new_txid = new_txid
        self.phase = Phase.CONNECTING
        self.txid = 0
        self.attempt = 0
        self.deadline = 0.0
        self.result: R | None = None
        self._datagram = b""

    def start(self, now: float) -> bytes:
        if self.connection is not None and self.connection.valid_at(now):
            return self._send(Phase.REQUESTING, now)
        return self._send(Phase.CONNECTING, now)

    def receive(self, data: bytes, now: float) -> bytes | None:
        try:
            if self.phase is Phase.CONNECTING:
                self.connection = ConnectionId.received(parse_connect(data, self.txid), now)
                return self._send(Phase.REQUESTING, now)
            if self.phase is Phase.REQUESTING:
                self.result = self.query.parse(data, self.txid)
                self.phase = Phase.DONE
                return None
        except TrackerError:
            self.phase = Phase.FAILED
            raise
        raise RuntimeError(f"UDP tracker exchange is {self.phase.value}")

    def timed_out(self, now: float) -> bytes:
        if self.phase not in (Phase.CONNECTING, Phase.REQUESTING):
            raise RuntimeError(f"UDP tracker exchange is {self.phase.value}")
        if self.attempt >= MAX_RETRANSMITS:
            self.phase = Phase.FAILED
            raise TrackerError(f"UDP tracker did not answer {MAX_RETRANSMITS + 1} sends")
        self.attempt += 1
        if self.phase is Phase.REQUESTING and not (self.connection and self.connection.valid_at(now)):
            return self._send(Phase.CONNECTING, now)  # BEP 15: an expired connection id must be renewed
        self.deadline = now + retransmit_timeout(self.attempt, self.retransmit_base)
        return self._datagram

    def _send(self, phase: Phase, now: float) -> bytes:
        """Enter a phase that sends something: a fresh transaction id, a new datagram, a new deadline."""
        self.phase = phase
        self.txid = self._new_txid()
        if phase is Phase.CONNECTING:
            self._datagram = encode_connect(self.txid)
        else:
            assert self.connection is not None
            self._datagram = self.query.encode(self.connection.value, self.txid)
        self.deadline = now + retransmit_timeout(self.attempt, self.retransmit_base)
        return self._datagram
