"""A small real UDP tracker (BEP 15) for tests, on 127.0.0.1, keeping swarms in memory.

`UdpTrackerServer` is the tracker's logic with no socket (datagram and time in, datagram out), written
from the BEP independently of peerloom's client codecs so that the two check each other.
`UdpTracker` binds it to a UDP port. Knobs for failure tests: `drop` swallows the next N requests,
`refuse` answers every announce and scrape with an error, `noise` sends a stray datagram with a wrong
transaction id before each answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import secrets
import struct
import time
from dataclasses import dataclass, field

MAGIC = 0x41727101980
EVENT_NAMES = {0: "", 1: "completed", 2: "started", 3: "stopped"}
# Connection ids are a keyed hash of the client's IP and a 60 s window, as many real trackers make them
# (no state per client). The key is shared by every test tracker in the process: libtorrent caches
# connection ids per tracker IP, not per port, so a later libtorrent session in the same process
# presents an id from an earlier tracker on 127.0.0.1, and a tracker farm behind one key accepts it.
_SECRET = secrets.token_bytes(16)


def connection_id(ip: str, window: int) -> int:
    return int.from_bytes(hashlib.sha256(_SECRET + ip.encode() + window.to_bytes(8, "big")).digest()[:8], "big")


def connection_id_valid(conn_id: int, ip: str, now: float) -> bool:
    """Valid in its own 60 s window and the next: at least the minute BEP 15 promises, at most two."""
    window = int(now // 60)
    return conn_id in (connection_id(ip, window), connection_id(ip, window - 1))


@dataclass
class Announce:
    info_hash: bytes
    peer_id: bytes
    event: str
    left: int
    port: int
    num_want: int
    url_data: bytes


@dataclass
class UdpTrackerServer:
    interval: int = 1
    drop: int = 0
    refuse: str | None = None
    noise: bool = False
    swarms: dict[bytes, dict[tuple[str, int], bool]] = field(default_factory=dict)  # peer -> is a seed
    completed: dict[bytes, int] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)  # "connect", "announce", "scrape" as answered
    events: list[str] = field(default_factory=list)  # announce events, as HttpTracker records them
    announces: list[Announce] = field(default_factory=list)
    scraped: list[list[bytes]] = field(default_factory=list)
    received: int = 0

    def handle(self, data: bytes, addr: tuple[str, int], now: float) -> list[bytes]:
        """The datagrams to send back to `addr` for one received datagram (none for junk or drops)."""
        self.received += 1
        if self.drop > 0:
            self.drop -= 1
            return []
        if len(data) < 16:
            return []
        conn_id, action, txid = struct.unpack_from(">QII", data)
        replies = [struct.pack(">II", 0, (txid + 1) & 0xFFFFFFFF) + b"noise" * 4] if self.noise else []
        if action == 0:
            if conn_id != MAGIC:
                return []
            self.actions.append("connect")
            return [*replies, struct.pack(">IIQ", 0, txid, connection_id(addr[0], int(now // 60)))]
        if not connection_id_valid(conn_id, addr[0], now):
            return [*replies, self._error(txid, "unknown connection id")]
        if self.refuse is not None:
            return [*replies, self._error(txid, self.refuse)]
        if action == 1 and len(data) >= 98:
            return [*replies, self._announce(data, txid, addr)]
        if action == 2 and len(data) >= 36:
            return [*replies, self._scrape(data, txid)]
        return [*replies, self._error(txid, "bad request")]

    def _error(self, txid: int, message: str) -> bytes:
        return struct.pack(">II", 3, txid) + message.encode()

    def _announce(self, data: bytes, txid: int, addr: tuple[str, int]) -> bytes:
        info_hash, peer_id = data[16:36], data[36:56]
        _downloaded, left, _uploaded, event, _ip, _key, num_want, port = struct.unpack_from(">qqqiIIiH", data, 56)
        name = EVENT_NAMES.get(event, "?")
        self.actions.append("announce")
        self.events.append(name)
        self.announces.append(Announce(info_hash, peer_id, name, left, port, num_want, _url_data(data[98:])))
        swarm = self.swarms.setdefault(info_hash, {})
        peer = (addr[0], port)
        if name == "stopped":
            swarm.pop(peer, None)
        else:
            swarm[peer] = left == 0
        if name == "completed":
            self.completed[info_hash] = self.completed.get(info_hash, 0) + 1
        seeders = sum(swarm.values())
        others = [p for p in swarm if p != peer][: num_want if num_want >= 0 else 50]
        v6 = ipaddress.ip_address(addr[0]).version == 6
        compact = b"".join(
            ipaddress.ip_address(h).packed + struct.pack(">H", p)
            for h, p in others
            if (ipaddress.ip_address(h).version == 6) == v6
        )
        return struct.pack(">IIiii", 1, txid, self.interval, len(swarm) - seeders, seeders) + compact

    def _scrape(self, data: bytes, txid: int) -> bytes:
        hashes = [data[i : i + 20] for i in range(16, len(data) - 19, 20)]
        self.actions.append("scrape")
        self.scraped.append(hashes)
        out = struct.pack(">II", 2, txid)
        for h in hashes:
            swarm = self.swarms.get(h, {})
            seeders = sum(swarm.values())
            out += struct.pack(">iii", seeders, self.completed.get(h, 0), len(swarm) - seeders)
        return out


def _url_data(options: bytes) -> bytes:
    """The BEP 41 URLData carried after an announce (options: 0 end, 1 no-op, 2 length-prefixed data)."""
    out, i = b"", 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options):
            break
        length = options[i + 1]
        if kind == 2:
            out += options[i + 2 : i + 2 + length]
        i += 2 + length
    return out


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: UdpTrackerServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        for reply in self.server.handle(data, addr, time.monotonic()):
            self.transport.sendto(reply, addr)


class UdpTracker(UdpTrackerServer):
    """The test tracker on a real UDP socket: `async with UdpTracker() as t: ... t.announce_url`."""

    def __init__(
        self,
        interval: int = 1,
        host: str = "127.0.0.1",
        *,
        drop: int = 0,
        refuse: str | None = None,
        noise: bool = False,
    ) -> None:
        super().__init__(interval=interval, drop=drop, refuse=refuse, noise=noise)
        self.host = host
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def announce_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"udp://{host}:{self.port}/announce"

    async def __aenter__(self) -> UdpTracker:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=(self.host, 0))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._transport is not None:
            self._transport.close()
