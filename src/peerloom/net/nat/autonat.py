"""AutoNAT v1 (`/libp2p/autonat/1.0.0`), sans-I/O: the messages, the server's rules, the client's verdict.

A node asks a peer "dial me back at these addresses"; the peer dials them on a new connection and answers whether
one worked (libp2p specs, autonat/autonat-v1.md). Messages are varint-length-prefixed protobuf:

    message Message { optional MessageType type = 1; optional Dial dial = 2; optional DialResponse dialResponse = 3; }
    message Dial { optional PeerInfo peer = 1; }
    message PeerInfo { optional bytes id = 1; repeated bytes addrs = 2; }
    message DialResponse { optional ResponseStatus status = 1; optional string statusText = 2;
                           optional bytes addr = 3; }

The server dials only addresses on the IP the request came from (the observed address): otherwise anyone could make it
connect to a third party. It rate-limits requests per peer and overall (`DialBackLimiter`). The client asks several
servers and keeps each one's latest answer (`Reachability`): public when enough of them reached it, private when
enough could not, unknown otherwise; refusals and errors do not count either way.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from peerloom.codec.multiaddr import Multiaddr, MultiaddrError
from peerloom.codec.protobuf import ProtobufError, encode_bytes_field, encode_varint_field, iter_fields
from peerloom.errors import ProtocolError
from peerloom.identity import PeerId, PeerIdError

AUTONAT_PROTOCOL = "/libp2p/autonat/1.0.0"
MAX_MESSAGE_SIZE = 4096  # go-libp2p's bound on one AutoNAT message
MAX_ADDRS = 16  # addresses kept from one request (go-libp2p: maxPeerAddresses)
MAX_STATUS_TEXT = 256

_DIAL, _DIAL_RESPONSE = 0, 1


class AutoNatError(ProtocolError):
    """A malformed AutoNAT message."""


class Status(enum.IntEnum):
    OK = 0
    E_DIAL_ERROR = 100
    E_DIAL_REFUSED = 101
    E_BAD_REQUEST = 200
    E_INTERNAL_ERROR = 300


@dataclass(frozen=True)
class DialRequest:
    peer: PeerId
    addrs: tuple[Multiaddr, ...]


@dataclass(frozen=True)
class DialResponse:
    status: Status
    text: str = ""
    addr: Multiaddr | None = None


def encode_request(request: DialRequest) -> bytes:
    info = encode_bytes_field(1, request.peer.multihash) + b"".join(
        encode_bytes_field(2, a.to_bytes()) for a in request.addrs[:MAX_ADDRS]
    )
    return encode_varint_field(1, _DIAL) + encode_bytes_field(2, encode_bytes_field(1, info))


def encode_response(response: DialResponse) -> bytes:
    body = encode_varint_field(1, int(response.status))
    if response.text:
        body += encode_bytes_field(2, response.text.encode()[:MAX_STATUS_TEXT])
    if response.addr is not None:
        body += encode_bytes_field(3, response.addr.to_bytes())
    return encode_varint_field(1, _DIAL_RESPONSE) + encode_bytes_field(3, body)


def decode_message(data: bytes) -> DialRequest | DialResponse:
    """One AutoNAT message: a dial request or a dial response (AutoNatError for anything else)."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise AutoNatError(f"AutoNAT message of {len(data)} bytes")
    try:
        kind, dial, answer = None, None, None
        for f in iter_fields(data):
            if f.number == 1:
                kind = f.as_int()
            elif f.number == 2:
                dial = f.as_bytes()
            elif f.number == 3:
                answer = f.as_bytes()
        if kind == _DIAL and dial is not None:
            return _decode_dial(dial)
        if kind == _DIAL_RESPONSE and answer is not None:
            return _decode_response(answer)
    except ProtobufError as exc:
        raise AutoNatError(f"malformed AutoNAT message: {exc}") from None
    raise AutoNatError(f"AutoNAT message of type {kind} without its body")


def _decode_dial(data: bytes) -> DialRequest:
    info = b""
    for f in iter_fields(data):
        if f.number == 1:
            info = f.as_bytes()
    peer_bytes, addrs = None, []
    for f in iter_fields(info):
        if f.number == 1:
            peer_bytes = f.as_bytes()
        elif f.number == 2 and len(addrs) < MAX_ADDRS:
            try:
                addrs.append(Multiaddr.from_bytes(f.as_bytes()))
            except MultiaddrError:
                continue  # a transport we do not know: not ours to dial
    if peer_bytes is None:
        raise AutoNatError("AutoNAT dial request without a peer id")
    try:
        peer = PeerId(peer_bytes)
    except PeerIdError as exc:
        raise AutoNatError(f"AutoNAT dial request with a bad peer id: {exc}") from None
    return DialRequest(peer, tuple(addrs))


def _decode_response(data: bytes) -> DialResponse:
    status, text, addr = None, "", None
    for f in iter_fields(data):
        if f.number == 1:
            status = f.as_int()
        elif f.number == 2:
            text = f.as_bytes()[:MAX_STATUS_TEXT].decode(errors="replace")
        elif f.number == 3:
            try:
                addr = Multiaddr.from_bytes(f.as_bytes())
            except MultiaddrError as exc:
                raise AutoNatError(f"AutoNAT response with a bad address: {exc}") from None
    try:
        return DialResponse(Status(status if status is not None else -1), text, addr)
    except ValueError:
        raise AutoNatError(f"AutoNAT response with unknown status {status}") from None


# -- addresses -----------------------------------------------------------------------------------------------------
_LAN_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8", "0.0.0.0/8",
    "fc00::/7", "fe80::/10", "::1/128", "::/128",
))


def is_lan_ip(ip: str) -> bool:
    """A loopback, link-local, private (RFC 1918, RFC 4193) or carrier-grade-NAT address: one a peer elsewhere on the
    internet cannot reach. Documentation ranges are not in it (a lab stands them in for the public internet)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return True
    return any(address in network for network in _LAN_NETWORKS if network.version == address.version)


def tcp_ip(addr: Multiaddr) -> tuple[str, int] | None:
    """(ip, port) of an /ip4|ip6/…/tcp/… address (optionally /p2p), None for any other shape (dns, circuits)."""
    try:
        host, port = addr.to_host_port()
    except MultiaddrError:
        return None
    if addr.value_for("ip4") is None and addr.value_for("ip6") is None:
        return None
    return host, port


def dialable(addrs: tuple[Multiaddr, ...], observed_ip: str, *, allow_lan: bool = False) -> list[Multiaddr]:
    """What a server may dial of a request: TCP addresses on the IP the request came from, never a LAN one (unless
    `allow_lan`, for tests on loopback), each once."""
    out: list[Multiaddr] = []
    for addr in addrs:
        parts = tcp_ip(addr)
        if parts is None or parts[0] != observed_ip or parts[1] == 0 or (is_lan_ip(parts[0]) and not allow_lan):
            continue
        bare = addr.without_p2p()
        if bare not in out:
            out.append(bare)
    return out


def candidates(listen: list[Multiaddr], observed_ips: list[str], mapped_ports: list[int], *,
               allow_lan: bool = False) -> list[Multiaddr]:
    """The addresses a client asks to be dialled back on: its listen addresses that are not LAN ones (any, with
    `allow_lan`: tests on loopback), and each IP peers saw it come from with each port it listens on or has mapped on
    its gateway (a port-preserving NAT or a mapping makes those work)."""
    out: list[Multiaddr] = []
    ports: list[int] = []
    for addr in listen:
        parts = tcp_ip(addr)
        if parts is None:
            continue
        ip, port = parts
        ports.append(port)
        if (allow_lan or not is_lan_ip(ip)) and ip not in ("0.0.0.0", "::"):
            out.append(addr.without_p2p())
    for ip in observed_ips:
        for port in [*mapped_ports, *ports]:
            addr = Multiaddr(f"/{'ip6' if ':' in ip else 'ip4'}/{ip}/tcp/{port}")
            if addr not in out:
                out.append(addr)
    return out[:MAX_ADDRS]


# -- the server's rate limits -------------------------------------------------------------------------------------
@dataclass
class DialBackLimiter:
    """At most `per_peer` requests from one peer and `total` from everyone in each `window` seconds (go-libp2p: 3 per
    peer and 30 overall a minute); at most `max_peers` peers remembered (memory stays bounded)."""

    per_peer: int = 3
    total: int = 30
    window: float = 60.0
    max_peers: int = 1024
    _recent: deque[float] = field(default_factory=deque)
    _by_peer: OrderedDict[PeerId, deque[float]] = field(default_factory=OrderedDict)

    @property
    def remembered(self) -> int:
        """How many peers' request times are kept (at most `max_peers`)."""
        return len(self._by_peer)

    def allow(self, peer: PeerId, now: float) -> bool:
        """Whether a request from `peer` at `now` may be served; counts it when it may."""
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        times = self._by_peer.get(peer)
        if times is not None:
            while times and times[0] <= now - self.window:
                times.popleft()
        if len(self._recent) >= self.total or (times is not None and len(times) >= self.per_peer):
            return False
        if times is None:
            times = self._by_peer[peer] = deque()
            while len(self._by_peer) > self.max_peers:
                self._by_peer.popitem(last=False)
        self._by_peer.move_to_end(peer)
        times.append(now)
        self._recent.append(now)
        return True


# -- the client's verdict -----------------------------------------------------------------------------------------
class Verdict(enum.Enum):
    UNKNOWN = "unknown"
    PUBLIC = "public"
    PRIVATE = "private"


@dataclass(frozen=True)
class Answer:
    server: PeerId
    reachable: bool
    addr: Multiaddr | None
    at: float


class Reachability:
    """The client's view: the latest definitive answer of each server (OK or E_DIAL_ERROR), answers older than `ttl`
    forgotten. The verdict is public (or private) when at least `quorum` servers say so and more say so than the
    opposite; its confidence is the share of the answers that agree."""

    def __init__(self, *, quorum: int = 2, ttl: float = 30 * 60.0, max_servers: int = 16) -> None:
        self.quorum = quorum
        self.ttl = ttl
        self.max_servers = max_servers
        self.answers: OrderedDict[PeerId, Answer] = OrderedDict()

    def record(self, server: PeerId, response: DialResponse, now: float) -> None:
        """Take one server's response; refusals and errors other than a failed dial say nothing about us."""
        if response.status not in (Status.OK, Status.E_DIAL_ERROR):
            return
        self.answers[server] = Answer(server, response.status is Status.OK, response.addr, now)
        self.answers.move_to_end(server)
        while len(self.answers) > self.max_servers:
            self.answers.popitem(last=False)

    def _current(self, now: float) -> list[Answer]:
        return [a for a in self.answers.values() if now - a.at <= self.ttl]

    def verdict(self, now: float) -> tuple[Verdict, float]:
        answers = self._current(now)
        public = sum(a.reachable for a in answers)
        private = len(answers) - public
        if public >= self.quorum and public > private:
            return Verdict.PUBLIC, public / len(answers)
        if private >= self.quorum and private > public:
            return Verdict.PRIVATE, private / len(answers)
        return Verdict.UNKNOWN, 0.0

    def confirmed(self, now: float) -> list[Multiaddr]:
        """The addresses servers reached us on: the ones worth advertising."""
        out: list[Multiaddr] = []
        for answer in self._current(now):
            if answer.reachable and answer.addr is not None and answer.addr not in out:
                out.append(answer.addr)
        return out
