"""Signed peer records in the Mainline DHT (BEP 44), sans-I/O: a PeerId alone resolves to its addresses.

Like pkarr, a node stores its current secure-layer addresses as a BEP 44 *mutable* item under its own Ed25519 key,
which is also its identity (an Ed25519 PeerId inlines the public key: peer-ids spec, "Peer Ids"), so whoever knows
the PeerId knows where to look and can check the signature:

- key: the node's 32-byte Ed25519 public key; salt: `SALT` = b"peerloom-peer" (BEP 44 "salt": other items under
  the same key, with other salts, never collide with the peer record);
- value `v`: the bencoded dict `{"a": [binary multiaddr, ...], "t": unix time in seconds}`; the addresses are the
  transport part (no /p2p/: the key names the peer), at most `MAX_RECORD_ADDRS`, and the whole value at most
  BEP 44's 1000 bytes (addresses that would not fit are left out, the first ones kept); unknown keys are ignored
  so later versions may add some;
- seq: unix time in seconds, never lower than (and, once published, always above) the last one used, so a newer
  record always wins and a replayed older one is refused (BEP 44 "seq").

Which addresses are published (`publishable`): never an unspecified (0.0.0.0, ::), multicast or link-local one; a
loopback address only when every address the node listens on is loopback (a node on 127.0.0.1 is a test or a
demo whose DHT is loopback too; a node also reachable elsewhere must not tell the world to dial 127.0.0.1).
Private LAN addresses are published: peers on the same LAN reach them, others fail fast and back off.

Items expire from storing nodes (BEP 44 suggests two hours), so `RecordPublisher` says when to publish: at start,
whenever the addresses change, and every `REPUBLISH_INTERVAL`; after a failed put, or one that fewer than
`WELL_STORED` nodes took, again after `RETRY_INTERVAL`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from peerloom.codec import bencode
from peerloom.codec.multiaddr import MAX_MULTIADDR_BYTES, Multiaddr, MultiaddrError
from peerloom.dht.bep44 import MAX_SEQ, MAX_VALUE, verify_mutable
from peerloom.errors import ProtocolError
from peerloom.identity import KeyEncodingError, PeerId, PeerIdError

SALT = b"peerloom-peer"
MAX_RECORD_ADDRS = 16
REPUBLISH_INTERVAL = 30 * 60.0
RETRY_INTERVAL = 60.0
WELL_STORED = 4  # storing nodes below which a put is soon repeated (BEP 44 puts go to the 8 closest)


class PeerRecordError(ProtocolError):
    """A peer record that cannot be trusted or read: wrong key or salt, bad signature, stale, malformed."""


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A verified record: `addrs` each end in /p2p/`peer`."""

    peer: PeerId
    addrs: tuple[Multiaddr, ...]
    timestamp: int
    seq: int


def record_key(peer: PeerId) -> bytes:
    """The 32-byte Ed25519 public key a PeerId inlines: where its record lives. PeerRecordError for a PeerId that
    inlines no Ed25519 key (a SHA-256 PeerId of an RSA key has no record)."""
    try:
        key = peer.extract_public_key()
    except (KeyEncodingError, PeerIdError) as exc:
        raise PeerRecordError(f"{peer} has no Ed25519 key: {exc}") from None
    if key is None:
        raise PeerRecordError(f"{peer} does not inline its public key: it has no peer record")
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def encode_value(addrs: Iterable[Multiaddr], timestamp: int) -> bytes:
    """The bencoded record value: as many of `addrs` (without /p2p/) as fit in MAX_VALUE bytes, in order."""
    kept: list[bytes] = []
    for addr in addrs:
        raw = (addr.without_p2p() if addr.peer_id is not None else addr).to_bytes()
        if raw in kept:
            continue
        if len(kept) == MAX_RECORD_ADDRS or len(bencode.encode({b"a": [*kept, raw], b"t": timestamp})) > MAX_VALUE:
            break
        kept.append(raw)
    return bencode.encode({b"a": kept, b"t": timestamp})


def decode_value(peer: PeerId, raw: bytes) -> tuple[tuple[Multiaddr, ...], int]:
    """The addresses (each ending in /p2p/`peer`) and timestamp of a record value; PeerRecordError if malformed,
    oversized, or naming another peer."""
    if len(raw) > MAX_VALUE:
        raise PeerRecordError(f"a peer record is at most {MAX_VALUE} bytes, not {len(raw)}")
    try:
        value = bencode.decode(raw, max_depth=2)
    except bencode.BencodeError as exc:
        raise PeerRecordError(f"peer record is not bencode: {exc}") from None
    if not isinstance(value, dict):
        raise PeerRecordError("a peer record is a dictionary")
    listed, timestamp = value.get(b"a"), value.get(b"t")
    if not isinstance(listed, list) or not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_SEQ:
        raise PeerRecordError("a peer record has an address list 'a' and a timestamp 't'")
    if len(listed) > MAX_RECORD_ADDRS:
        raise PeerRecordError(f"a peer record lists at most {MAX_RECORD_ADDRS} addresses, not {len(listed)}")
    suffix = Multiaddr(f"/p2p/{peer}")
    addrs: list[Multiaddr] = []
    for item in listed:
        if not isinstance(item, bytes) or len(item) > MAX_MULTIADDR_BYTES:
            raise PeerRecordError("a peer record's address is a binary multiaddr")
        try:
            addr = Multiaddr.from_bytes(item)
        except MultiaddrError as exc:
            raise PeerRecordError(f"bad address in peer record: {exc}") from None
        if addr.peer_id is not None and addr.peer_id != peer:
            raise PeerRecordError(f"peer record of {peer} lists an address of {addr.peer_id}")
        addr = addr if addr.peer_id is not None else addr.encapsulate(suffix)
        if addr not in addrs:
            addrs.append(addr)
    return tuple(addrs), timestamp


def open_record(peer: PeerId, key: bytes, signature: bytes, raw: bytes, seq: int, salt: bytes, *,
                min_seq: int | None = None) -> PeerRecord:
    """Check a BEP 44 item as `peer`'s record (its key, our salt, the signature, a seq not below `min_seq`: the
    last one seen of that peer) and decode it; PeerRecordError names what is wrong."""
    if key != record_key(peer):
        raise PeerRecordError(f"the record is signed by another key than {peer}'s")
    if salt != SALT:
        raise PeerRecordError("the item is not a peer record (wrong salt)")
    if not 0 <= seq <= MAX_SEQ:
        raise PeerRecordError(f"sequence number out of range: {seq}")
    if not verify_mutable(key, signature, raw, seq, salt):
        raise PeerRecordError(f"the record's signature is not {peer}'s")
    if min_seq is not None and seq < min_seq:
        raise PeerRecordError(f"stale peer record: seq {seq}, already seen {min_seq}")
    addrs, timestamp = decode_value(peer, raw)
    return PeerRecord(peer, addrs, timestamp, seq)


def next_seq(last: int | None, now: float) -> int:
    """The seq of the next record: the current unix time in seconds, and above the last one used."""
    seq = int(now)
    return seq if last is None or seq > last else last + 1


def publishable(addrs: Sequence[Multiaddr]) -> list[Multiaddr]:
    """The addresses worth publishing (see the module docstring): loopback only when all of `addrs` are."""
    hosts = [_ip(a) for a in addrs]
    all_loopback = bool(addrs) and all(ip is not None and ip.is_loopback for ip in hosts)
    kept = []
    for addr, ip in zip(addrs, hosts, strict=True):
        if ip is not None and (ip.is_unspecified or ip.is_multicast or ip.is_link_local):
            continue
        if ip is not None and ip.is_loopback and not all_loopback:
            continue
        kept.append(addr)
    return kept


def _ip(addr: Multiaddr) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = addr.value_for("ip4") or addr.value_for("ip6")
    return ipaddress.ip_address(text) if text else None


class RecordPublisher:
    """When to publish the record (sans-I/O): `update` the addresses, ask `due(now)`, build the item with
    `make(now)`, and report `published(now)` or `failed(now)`; the driver sleeps until `next_wakeup()`."""

    def __init__(self, *, interval: float = REPUBLISH_INTERVAL, retry: float = RETRY_INTERVAL) -> None:
        self.interval = interval
        self.retry = retry
        self.addrs: tuple[Multiaddr, ...] = ()
        self.last_seq: int | None = None
        self.published_addrs: tuple[Multiaddr, ...] | None = None
        self._next: float | None = None

    def update(self, addrs: Sequence[Multiaddr], now: float) -> None:
        """The node's current addresses (all of them: `publishable` picks); a change makes a publish due now."""
        addrs = tuple(publishable(addrs))
        if addrs != self.addrs or self._next is None:
            self.addrs = addrs
            self._next = now

    def due(self, now: float) -> bool:
        return bool(self.addrs) and self._next is not None and now >= self._next

    def make(self, now: float) -> tuple[bytes, int]:
        """The value and seq of the record to put now (the seq is taken: a retry uses a higher one)."""
        self.last_seq = next_seq(self.last_seq, now)
        return encode_value(self.addrs, int(now)), self.last_seq

    def published(self, now: float, stored: int = WELL_STORED) -> None:
        """The put succeeded on `stored` nodes: publish again after `interval`, or after `retry` when fewer than
        WELL_STORED nodes took it (a node that has only just joined knows few of the nodes closest to its key)."""
        self.published_addrs = self.addrs
        self._next = now + (self.interval if stored >= WELL_STORED else self.retry)

    def failed(self, now: float) -> None:
        self._next = now + self.retry

    def next_wakeup(self) -> float | None:
        return self._next if self.addrs else None
