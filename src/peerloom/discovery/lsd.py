"""Local Service Discovery (BEP 14), sans-I/O: the BT-SEARCH announce and a schedule of what to announce when.

An announce is an HTTP-like request sent over UDP multicast to 239.192.152.143:6771 (IPv4) or
[ff15::efc0:988f]:6771 (IPv6):

    BT-SEARCH * HTTP/1.1\\r\\n
    Host: 239.192.152.143:6771\\r\\n
    Port: 6881\\r\\n
    Infohash: 0123456789abcdef0123456789abcdef01234567\\r\\n
    cookie: 5e2a9b1c\\r\\n
    \\r\\n
    \\r\\n

`Port` is the BitTorrent listen port; the peer's IP is the datagram's source. Several `Infohash` headers may share one
announce. The `cookie` lets a client recognise (and ignore) its own announces, which multicast loops back to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from peerloom.errors import ProtocolError

LSD_GROUP = "239.192.152.143"
LSD_GROUP6 = "ff15::efc0:988f"  # BEP 14's IPv6 group (site-local scope)
LSD_PORT = 6771
ANNOUNCE_INTERVAL = 5 * 60.0  # BEP 14: announce each torrent every 5 minutes
MAX_MESSAGE = 1400  # one Ethernet frame: anything longer is not an LSD announce
MAX_HASHES_PER_MESSAGE = 20  # 20 headers of 50 bytes keep a message well under MAX_MESSAGE
_REQUEST_LINE = b"BT-SEARCH * HTTP/1.1"


class LsdError(ProtocolError):
    """A datagram that is not a BEP 14 announce."""


@dataclass(frozen=True, slots=True)
class Announce:
    """One BT-SEARCH message: the sender's BitTorrent port, the info-hashes it seeks or offers, its cookie."""

    port: int
    info_hashes: tuple[bytes, ...]
    cookie: bytes | None = None
    host: str = f"{LSD_GROUP}:{LSD_PORT}"


def encode(msg: Announce) -> bytes:
    """The datagram for `msg`."""
    if not 0 < msg.port < 65536:
        raise ValueError(f"port out of range: {msg.port}")
    lines = [_REQUEST_LINE, b"Host: " + msg.host.encode("ascii"), b"Port: %d" % msg.port]
    for info_hash in msg.info_hashes:
        if len(info_hash) != 20:
            raise ValueError("an info-hash is 20 bytes")
        lines.append(b"Infohash: " + info_hash.hex().encode("ascii"))
    if msg.cookie:
        lines.append(b"cookie: " + msg.cookie)
    return b"\r\n".join(lines) + b"\r\n\r\n\r\n"


def decode(data: bytes) -> Announce:
    """Parse one datagram; LsdError when it is not a valid announce."""
    if len(data) > MAX_MESSAGE:
        raise LsdError(f"LSD message of {len(data)} bytes is too long")
    lines = data.split(b"\r\n")
    if lines[0].strip() != _REQUEST_LINE:
        raise LsdError("not a BT-SEARCH request")
    host = ""
    port: int | None = None
    hashes: list[bytes] = []
    cookie: bytes | None = None
    for line in lines[1:]:
        if not line.strip():
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise LsdError("LSD header without a colon")
        name, value = name.strip().lower(), value.strip()
        if name == b"host":
            host = value.decode("ascii", "replace")
        elif name == b"port":
            if not (value.isdigit() and len(value) <= 5 and 0 < int(value) < 65536):
                raise LsdError(f"invalid LSD port {value[:16]!r}")
            port = int(value)
        elif name == b"infohash":
            hashes.append(_info_hash(value))
        elif name == b"cookie":
            cookie = value[:64]
    if port is None:
        raise LsdError("LSD announce without a port")
    if not hashes:
        raise LsdError("LSD announce without an info-hash")
    return Announce(port, tuple(dict.fromkeys(hashes)), cookie, host)


def _info_hash(value: bytes) -> bytes:
    if len(value) != 40:
        raise LsdError(f"LSD info-hash is {len(value)} characters, not 40")
    try:
        return bytes.fromhex(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LsdError("LSD info-hash is not hexadecimal") from exc


class LocalDiscovery:
    """What one node announces and what it takes from others' announces (one per address family: each group gets its
    own `host` header, and the caller sends to that group).

    `due(hashes, now)` returns the datagrams to multicast now for the swarms in `hashes` (each at most once per
    `interval`, several per datagram); `receive(data, now)` returns the (info-hash, port) pairs another node announced,
    dropping our own announces by their cookie. The caller adds the datagram's source IP and keeps only the swarms it
    has. Malformed datagrams are counted and dropped.
    """

    def __init__(self, port: int, *, interval: float = ANNOUNCE_INTERVAL, cookie: bytes | None = None,
                 host: str = f"{LSD_GROUP}:{LSD_PORT}") -> None:
        self.port = port
        self.interval = interval
        self.cookie = cookie or os.urandom(4).hex().encode("ascii")
        self.host = host
        self.last_sent: dict[bytes, float] = {}
        self.malformed = 0
        self.own = 0
        self.received = 0

    def due(self, hashes: list[bytes], now: float) -> list[bytes]:
        wanted = dict.fromkeys(hashes)
        for gone in [h for h in self.last_sent if h not in wanted]:
            del self.last_sent[gone]
        send = [h for h in wanted if now - self.last_sent.get(h, -self.interval) >= self.interval]
        for h in send:
            self.last_sent[h] = now
        return [
            encode(Announce(self.port, tuple(send[i : i + MAX_HASHES_PER_MESSAGE]), self.cookie, self.host))
            for i in range(0, len(send), MAX_HASHES_PER_MESSAGE)
        ]

    def next_due(self, now: float) -> float:
        """When the earliest announced swarm is due again (`now + interval` when none is)."""
        if not self.last_sent:
            return now + self.interval
        return min(self.last_sent.values()) + self.interval

    def receive(self, data: bytes) -> list[tuple[bytes, int]]:
        try:
            msg = decode(data)
        except LsdError:
            self.malformed += 1
            return []
        if msg.cookie is not None and msg.cookie == self.cookie:
            self.own += 1
            return []
        self.received += 1
        return [(info_hash, msg.port) for info_hash in msg.info_hashes]
