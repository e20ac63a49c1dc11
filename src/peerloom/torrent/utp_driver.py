"""The asyncio driver of uTP: one UDP socket, a table of connections, and a transport per connection.

`UtpDriver` owns the connections by (remote address, receive connection id), feeds each datagram to its
connection, answers strangers' packets with ST_RESET, fires the retransmission timers from one ticker, and sends
what the connections owe once per loop iteration (every datagram that arrived in that iteration is processed
first, so an ack covers the whole batch, as libtorrent's deferred acks do). It sends on sockets of its own
(`open`) or on another owner's (`attach`: the DHT's, which hands it the datagrams that are not KRPC, as libtorrent
shares one UDP port between uTP and the DHT) through one path, `_sendto`: either way its datagrams carry the
don't-fragment bit and an EMSGSIZE reaches the path MTU search. Between our sends a socket rests in its path MTU
discovery mode: ours in don't-fragment; the owner's in the owner's, which `_sendto` switches for each batch of uTP
datagrams (the DHT's BEP 44 replies, up to ~1750 bytes, must still leave in fragments). Only sockets it opened are
its to close. A connection's datagrams of one size leave in one UDP GSO send where the kernel has it (utp_batch.py):
one system call for up to 64 datagrams, 20-30 % less CPU for a sender of full-size packets.

`UtpTransport` is what an asyncio Protocol sees: `write`, `close`, `abort`, write-buffer limits with
pause/resume_writing, pause/resume_reading. The BitTorrent `PeerConnection` runs over it unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import ipaddress
import logging
import secrets
import socket
import sys
from collections.abc import Callable
from typing import Any

from peerloom.torrent import dual_stack
from peerloom.torrent.context import UdpSockets
from peerloom.torrent.utp import Closed, Connected, EndOfStream, Oversize, UtpConfig, UtpSocket
from peerloom.torrent.utp_batch import gso_runs
from peerloom.torrent.utp_mtu import IPV4_OVERHEAD, IPV6_OVERHEAD
from peerloom.torrent.utp_packet import PacketType, UtpError, encode_header, parse_packet

log = logging.getLogger(__name__)
Address = tuple[str, int]
TICK = 0.05  # seconds between timer checks: the retransmission timer is at least 500 ms
DEFAULT_HIGH_WATER = 1 << 20
MAX_CONNECTIONS = 1024
LOOPBACK_PAYLOAD = 16 * 1024  # bench, 1 GiB on tmpfs: 155 MB/s against 70 MB/s with 1400-byte packets
SOCKET_BUFFER = 4 << 20  # asked of the kernel, which caps it at net.core.rmem_max / wmem_max
# Linux's path MTU options (<linux/in.h>, <linux/in6.h>; Python's socket module names none of them but IPV6_*)
IP_MTU_DISCOVER, IP_MTU, IPV6_MTU_DISCOVER, IPV6_MTU = 10, 14, 23, 24
PMTUDISC_DONT, PMTUDISC_DO = 0, 2  # the same values for IPv4 and IPv6
UDP_SEGMENT = 103  # <linux/udp.h>: the GSO segment size, as a socket option or per send (Linux 4.18)
GSO_OFF_ERRNOS = (errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP)  # the device or kernel cannot segment
GSO_MAX_REFUSALS = 16  # batches refused in a row (EINVAL) before batching stops for that socket
PMTU_OPTIONS = sys.platform.startswith("linux")


def _mtu_option(family: int) -> tuple[int, int]:
    return (socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER) if family == socket.AF_INET6 else (socket.IPPROTO_IP,
                                                                                       IP_MTU_DISCOVER)


def set_pmtu_mode(sock: socket.socket, mode: int) -> None:
    """The socket's path MTU discovery mode: PMTUDISC_DO, datagrams leave with the don't-fragment bit and never in
    fragments; PMTUDISC_DONT, as the kernel sees fit (Linux's default, IP_PMTUDISC_WANT, sets the bit but fragments
    a datagram larger than the path MTU it knows)."""
    if PMTU_OPTIONS:
        level, option = _mtu_option(sock.family)
        sock.setsockopt(level, option, mode)


def pmtu_mode(sock: socket.socket) -> int | None:
    """The socket's path MTU discovery mode, None where it cannot be read (or set)."""
    if not PMTU_OPTIONS:
        return None
    level, option = _mtu_option(sock.family)
    try:
        return sock.getsockopt(level, option)
    except OSError:
        return None


def gso_supported(sock: socket.socket) -> bool:
    """Whether the kernel takes UDP_SEGMENT on this socket (batched sends, utp_batch.py). Asked with getsockopt,
    which knows the option exactly when sendmsg's control message does: a kernel without it would send the whole
    batch as one datagram."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.getsockopt(socket.SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


def route_datagram(address: Address) -> int | None:
    """The largest UDP datagram the route to `address` takes, as the kernel knows it (its path MTU cache included):
    the MTU of a UDP socket connected there, less the IP and UDP headers. Connecting sends nothing. None where
    it cannot tell."""
    if not PMTU_OPTIONS:
        return None
    v6 = ":" in address[0]
    try:
        with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            if v6:
                return probe.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU) - IPV6_OVERHEAD
            return probe.getsockopt(socket.IPPROTO_IP, IP_MTU) - IPV4_OVERHEAD
    except OSError:
        return None


class UtpTransport(asyncio.Transport):
    """One uTP connection as an asyncio transport, driving `protocol` (set when the connection is made)."""

    def __init__(self, driver: UtpDriver, sock: UtpSocket, address: Address) -> None:
        super().__init__()
        self.driver = driver
        self.sock = sock
        self.address = address
        self.protocol: asyncio.BaseProtocol | None = None
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._high = DEFAULT_HIGH_WATER
        self._write_paused = False
        self._reading = True
        self._closing = False
        self._lost = False

    # -- asyncio.Transport -----------------------------------------------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The socket's names, "utp" (True), and "utp_mtu": the path MTU search's (floor, ceiling) in datagram bytes."""
        if name == "utp_mtu":
            return (self.sock.mtu.floor, self.sock.mtu.ceiling)
        return {"peername": self.address, "sockname": self.driver.local_address, "utp": True}.get(name, default)

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def is_closing(self) -> bool:
        return self._closing or self.sock.closed

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is not None:
            self._high = high

    def get_write_buffer_size(self) -> int:
        return self.sock.unsent_bytes

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.is_closing() or not data:
            return
        self.sock.write(data)
        self.driver.wake(self)
        if not self._write_paused and self.sock.unsent_bytes > self._high and self.protocol is not None:
            self._write_paused = True
            self.protocol.pause_writing()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def can_write_eof(self) -> bool:
        return False

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        self._reading = False  # the socket keeps what arrives; its advertised window shrinks and the peer waits

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self.driver.wake(self)

    def close(self) -> None:
        """Send what was written, then a FIN; the connection ends when the peer acks it."""
        if not self._closing:
            self._closing = True
            self.sock.close()
            self.driver.wake(self)

    def abort(self) -> None:
        self._closing = True
        self.sock.abort("aborted")
        self.driver.wake(self)

    # -- the driver's side -----------------------------------------------------------------------------------------
    def process(self, now: float) -> list[bytes]:
        """Hands the protocol what arrived and what happened; returns the datagrams to send."""
        protocol = self.protocol
        for event in self.sock.events():
            if isinstance(event, Connected):
                if not self.connected.done():
                    self.connected.set_result(None)
            elif isinstance(event, EndOfStream):
                self._deliver()
                if protocol is not None and not self._lost:
                    keep_open = getattr(protocol, "eof_received", lambda: None)()
                    if not keep_open:
                        self.close()
            elif isinstance(event, Closed):
                self._deliver()
                self._lose(event.error)
        if self._reading:
            self._deliver()
        if self._write_paused and self.sock.unsent_bytes <= self._high // 4 and protocol is not None:
            self._write_paused = False
            protocol.resume_writing()
        out = self.sock.datagrams_to_send(now)
        for event in self.sock.events():  # a reset decided while sending (none today) or by the calls above
            if isinstance(event, Closed):
                self._lose(event.error)
        return out

    def _deliver(self) -> None:
        if self.protocol is None or self._lost:
            return
        data = self.sock.read()
        if data:
            self.protocol.data_received(data)  # type: ignore[attr-defined]

    def _lose(self, error: str | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(error or "closed before connecting"))
            self.connected.exception()  # a dial given up on (timed out) has no one waiting: not an unhandled error
            return
        if self.protocol is not None:
            self.protocol.connection_lost(ConnectionError(error) if error else None)

    @property
    def lost(self) -> bool:
        return self._lost


class _UdpProtocol(asyncio.DatagramProtocol):
    """The driver's own UDP socket."""

    def __init__(self, driver: UtpDriver) -> None:
        self.driver = driver

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.driver.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("uTP socket: %r", exc)  # ICMP unreachable and the like: the connection's timer handles it


class UtpDriver:
    """uTP connections over UDP sockets, one per address family. `on_incoming(address)` makes the protocol of each
    accepted connection (None: incoming SYNs are refused with ST_RESET)."""

    def __init__(
        self,
        *,
        config: UtpConfig | None = None,
        on_incoming: Callable[[Address], asyncio.BaseProtocol] | None = None,
        max_connections: int = MAX_CONNECTIONS,
        loopback_payload: int = LOOPBACK_PAYLOAD,
        batched_sends: bool = True,
    ) -> None:
        self.config = config or UtpConfig()
        # on loopback no path MTU fragments a datagram: peers that both say so use large packets (UtpConfig)
        self.loopback_config = dataclasses.replace(self.config, large_payload=loopback_payload)
        self.on_incoming = on_incoming
        self.max_connections = max_connections
        self.batched_sends = batched_sends  # UDP GSO where the kernel has it (utp_batch.py)
        self.local_address: Address | None = None
        self.internal_errors = 0
        self.resets_sent = 0
        self._socks: UdpSockets = {}  # what we send on: ours (`open`) or another owner's (`attach`)
        self._owns_socks = False  # whether `close` closes `_socks`
        self._resting: dict[int, int | None] = {}  # by family: the socket's mode between our sends (None: unknown)
        self._switched: set[int] = set()  # families whose socket `_sendto` switched to don't-fragment for a batch
        self._gso: set[int] = set()  # families whose socket takes batched (GSO) sends
        self._gso_refusals: dict[int, int] = {}  # by family: batches refused since the last one that went
        self.gso_sends = 0  # sends that carried several datagrams
        self._conns: dict[tuple[Address, int], UtpTransport] = {}
        self._dirty: dict[UtpTransport, None] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def connections(self) -> int:
        return len(self._conns)

    async def open(self, host: str, port: int) -> int:
        """Bind UDP sockets of the driver's own; returns their port. On every interface (`0.0.0.0`, `::`, "") that is
        one socket per address family on one port number, as the BitTorrent TCP port takes both (dual_stack.py):
        IPv4 alone when the host has no IPv6."""
        loop = asyncio.get_running_loop()
        self._owns_socks = True
        hosts = ("0.0.0.0", "::") if dual_stack.is_wildcard(host) and socket.has_ipv6 else (host or "0.0.0.0",)
        try:
            for name in hosts:
                family = socket.AF_INET6 if ":" in name else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    if len(hosts) > 1 and family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # IPv4 has its own socket
                    sock.bind((name, port))
                except OSError as exc:
                    sock.close()
                    if self._socks and family == socket.AF_INET6:
                        log.info("uTP: no IPv6 socket beside IPv4 port %d: %s", port, exc.strerror)
                        break
                    raise
                sock.setblocking(False)
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    # a full window arrives between two reads: the default ~200 KiB drops packets at loopback speeds
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
                try:  # path MTU discovery (utp_mtu.py): too large is refused, not cut
                    set_pmtu_mode(sock, PMTUDISC_DO)
                    self._resting[family] = pmtu_mode(sock)
                except OSError:
                    self._resting[family] = None  # sent as the kernel sees fit: the search then learns less
                if self.batched_sends and gso_supported(sock):
                    self._gso.add(family)
                udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=sock)
                self._socks[family] = (sock, udp)
                port = port or sock.getsockname()[1]
        except BaseException:
            self._close_sockets()
            raise
        self.local_address = (host or "0.0.0.0", port)
        return port

    def _sendto(self, data: bytes, address: Address) -> None:
        """Straight to the socket of the address's family (a full socket buffer queues in its transport instead),
        with the don't-fragment bit: an `Oversize` datagram goes with fragmentation allowed; OSError EMSGSIZE when
        one too large is refused. A socket resting in another mode (its owner's) is switched at our first send and
        back in `_restore_modes`, once per batch: switching around each datagram cost 18% of the throughput here
        (two drivers in one process on loopback, 1400-byte payloads: 29 against 35 MB/s; per batch: 36 and 36)."""
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        entry = self._socket_for(family)
        if entry is None:
            return  # no socket of that family: the datagram cannot go (a dial there times out)
        sock = entry[0]
        try:
            if type(data) is Oversize:
                set_pmtu_mode(sock, PMTUDISC_DONT)
                try:
                    sock.sendto(data, address)
                finally:
                    set_pmtu_mode(sock, PMTUDISC_DO)
            else:
                sock.sendto(data, address)
        except BlockingIOError:
            if not entry[1].is_closing():
                entry[1].sendto(data, address)  # leaves later, in the socket's resting mode

    def _socket_for(self, family: int) -> tuple[socket.socket, asyncio.DatagramTransport] | None:
        """The socket of `family`, switched to don't-fragment for this batch if it rests in another mode."""
        entry = self._socks.get(family)
        if entry is not None and family not in self._switched:
            resting = self._resting.get(family)
            if resting is not None and resting != PMTUDISC_DO:
                set_pmtu_mode(entry[0], PMTUDISC_DO)
                self._switched.add(family)
        return entry

    def _send_segments(self, datagrams: list[bytes], size: int, address: Address) -> bool:
        """Send datagrams of `size` bytes (the last may be shorter) in one GSO send (utp_batch.py); False when they
        must go one by one instead: no GSO here, or the kernel refused the batch (a segment over the path MTU is
        EINVAL there, where the single datagram gets the EMSGSIZE the MTU search needs)."""
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        if family not in self._gso:
            return False
        entry = self._socket_for(family)
        if entry is None:
            return True  # no socket of that family: nothing can go (a dial there times out)
        try:
            entry[0].sendmsg([b"".join(datagrams)], [(socket.SOL_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))],
                             0, address)
        except BlockingIOError:
            if not entry[1].is_closing():
                for datagram in datagrams:
                    entry[1].sendto(datagram, address)  # queued one by one, as `_sendto` does
        except OSError as exc:
            refusals = self._gso_refusals.get(family, 0) + 1
            self._gso_refusals[family] = refusals
            # refused for good, or refused again and again (not a segment over one path's MTU): one by one from now
            if exc.errno in GSO_OFF_ERRNOS or refusals >= GSO_MAX_REFUSALS:
                self._gso.discard(family)
                log.info("uTP: batched (GSO) sends off for %s: %s", address[0], exc.strerror)
            return False
        self._gso_refusals[family] = 0
        self.gso_sends += 1
        return True

    def _restore_modes(self) -> None:
        """Give the sockets `_sendto` switched their resting mode back: the owner's datagrams go as it chose (the
        DHT's BEP 44 replies, up to ~1750 bytes, must still leave in fragments where a path takes less)."""
        for family in self._switched:
            entry = self._socks.get(family)
            resting = self._resting.get(family)
            if entry is not None and resting is not None:
                with contextlib.suppress(OSError):  # closed by its owner meanwhile
                    set_pmtu_mode(entry[0], resting)
        self._switched.clear()

    def _close_sockets(self) -> None:
        if self._owns_socks:
            for _, udp in self._socks.values():
                udp.close()
        self._socks.clear()
        self._resting.clear()
        self._switched.clear()
        self._gso.clear()

    def attach(self, sockets: UdpSockets, local_address: Address | None = None) -> None:
        """Send on UDP sockets someone else owns and closes (who passes us the uTP datagrams it receives), as on our
        own: with the don't-fragment bit, for path MTU discovery. Their owner's datagrams keep the owner's mode."""
        self._socks = dict(sockets)
        self._resting = {family: pmtu_mode(sock) for family, (sock, _) in sockets.items()}
        self._gso = {family for family, (sock, _) in sockets.items() if self.batched_sends and gso_supported(sock)}
        self._owns_socks = False
        self.local_address = local_address

    def close(self) -> None:
        """Reset every connection and close the driver's own sockets (never those it was attached to)."""
        self._closed = True
        for transport in list(self._conns.values()):
            transport.abort()
        self._flush()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._close_sockets()

    # -- dialing -------------------------------------------------------------------------------------------------
    async def connect(self, address: Address, protocol_factory: Callable[[], asyncio.BaseProtocol],
                      timeout: float = 10.0) -> tuple[UtpTransport, asyncio.BaseProtocol]:
        """Open a uTP connection to `address`; ConnectionError when it is refused or times out (SYN timeouts)."""
        if self._closed or not self._socks:
            raise ConnectionError("uTP is not running")
        address = (address[0], address[1])
        loop = asyncio.get_running_loop()
        for _ in range(16):
            conn_id = secrets.randbits(16)
            if (address, conn_id) not in self._conns:
                break
        else:
            raise ConnectionError(f"no free uTP connection id towards {address}")
        sock = UtpSocket.connect(conn_id, secrets.randbits(16), loop.time(), self._config_for(address))
        self._limit_to_route(sock, address)
        transport = UtpTransport(self, sock, address)
        self._conns[(address, sock.recv_id)] = transport
        self.wake(transport)
        try:
            await asyncio.wait_for(asyncio.shield(transport.connected), timeout)
        except BaseException:
            if not transport.connected.done():
                transport.abort()
            raise
        protocol = protocol_factory()
        transport.protocol = protocol
        protocol.connection_made(transport)
        self.wake(transport)
        return transport, protocol

    # -- receiving -----------------------------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Any) -> None:
        """One datagram for uTP (from our socket or the owner's demultiplexer)."""
        if self._closed:
            return
        address = (addr[0], addr[1])
        now = asyncio.get_running_loop().time()
        try:
            packet = parse_packet(data)
        except UtpError as exc:
            if len(data) >= 4:  # a malformed packet on a connection costs that connection
                transport = self._conns.get((address, int.from_bytes(data[2:4], "big")))
                if transport is not None:
                    transport.sock.abort(f"malformed uTP packet: {exc}")
                    self.wake(transport)
            return
        try:
            self._route(packet, address, now)
        except Exception:  # a bug must cost one datagram, never the node
            self.internal_errors += 1
            log.exception("uTP: datagram from %s:%d broke the driver", *address)

    def _route(self, packet: Any, address: Address, now: float) -> None:
        if packet.type is PacketType.SYN:
            key = (address, (packet.connection_id + 1) & 0xFFFF)
            transport = self._conns.get(key)
            if transport is None:
                transport = self._accept(packet, address, key, now)
                if transport is None:
                    return
            else:
                transport.sock.receive(packet, now)
            self.wake(transport)
            return
        transport = self._conns.get((address, packet.connection_id))
        if transport is None:
            if packet.type is not PacketType.RESET:
                self._reset(packet, address)
            return
        transport.sock.receive(packet, now)
        self.wake(transport)

    def _accept(self, syn: Any, address: Address, key: tuple[Address, int], now: float) -> UtpTransport | None:
        if self.on_incoming is None or len(self._conns) >= self.max_connections:
            self._reset(syn, address)
            return None
        sock = UtpSocket.accept(syn, secrets.randbits(16), now, self._config_for(address))
        self._limit_to_route(sock, address)
        transport = UtpTransport(self, sock, address)
        self._conns[key] = transport
        protocol = self.on_incoming(address)
        transport.protocol = protocol
        protocol.connection_made(transport)
        return transport

    @staticmethod
    def _limit_to_route(sock: UtpSocket, address: Address) -> None:
        limit = route_datagram(address)
        if limit is not None:
            sock.limit_datagram(limit)

    def _config_for(self, address: Address) -> UtpConfig:
        try:
            loopback = ipaddress.ip_address(address[0]).is_loopback
        except ValueError:
            loopback = False
        return self.loopback_config if loopback else self.config

    def _reset(self, packet: Any, address: Address) -> None:
        """BEP 29: a packet for no connection of ours gets an ST_RESET, so the sender stops at once."""
        if not self._socks:
            return
        self.resets_sent += 1
        try:
            self._sendto(encode_header(PacketType.RESET, packet.connection_id, 0, packet.seq_nr, 0, 0, 0), address)
        except (OSError, ValueError) as exc:
            log.debug("uTP: cannot send a reset to %s: %r", address, exc)
        finally:
            self._restore_modes()

    # -- sending and timers --------------------------------------------------------------------------------------
    def wake(self, transport: UtpTransport) -> None:
        """`transport` has something to do: run it once this loop iteration's datagrams are in."""
        self._dirty[transport] = None
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        if self._ticker is None and not self._closed:
            self._ticker = asyncio.get_running_loop().call_later(TICK, self._tick)

    def _flush(self) -> None:
        self._flush_handle = None
        try:
            self._send_dirty(asyncio.get_running_loop().time())
        finally:
            self._restore_modes()

    def _send_dirty(self, now: float) -> None:
        """Run every connection woken since the last flush and send what it owes (one batch of `_sendto`)."""
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            for transport in dirty:
                try:
                    datagrams = transport.process(now)
                except Exception:
                    self.internal_errors += 1
                    log.exception("uTP: a connection to %s:%d broke", *transport.address)
                    transport.sock.abort("internal error")
                    datagrams = transport.sock.datagrams_to_send(now)
                self._send_all(transport, datagrams)
                if transport.sock.closed and transport.lost:
                    key = (transport.address, transport.sock.recv_id)
                    if self._conns.get(key) is transport:
                        del self._conns[key]

    def _send_all(self, transport: UtpTransport, datagrams: list[bytes]) -> None:
        """A connection's datagrams, in runs of one size batched into single sends where the kernel allows."""
        address = transport.address
        for start, end, size in gso_runs(datagrams):
            if size and self._send_segments(datagrams[start:end], size, address):
                continue
            for datagram in datagrams[start:end]:
                try:
                    self._sendto(datagram, address)
                except OSError as exc:
                    if exc.errno != errno.EMSGSIZE:
                        log.debug("uTP: cannot send to %s: %r", address, exc)
                        return
                    # a hard ceiling, and the packet goes again in pieces; the kernel refuses because it
                    # learnt the path's MTU (ICMP "fragmentation needed"): the route now tells it
                    transport.sock.datagram_too_big(datagram)
                    self._limit_to_route(transport.sock, address)
                    self._dirty[transport] = None
                except ValueError as exc:
                    log.debug("uTP: cannot send to %s: %r", address, exc)
                    return

    def _tick(self) -> None:
        self._ticker = None
        if self._closed or not self._conns:
            return
        now = asyncio.get_running_loop().time()
        for transport in self._conns.values():
            wakeup = transport.sock.next_wakeup()
            if wakeup is not None and wakeup <= now:
                transport.sock.tick(now)
                self._dirty[transport] = None
        self._flush()
        self._ticker = asyncio.get_running_loop().call_later(TICK, self._tick)
