"""Extension protocol messages (BEP 10), metadata exchange (BEP 9) and peer exchange (BEP 11), sans-I/O."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from peerloom.codec.bencode import BencodeError, decode, decode_prefix, encode
from peerloom.codec.compact import is_ipv6, pack_peers, unpack_peers
from peerloom.errors import ProtocolError

METADATA_PIECE = 16384
MAX_METADATA_SIZE = 64 * 1024 * 1024
MAX_PEX_PEERS = 200  # per list in one message; more are ignored
PEX_SEND_MAX = 50  # BEP 11: at most 50 added and 50 dropped per message
PEX_SEED = 0x02  # BEP 11 flag: the peer is a seed
PEX_UTP = 0x04  # BEP 11 flag: the peer supports uTP
PEX_REACHABLE = 0x10  # BEP 11 flag: we reached it by an outgoing connection
LOCAL_IDS = {"ut_pex": 1, "ut_metadata": 2, "ut_holepunch": 4}  # ut_holepunch: BEP 55 (torrent/holepunch.py)
"""The extension ids we advertise; peers send us these ids."""


class ExtensionError(ProtocolError):
    """A malformed or inconsistent extension message."""


def _dict(payload: bytes, what: str) -> dict[bytes, Any]:
    try:
        value = decode(payload, strict=False, max_depth=8)
    except BencodeError as exc:
        raise ExtensionError(f"{what}: {exc}") from exc
    if not isinstance(value, dict):
        raise ExtensionError(f"{what} is not a dictionary")
    return value


# -- BEP 10 handshake ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExtHandshake:
    ids: dict[str, int]
    client: str | None = None
    port: int | None = None
    reqq: int | None = None
    metadata_size: int | None = None
    yourip: bytes | None = None  # the receiver's IP as the sender sees it, 4 or 16 bytes
    upload_only: bool = False
    ipv6: bytes | None = None  # the sender's own IPv6 address, 16 bytes (BEP 10), where it takes IPv6 peers


def encode_ext_handshake(h: ExtHandshake) -> bytes:
    d: dict[bytes, Any] = {b"m": {k.encode(): v for k, v in h.ids.items()}}
    if h.client:
        d[b"v"] = h.client.encode()
    if h.port:
        d[b"p"] = h.port
    if h.reqq:
        d[b"reqq"] = h.reqq
    if h.metadata_size is not None:
        d[b"metadata_size"] = h.metadata_size
    if h.yourip:
        d[b"yourip"] = h.yourip
    if h.upload_only:
        d[b"upload_only"] = 1
    if h.ipv6:
        d[b"ipv6"] = h.ipv6
    return encode(d)


def _int(d: dict[bytes, Any], key: bytes, low: int, high: int) -> int | None:
    v = d.get(key)
    return v if type(v) is int and low <= v <= high else None


def parse_ext_handshake(payload: bytes) -> ExtHandshake:
    """Known keys of the wrong type are ignored (clients differ); `m` must be a dictionary."""
    d = _dict(payload, "extension handshake")
    m = d.get(b"m", {})
    if not isinstance(m, dict):
        raise ExtensionError("extension handshake 'm' is not a dictionary")
    ids = {}
    for k, v in list(m.items())[:64]:
        if type(v) is int and 0 <= v < 256:  # 0: the extension is disabled (it matters in a later handshake)
            ids[k.decode("utf-8", "replace")] = v
    client = d.get(b"v")
    yourip = d.get(b"yourip")
    ipv6 = d.get(b"ipv6")
    return ExtHandshake(
        ids=ids,
        client=client.decode("utf-8", "replace")[:100] if isinstance(client, bytes) else None,
        port=_int(d, b"p", 1, 65535),
        reqq=_int(d, b"reqq", 1, 1 << 20),
        metadata_size=_int(d, b"metadata_size", 1, 1 << 62),
        yourip=yourip if isinstance(yourip, bytes) and len(yourip) in (4, 16) else None,
        upload_only=d.get(b"upload_only") == 1,
        ipv6=ipv6 if isinstance(ipv6, bytes) and len(ipv6) == 16 else None,
    )


def update_ext_handshake(previous: ExtHandshake | None, h: ExtHandshake) -> ExtHandshake:
    """The peer's extensions after another handshake `h`. BEP 10: the handshake may be sent any number of times,
    and a later one holds only the changes: its `m` adds to the earlier ids, id 0 disables an extension, and
    fields it leaves out keep their values (a flag such as upload_only is as the latest handshake says)."""
    if previous is not None:
        h = ExtHandshake(
            ids={**previous.ids, **h.ids},
            client=h.client if h.client is not None else previous.client,
            port=h.port if h.port is not None else previous.port,
            reqq=h.reqq if h.reqq is not None else previous.reqq,
            metadata_size=h.metadata_size if h.metadata_size is not None else previous.metadata_size,
            yourip=h.yourip if h.yourip is not None else previous.yourip,
            upload_only=h.upload_only,
            ipv6=h.ipv6 if h.ipv6 is not None else previous.ipv6,
        )
    return replace(h, ids={name: i for name, i in h.ids.items() if i})


# -- BEP 9 metadata ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MetadataRequest:
    piece: int


@dataclass(frozen=True, slots=True)
class MetadataData:
    piece: int
    total_size: int
    data: bytes


@dataclass(frozen=True, slots=True)
class MetadataReject:
    piece: int


def encode_metadata(msg: MetadataRequest | MetadataData | MetadataReject) -> bytes:
    if isinstance(msg, MetadataRequest):
        return encode({b"msg_type": 0, b"piece": msg.piece})
    if isinstance(msg, MetadataData):
        return encode({b"msg_type": 1, b"piece": msg.piece, b"total_size": msg.total_size}) + msg.data
    return encode({b"msg_type": 2, b"piece": msg.piece})


def parse_metadata(payload: bytes) -> MetadataRequest | MetadataData | MetadataReject:
    try:
        d, end = decode_prefix(payload, max_depth=4)
    except BencodeError as exc:
        raise ExtensionError(f"metadata message: {exc}") from exc
    if not isinstance(d, dict):
        raise ExtensionError("metadata message is not a dictionary")
    kind = d.get(b"msg_type")
    piece = d.get(b"piece")
    if type(piece) is not int or not 0 <= piece < MAX_METADATA_SIZE // METADATA_PIECE:
        raise ExtensionError("metadata message without a valid piece number")
    if kind == 0:
        return MetadataRequest(piece)
    if kind == 2:
        return MetadataReject(piece)
    if kind == 1:
        total = d.get(b"total_size")
        data = payload[end:]
        if type(total) is not int or not 0 < total <= MAX_METADATA_SIZE or len(data) > METADATA_PIECE:
            raise ExtensionError("metadata data message with a bad size")
        return MetadataData(piece, total, bytes(data))
    raise ExtensionError(f"unknown metadata message type {kind!r}")


class MetadataAssembler:
    """Collects the info dictionary of a magnet link from peers and checks it against the info-hash(es)."""

    def __init__(self, *, info_hash_v1: bytes | None, info_hash_v2: bytes | None) -> None:
        if info_hash_v1 is None and info_hash_v2 is None:
            raise ValueError("an info-hash is needed")
        self.info_hash_v1 = info_hash_v1
        self.info_hash_v2 = info_hash_v2
        self.size: int | None = None
        self.done = False
        self._pieces: dict[int, bytes] = {}
        self._asked: set[int] = set()
        self._next = 0

    @property
    def num_pieces(self) -> int:
        return -(-(self.size or 0) // METADATA_PIECE)

    def set_size(self, size: int) -> None:
        if not 0 < size <= MAX_METADATA_SIZE:
            raise ExtensionError(f"metadata size {size} out of range")
        if self.size is None:
            self.size = size
        elif size != self.size:
            raise ExtensionError("metadata size differs from what other peers said")

    def next_request(self) -> int | None:
        n = self.num_pieces
        if self.done or not n:
            return None
        for k in range(n):
            piece = (self._next + k) % n
            if piece not in self._pieces and piece not in self._asked:
                self._asked.add(piece)
                self._next = piece + 1
                return piece
        return None

    def release(self, piece: int) -> None:
        self._asked.discard(piece)

    def receive(self, piece: int, data: bytes) -> bytes | None:
        if self.done or self.size is None:
            return None
        n = self.num_pieces
        if not 0 <= piece < n:
            raise ExtensionError(f"metadata piece {piece} out of range")
        expected = METADATA_PIECE if piece < n - 1 else self.size - METADATA_PIECE * (n - 1)
        if len(data) != expected:
            raise ExtensionError(f"metadata piece {piece} has {len(data)} bytes, expected {expected}")
        self._asked.discard(piece)
        self._pieces[piece] = data
        if len(self._pieces) < n:
            return None
        info = b"".join(self._pieces[i] for i in range(n))
        ok = (self.info_hash_v1 is None or hashlib.sha1(info).digest() == self.info_hash_v1) and (
            self.info_hash_v2 is None or hashlib.sha256(info).digest() == self.info_hash_v2
        )
        if not ok:
            self._pieces.clear()
            self._asked.clear()
            raise ExtensionError("metadata does not match the info-hash")
        self.done = True
        return info


# -- BEP 11 peer exchange --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PexMessage:
    added: list[tuple[str, int]] = field(default_factory=list)
    added_flags: list[int] = field(default_factory=list)
    dropped: list[tuple[str, int]] = field(default_factory=list)


def _uncompact(data: Any, v6: bool) -> list[tuple[str, int]]:
    if data is None:
        return []
    if not isinstance(data, bytes):
        raise ExtensionError("malformed compact peer list")
    try:
        return unpack_peers(data, v6, MAX_PEX_PEERS)
    except ValueError as exc:
        raise ExtensionError(f"malformed compact peer list: {exc}") from exc


def encode_pex(msg: PexMessage) -> bytes:
    flags = dict(zip(msg.added, msg.added_flags, strict=False))
    d: dict[bytes, Any] = {}
    for v6, suffix in ((False, b""), (True, b"6")):
        added = [p for p in msg.added if is_ipv6(p[0]) == v6]
        d[b"added" + suffix] = pack_peers(added, v6)
        d[b"added" + suffix + b".f"] = bytes(flags.get(p, 0) & 0xFF for p in added)
        dropped = [p for p in msg.dropped if is_ipv6(p[0]) == v6]
        d[b"dropped" + suffix] = pack_peers(dropped, v6)
    return encode(d)


def _added(d: dict[bytes, Any], v6: bool) -> tuple[list[tuple[str, int]], list[int]]:
    """The added peers of one family and their flags. The n-th flag belongs to the n-th entry as sent,
    so entries that `unpack_peers` skips (port 0) must be skipped in the flags too."""
    key = b"added6" if v6 else b"added"
    data = d.get(key)
    peers = _uncompact(data, v6)
    flags = d.get(key + b".f")
    if not isinstance(flags, bytes):
        flags = b""
    size = 18 if v6 else 6
    sent = range(min(len(data or b""), size * MAX_PEX_PEERS) // size)
    kept = [i for i in sent if data[i * size + size - 2 : i * size + size] != b"\x00\x00"]
    return peers, [flags[i] if i < len(flags) else 0 for i in kept]


def parse_pex(payload: bytes) -> PexMessage:
    d = _dict(payload, "peer exchange message")
    added, flags = _added(d, False)
    added6, flags6 = _added(d, True)
    dropped = _uncompact(d.get(b"dropped"), False) + _uncompact(d.get(b"dropped6"), True)
    return PexMessage(added + added6, flags + flags6, dropped)


class PexState:
    """What we told one peer, so each message carries only the changes (BEP 11)."""

    def __init__(self) -> None:
        self.sent: set[tuple[str, int]] = set()
        self.last_sent = -math.inf  # monotonic time of the last message: none yet

    def update(
        self, connected: set[tuple[str, int]], flags: Mapping[tuple[str, int], int] | None = None
    ) -> PexMessage | None:
        """The message telling the peer what changed since the last one (None: nothing did).
        `flags` gives the BEP 11 flags of a connected peer (PEX_SEED, PEX_UTP, PEX_REACHABLE)."""
        added = sorted(connected - self.sent)[:PEX_SEND_MAX]
        dropped = sorted(self.sent - connected)[:PEX_SEND_MAX]
        if not added and not dropped:
            return None
        self.sent.update(added)
        self.sent.difference_update(dropped)
        flags = flags or {}
        return PexMessage(added, [flags.get(a, 0) for a in added], dropped)
