"""KRPC, the message layer of the Mainline DHT (BEP 5), with the fields of BEP 32 (IPv6), 42 (`ip`), 43 (`ro`),
44 (get/put) and 51 (sample_infohashes): typed messages, `encode`, and a strict, bounded `decode`.

`decode` raises `KrpcError` on anything malformed. The error carries the transaction id when it could be read and
whether the packet was a query, so a node can answer 203 (or 204 for an unknown method) instead of staying silent.

Values of BEP 44 items (`Put.value`, `Response.value`) are kept in their bencoded form: that is what gets hashed and
signed. The decoder stores the canonical encoding of what it read, which is the verbatim input for any well-formed
(sorted, BEP 3) value.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, ClassVar

from peerloom.codec import bencode
from peerloom.codec.bencode import BencodeError
from peerloom.codec.compact import pack_peers, unpack_peers
from peerloom.errors import ProtocolError

Address = tuple[str, int]
"""A UDP endpoint: (IP address text, port)."""

NodeInfo = tuple[bytes, str, int]
"""A node's contact: (20-byte node id, IP address text, port)."""

MAX_PACKET = 4096  # BEP 32: nodes send at most 1024 bytes and should accept more; far more is not a DHT packet
MAX_DEPTH = 16  # a `v` may nest, but nothing in KRPC needs deep nesting
MAX_TRANSACTION_ID = 16
MAX_TOKEN = 64
MAX_CLIENT_VERSION = 32
MAX_NODES = 16  # BEP 5 answers carry K = 8 nodes; entries past this bound are ignored
MAX_VALUES = 100
MAX_SAMPLES = 100  # BEP 51: as many 20-byte hashes as fit in a packet
MAX_WANT = 4
MAX_ERROR_TEXT = 256
MAX_SEQ = 2**63 - 1  # BEP 44: sequence numbers fit in a signed 64-bit integer
ID_LEN = 20
KEY_LEN = 32
SIGNATURE_LEN = 64

ERROR_GENERIC = 201
ERROR_SERVER = 202
ERROR_PROTOCOL = 203
ERROR_METHOD_UNKNOWN = 204
ERROR_VALUE_TOO_BIG = 205  # BEP 44
ERROR_BAD_SIGNATURE = 206
ERROR_SALT_TOO_BIG = 207
ERROR_CAS_MISMATCH = 301
ERROR_SEQ_TOO_LOW = 302


class KrpcError(ProtocolError):
    """A packet that is not a valid KRPC message.

    `transaction_id` is the packet's `t` when it could be read, `query` whether it was a query, and `code` the KRPC
    error code to answer with (203 malformed, 204 unknown method).
    """

    def __init__(
        self, message: str, transaction_id: bytes | None = None, *, query: bool = False, code: int = ERROR_PROTOCOL
    ) -> None:
        super().__init__(f"KRPC: {message}")
        self.transaction_id = transaction_id
        self.query = query
        self.code = code

    @property
    def answerable(self) -> bool:
        """Whether the sender should get an error reply: only a query whose transaction id we could read."""
        return self.query and self.transaction_id is not None


# -- compact addresses and node infos (BEP 5, BEP 32) -------------------------------------------------------------
def pack_address(addr: Address) -> bytes:
    """The 6-byte (IPv4) or 18-byte (IPv6) compact form of an address; ValueError if it is not one."""
    host, port = addr
    if not 0 <= port < 65536:
        raise ValueError(f"port out of range: {port}")
    try:
        raw = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except (OSError, TypeError) as exc:
        raise ValueError(f"not an IP address: {host!r}") from exc
    return raw + port.to_bytes(2, "big")


def unpack_address(data: bytes) -> Address:
    """The address in a 6- or 18-byte compact form (no validation of the length beyond 4 vs 16 address bytes)."""
    if len(data) == 6:
        return socket.inet_ntoa(data[:4]), (data[4] << 8) | data[5]
    return socket.inet_ntop(socket.AF_INET6, data[:16]), (data[16] << 8) | data[17]


def pack_nodes(nodes: tuple[NodeInfo, ...] | list[NodeInfo], v6: bool) -> bytes:
    """Compact node infos, 26 bytes each for IPv4 (`nodes`) or 38 for IPv6 (`nodes6`); ValueError for a node id that
    is not 20 bytes or an address of the other family."""
    size = 38 if v6 else 26
    out = []
    for node_id, host, port in nodes:
        entry = node_id + pack_address((host, port))
        if len(entry) != size:
            raise ValueError(f"node {host}:{port} does not fit a {size}-byte compact node info")
        out.append(entry)
    return b"".join(out)


def unpack_nodes(data: bytes, v6: bool, limit: int = MAX_NODES) -> tuple[NodeInfo, ...]:
    """At most `limit` node infos; entries with port 0 are skipped. ValueError when the length is not a whole number
    of entries."""
    size = 38 if v6 else 26
    if len(data) % size:
        raise ValueError(f"compact node list of {len(data)} bytes is not a multiple of {size}")
    out = []
    for i in range(0, min(len(data), size * limit), size):
        port = (data[i + size - 2] << 8) | data[i + size - 1]
        if port:
            raw = data[i + 20 : i + size - 2]
            host = socket.inet_ntop(socket.AF_INET6, raw) if v6 else socket.inet_ntoa(raw)
            out.append((data[i : i + 20], host, port))
    return tuple(out)


# -- messages ----------------------------------------------------------------------------------------------------
@dataclass(slots=True, kw_only=True)
class Query:
    """A KRPC query; `node_id` is the querying node's id, `read_only` the BEP 43 `ro` flag."""

    METHOD: ClassVar[bytes] = b""

    t: bytes
    node_id: bytes
    read_only: bool = False
    client_version: bytes | None = None

    def _args(self, args: dict[bytes, Any]) -> None:
        """Add this query's own arguments to the `a` dictionary."""


@dataclass(slots=True, kw_only=True)
class Ping(Query):
    METHOD: ClassVar[bytes] = b"ping"


@dataclass(slots=True, kw_only=True)
class FindNode(Query):
    METHOD: ClassVar[bytes] = b"find_node"
    target: bytes
    want: tuple[bytes, ...] = ()  # BEP 32: b"n4" and/or b"n6"

    def _args(self, args: dict[bytes, Any]) -> None:
        args[b"target"] = self.target
        if self.want:
            args[b"want"] = list(self.want)


@dataclass(slots=True, kw_only=True)
class GetPeers(Query):
    METHOD: ClassVar[bytes] = b"get_peers"
    info_hash: bytes
    want: tuple[bytes, ...] = ()

    def _args(self, args: dict[bytes, Any]) -> None:
        args[b"info_hash"] = self.info_hash
        if self.want:
            args[b"want"] = list(self.want)


@dataclass(slots=True, kw_only=True)
class AnnouncePeer(Query):
    """BEP 5 announce; with `implied_port` the receiver uses the packet's source port instead of `port`."""

    METHOD: ClassVar[bytes] = b"announce_peer"
    info_hash: bytes
    port: int
    token: bytes
    implied_port: bool = False

    def _args(self, args: dict[bytes, Any]) -> None:
        args[b"info_hash"] = self.info_hash
        args[b"port"] = self.port
        args[b"token"] = self.token
        if self.implied_port:
            args[b"implied_port"] = 1


@dataclass(slots=True, kw_only=True)
class Get(Query):
    """BEP 44 get; with `seq`, the item is only wanted if its sequence number is greater."""

    METHOD: ClassVar[bytes] = b"get"
    target: bytes
    seq: int | None = None

    def _args(self, args: dict[bytes, Any]) -> None:
        args[b"target"] = self.target
        if self.seq is not None:
            args[b"seq"] = self.seq


@dataclass(slots=True, kw_only=True)
class Put(Query):
    """BEP 44 put: immutable when `key` is None, else mutable (`key`, `signature`, `seq`, optional `salt`, `cas`).
    `value` is the bencoded `v`."""

    METHOD: ClassVar[bytes] = b"put"
    token: bytes
    value: bytes
    key: bytes | None = None
    signature: bytes | None = None
    seq: int | None = None
    cas: int | None = None
    salt: bytes = b""

    def _args(self, args: dict[bytes, Any]) -> None:
        args[b"token"] = self.token
        args[b"v"] = bencode.decode(self.value)
        if self.key is not None:
            args[b"k"] = self.key
            args[b"sig"] = self.signature
            args[b"seq"] = self.seq
            if self.salt:
                args[b"salt"] = self.salt
            if self.cas is not None:
                args[b"cas"] = self.cas


@dataclass(slots=True, kw_only=True)
class SampleInfohashes(Query):
    METHOD: ClassVar[bytes] = b"sample_infohashes"
    target: bytes

    def _args(self, args: dict[bytes, Any]) -> None:
        args[b"target"] = self.target


@dataclass(slots=True, kw_only=True)
class Response:
    """A KRPC response. Which fields are set depends on the query it answers (the transaction tells which);
    `ip` is the BEP 42 echo of the querying node's address."""

    t: bytes
    node_id: bytes
    nodes: tuple[NodeInfo, ...] = ()
    nodes6: tuple[NodeInfo, ...] = ()
    values: tuple[Address, ...] = ()
    token: bytes | None = None
    value: bytes | None = None  # BEP 44 `v`, bencoded
    key: bytes | None = None
    signature: bytes | None = None
    seq: int | None = None
    samples: tuple[bytes, ...] | None = None  # BEP 51
    interval: int | None = None
    num: int | None = None
    ip: Address | None = None
    client_version: bytes | None = None


@dataclass(slots=True, kw_only=True)
class ErrorMessage:
    """A KRPC error (`y` = `e`): a code (201..204, BEP 44 205..302) and a text."""

    t: bytes
    code: int
    message: str = ""
    ip: Address | None = None
    client_version: bytes | None = None


Message = Query | Response | ErrorMessage

QUERY_TYPES: dict[bytes, type[Query]] = {
    cls.METHOD: cls for cls in (Ping, FindNode, GetPeers, AnnouncePeer, Get, Put, SampleInfohashes)
}


# -- encoding ----------------------------------------------------------------------------------------------------
def encode(msg: Message) -> bytes:
    """The bencoded packet for `msg`."""
    out: dict[bytes, Any] = {b"t": msg.t}
    if isinstance(msg, Query):
        args: dict[bytes, Any] = {b"id": msg.node_id}
        msg._args(args)
        out[b"y"] = b"q"
        out[b"q"] = msg.METHOD
        out[b"a"] = args
        if msg.read_only:
            out[b"ro"] = 1
    elif isinstance(msg, Response):
        out[b"y"] = b"r"
        out[b"r"] = _response_dict(msg)
        if msg.ip is not None:
            out[b"ip"] = pack_address(msg.ip)
    else:
        out[b"y"] = b"e"
        out[b"e"] = [msg.code, msg.message.encode("utf-8")]
        if msg.ip is not None:
            out[b"ip"] = pack_address(msg.ip)
    if msg.client_version is not None:
        out[b"v"] = msg.client_version
    return bencode.encode(out)


def _response_dict(msg: Response) -> dict[bytes, Any]:
    r: dict[bytes, Any] = {b"id": msg.node_id}
    if msg.nodes:
        r[b"nodes"] = pack_nodes(msg.nodes, False)
    if msg.nodes6:
        r[b"nodes6"] = pack_nodes(msg.nodes6, True)
    if msg.values:
        r[b"values"] = [pack_peers([peer], ":" in peer[0]) for peer in msg.values]
    if msg.token is not None:
        r[b"token"] = msg.token
    if msg.value is not None:
        r[b"v"] = bencode.decode(msg.value)
    if msg.key is not None:
        r[b"k"] = msg.key
    if msg.signature is not None:
        r[b"sig"] = msg.signature
    if msg.seq is not None:
        r[b"seq"] = msg.seq
    if msg.samples is not None:
        r[b"samples"] = b"".join(msg.samples)
    if msg.interval is not None:
        r[b"interval"] = msg.interval
    if msg.num is not None:
        r[b"num"] = msg.num
    return r


# -- decoding ----------------------------------------------------------------------------------------------------
def decode(data: bytes) -> Message:
    """Parse one KRPC packet; KrpcError on anything malformed.

    Dict keys need not be sorted (some clients do not sort them); every field we use is type- and length-checked,
    lists are bounded, and fields we do not know are ignored.
    """
    if len(data) > MAX_PACKET:
        raise KrpcError(f"packet of {len(data)} bytes is larger than {MAX_PACKET}")
    try:
        msg = bencode.decode(data, strict=False, max_depth=MAX_DEPTH)
    except BencodeError as exc:
        raise KrpcError(f"not bencode ({exc})") from None
    if type(msg) is not dict:
        raise KrpcError("packet is not a dictionary")
    t = msg.get(b"t")
    if type(t) is not bytes or len(t) > MAX_TRANSACTION_ID:
        raise KrpcError("missing or oversized transaction id")
    version = msg.get(b"v")
    if type(version) is not bytes or len(version) > MAX_CLIENT_VERSION:
        version = None  # optional and informative only: a malformed one is dropped, not fatal
    kind = msg.get(b"y")
    if kind == b"q":
        return _decode_query(msg, t, version)
    if kind == b"r":
        return _decode_response(msg, t, version)
    if kind == b"e":
        return _decode_error(msg, t, version)
    raise KrpcError("unknown message type", t)


def _decode_query(msg: dict[bytes, Any], t: bytes, version: bytes | None) -> Query:
    method = msg.get(b"q")
    args = msg.get(b"a")
    if type(method) is not bytes:
        raise KrpcError("query without a method name", t, query=True)
    if type(args) is not dict:
        raise KrpcError("query without arguments", t, query=True)
    cls = QUERY_TYPES.get(method)
    if cls is None:
        raise KrpcError(f"unknown method {method[:32]!r}", t, query=True, code=ERROR_METHOD_UNKNOWN)
    fields = _Fields(args, t, True)
    common: dict[str, Any] = {
        "t": t,
        "node_id": fields.id20(b"id"),
        "read_only": msg.get(b"ro") == 1,
        "client_version": version,
    }
    if cls is Ping:
        return Ping(**common)
    if cls is FindNode:
        return FindNode(**common, target=fields.id20(b"target"), want=fields.want())
    if cls is GetPeers:
        return GetPeers(**common, info_hash=fields.id20(b"info_hash"), want=fields.want())
    if cls is AnnouncePeer:
        implied = fields.integer(b"implied_port", 0, 1, required=False) == 1
        port = fields.integer(b"port", 0, 65535, required=not implied)
        return AnnouncePeer(**common, info_hash=fields.id20(b"info_hash"), port=port or 0,
                            token=fields.string(b"token", MAX_TOKEN), implied_port=implied)
    if cls is Get:
        return Get(**common, target=fields.id20(b"target"), seq=fields.integer(b"seq", 0, MAX_SEQ, required=False))
    if cls is Put:
        return _decode_put(fields, common)
    return SampleInfohashes(**common, target=fields.id20(b"target"))


def _decode_put(fields: _Fields, common: dict[str, Any]) -> Put:
    token = fields.string(b"token", MAX_TOKEN)
    value = fields.value()
    if value is None:
        raise fields.error("put without a value")
    key = fields.string(b"k", KEY_LEN, required=False, exact=True)
    if key is None:
        return Put(**common, token=token, value=value)
    return Put(
        **common,
        token=token,
        value=value,
        key=key,
        signature=fields.string(b"sig", SIGNATURE_LEN, exact=True),
        seq=fields.integer(b"seq", 0, MAX_SEQ),
        cas=fields.integer(b"cas", 0, MAX_SEQ, required=False),
        salt=fields.string(b"salt", MAX_PACKET, required=False) or b"",  # BEP 44 limits are the storer's to check
    )


def _decode_response(msg: dict[bytes, Any], t: bytes, version: bytes | None) -> Response:
    r = msg.get(b"r")
    if type(r) is not dict:
        raise KrpcError("response without a result dictionary", t)
    fields = _Fields(r, t, False)
    samples = fields.string(b"samples", MAX_PACKET, required=False)
    if samples is not None and len(samples) % ID_LEN:
        raise fields.error("samples is not a whole number of info-hashes")
    key = fields.string(b"k", KEY_LEN, required=False, exact=True)
    return Response(
        t=t,
        node_id=fields.id20(b"id"),
        nodes=fields.nodes(b"nodes", False),
        nodes6=fields.nodes(b"nodes6", True),
        values=fields.values(),
        token=fields.string(b"token", MAX_TOKEN, required=False),
        value=fields.value(),
        key=key,
        signature=fields.string(b"sig", SIGNATURE_LEN, required=False, exact=True),
        seq=fields.integer(b"seq", 0, MAX_SEQ, required=False),
        samples=None if samples is None else tuple(
            samples[i : i + ID_LEN] for i in range(0, min(len(samples), ID_LEN * MAX_SAMPLES), ID_LEN)
        ),
        interval=fields.integer(b"interval", 0, 2**31 - 1, required=False),
        num=fields.integer(b"num", 0, 2**63 - 1, required=False),
        ip=_ip_field(msg),
        client_version=version,
    )


def _decode_error(msg: dict[bytes, Any], t: bytes, version: bytes | None) -> ErrorMessage:
    body = msg.get(b"e")
    if type(body) is not list or not body or type(body[0]) is not int:
        raise KrpcError("error without a code", t)
    code = body[0]
    if not 0 <= code < 1000:
        raise KrpcError(f"error code {code} out of range", t)
    text = body[1] if len(body) > 1 and type(body[1]) is bytes else b""
    return ErrorMessage(t=t, code=code, message=text[:MAX_ERROR_TEXT].decode("utf-8", "replace"), ip=_ip_field(msg),
                        client_version=version)


def _ip_field(msg: dict[bytes, Any]) -> Address | None:
    """BEP 42 `ip`: our address as the other side sees it. Informative only, so a malformed one is ignored."""
    raw = msg.get(b"ip")
    if type(raw) is bytes and len(raw) in (6, 18):
        return unpack_address(raw)
    return None


class _Fields:
    """Typed, bounded access to one argument or result dictionary; every failure is a KrpcError."""

    __slots__ = ("d", "query", "t")

    def __init__(self, d: dict[bytes, Any], t: bytes, query: bool) -> None:
        self.d = d
        self.t = t
        self.query = query

    def error(self, message: str) -> KrpcError:
        return KrpcError(message, self.t, query=self.query)

    def id20(self, key: bytes) -> bytes:
        value = self.d.get(key)
        if type(value) is not bytes or len(value) != ID_LEN:
            raise self.error(f"{key.decode()} must be a {ID_LEN}-byte string")
        return value

    def string(self, key: bytes, limit: int, *, required: bool = True, exact: bool = False) -> Any:
        value = self.d.get(key)
        if value is None and not required:
            return None
        if type(value) is not bytes or len(value) > limit or (exact and len(value) != limit):
            size = f"exactly {limit}" if exact else f"at most {limit}"
            raise self.error(f"{key.decode()} must be a string of {size} bytes")
        return value

    def integer(self, key: bytes, low: int, high: int, *, required: bool = True) -> Any:
        value = self.d.get(key)
        if value is None and not required:
            return None
        if type(value) is not int or not low <= value <= high:
            raise self.error(f"{key.decode()} must be an integer in {low}..{high}")
        return value

    def want(self) -> tuple[bytes, ...]:
        value = self.d.get(b"want")
        if value is None:
            return ()
        if type(value) is not list:
            raise self.error("want must be a list")
        return tuple(item for item in value[:MAX_WANT] if type(item) is bytes and len(item) <= 8)

    def value(self) -> bytes | None:
        value = self.d.get(b"v")
        return None if value is None else bencode.encode(value)

    def nodes(self, key: bytes, v6: bool) -> tuple[NodeInfo, ...]:
        value = self.d.get(key)
        if value is None:
            return ()
        if type(value) is not bytes:
            raise self.error(f"{key.decode()} must be a string")
        try:
            return unpack_nodes(value, v6)
        except ValueError as exc:
            raise self.error(str(exc)) from None

    def values(self) -> tuple[Address, ...]:
        value = self.d.get(b"values")
        if value is None:
            return ()
        if type(value) is not list:
            raise self.error("values must be a list")
        v4: list[bytes] = []
        v6: list[bytes] = []
        for entry in value:
            if type(entry) is not bytes or len(entry) not in (6, 18):
                raise self.error("values entries must be 6- or 18-byte compact peers")
            if len(v4) + len(v6) < MAX_VALUES:
                (v4 if len(entry) == 6 else v6).append(entry)
        return tuple(unpack_peers(b"".join(v4), False, MAX_VALUES) + unpack_peers(b"".join(v6), True, MAX_VALUES))
