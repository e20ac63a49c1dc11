"""One uTP connection (BEP 29), sans-I/O: packets and the current time in, datagrams and events out.

Reliable, ordered bytes over UDP. The sender cuts its buffer into packets that fit both the LEDBAT congestion
window (utp_ledbat.py) and the peer's advertised window, keeps each until it is acknowledged (cumulatively by
ack_nr or by the selective-ack bitmask) and retransmits it when three packets sent after it were acknowledged
(fast retransmit) or when the retransmission timer fires (at least 500 ms, doubling on each consecutive
timeout). The receiver reorders within the window it advertises and acks once per batch of datagrams: the
driver calls `datagrams_to_send` after feeding a batch, and an ack rides on any data packet going out anyway.

Connection ids follow BEP 29 and libtorrent: the initiator picks `recv_id`, sends its SYN with that id and every
later packet with `send_id = recv_id + 1`; the acceptor mirrors them. A peer that acks packets we never sent,
sends data far beyond our window or a malformed packet (the driver's UtpError) gets its connection reset: one
bad peer costs one connection.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from peerloom.torrent.utp_ledbat import Ledbat
from peerloom.torrent.utp_mtu import PEER_DATAGRAM, MtuSearch
from peerloom.torrent.utp_packet import (
    HEADER_SIZE,
    MAX_DATAGRAM,
    SACK_BYTES,
    SEQ_MASK,
    TIMESTAMP_MASK,
    Packet,
    PacketType,
    encode_header,
    sack_bitmask,
    sacked,
)

INITIAL_TIMEOUT = 1.0  # BEP 29: the timeout before the first round-trip sample
MIN_TIMEOUT = 0.5  # libtorrent's utp_min_timeout: 500 ms
MAX_TIMEOUT = 30.0  # the backed-off timer never waits longer than this
SYN_TIMEOUTS = 2  # a dial fails at the second SYN timeout: after 3 s, as libtorrent's utp_connect_timeout
DATA_TIMEOUTS = 6  # consecutive timeouts without a word from the peer before the connection is given up
FIN_TIMEOUTS = 3  # libtorrent's utp_fin_resends 2, plus the first FIN
LINGER = 5.0  # after our FIN is acked, how long the peer's data and FIN are still taken (TCP's half-close)
DUP_ACK_LIMIT = 3  # fast retransmit: three packets sent later were acked (TCP's three duplicate acks)
MAX_AHEAD = 8192  # a DATA/FIN this many packets past ack_nr is wild: no window we advertise reaches so far
MAX_IN_FLIGHT = 4096  # packets: well inside the half of the 16-bit sequence space where wrap-around is unambiguous
DEFAULT_PAYLOAD = 1200  # bytes of payload per packet: safe under common path MTUs (IPv6's 1280 minimum)
DEFAULT_RECV_WINDOW = 1 << 20
DEFAULT_MAX_WINDOW = 8 << 20
COMPACT_AT = 1 << 20  # bytes already packetized at the front of the send buffer before it is compacted
MAX_HEADER = HEADER_SIZE + 2 + SACK_BYTES + 6  # the header, the largest SACK we send, our datagram extension
_HALF = 0x8000


@dataclass(frozen=True, slots=True)
class UtpConfig:
    """The knobs of one connection: payload bytes per packet, the receive window we advertise, the largest
    congestion window we grow to, and the larger payload two peers that both ask for it use."""

    max_payload: int = DEFAULT_PAYLOAD
    recv_window: int = DEFAULT_RECV_WINDOW
    max_window: int = DEFAULT_MAX_WINDOW
    # payload per packet once the peer has said (EXT_DATAGRAM) it takes datagrams that large; 0: never ask. For
    # loopback, where no path MTU fragments them: libtorrent reads 1500-byte datagrams and never says so.
    large_payload: int = 0


class State(Enum):
    SYN_SENT = "syn-sent"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Connected:
    """The handshake finished: data may flow."""


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The peer's FIN arrived and every byte before it was delivered."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is over: `error` is None after an orderly close, else why it ended (reset, timeout, ...)."""

    error: str | None = None


Event = Connected | EndOfStream | Closed


class Oversize(bytes):
    """A datagram that may travel in fragments: a lost MTU probe, or a packet the kernel refused as too large, sent
    again (its sequence number holds its size). The driver lifts the don't-fragment bit for it alone."""


def _us(now: float) -> int:
    return int(now * 1_000_000) & TIMESTAMP_MASK


class _Out:
    """A packet we sent and the peer has not acknowledged yet."""

    __slots__ = ("fragment", "kind", "lost", "payload", "probe", "sent_at", "seq", "transmissions", "tx")

    def __init__(self, kind: PacketType, seq: int, payload: bytes) -> None:
        self.kind = kind
        self.seq = seq
        self.payload = payload
        self.sent_at = 0.0
        self.transmissions = 0
        self.tx = 0  # order of the latest transmission among all of this connection's
        self.lost = False  # waiting to be retransmitted (not counted in flight)
        self.probe = False  # an MTU probe (utp_mtu.py): larger than the connection's packets
        self.fragment = False  # too large for the path: sent again as an `Oversize` datagram


class UtpSocket:
    """One uTP connection. Build it with `connect` or `accept`; feed it `receive(packet, now)` and `tick(now)`;
    take `datagrams_to_send(now)`, `events()` and `read()`; give it bytes with `write` and end it with `close`
    or `abort`."""

    def __init__(self, recv_id: int, send_id: int, seq_nr: int, now: float, config: UtpConfig) -> None:
        self.recv_id = recv_id & SEQ_MASK
        self.send_id = send_id & SEQ_MASK
        self.config = config
        self.state = State.SYN_SENT
        self._seq_nr = seq_nr & SEQ_MASK  # the next sequence number we send
        self._acked = (seq_nr - 1) & SEQ_MASK  # everything up to this one is acknowledged
        self._ack_nr = 0  # the last in-order sequence number received
        self._in_flight: OrderedDict[int, _Out] = OrderedDict()  # by latest transmission, oldest first
        self._to_send: dict[int, _Out] = {}  # the unacked packets marked lost (or never sent yet), in marking order
        self._bytes_in_flight = 0
        self._tx = 0
        self._max_acked_tx = 0
        self._dup_acks = 0
        self._loss_seq = self._acked  # one window cut per window of data
        self._sendbuf = bytearray()
        self._sendpos = 0
        self._closing = False
        self._fin_seq: int | None = None
        self._eof_seq: int | None = None
        self._reorder: dict[int, bytes | memoryview] = {}
        self._reorder_bytes = 0
        self._unread: list[bytes | memoryview] = []
        self._unread_bytes = 0
        self._peer_wnd = config.max_payload
        self._reply_micro = 0
        self._ack_pending = False
        self._window_limited = False
        self._reset_pending = False
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._backoff = 0
        self._silent_timeouts = 0
        self._rto_at: float | None = None
        self._linger_at: float | None = None  # our FIN is acked: the peer's FIN is awaited until then
        self._events: list[Event] = []
        self.ledbat = Ledbat(config.max_payload, config.max_window)
        self._syn_seq = self._seq_nr
        self.payload_size = config.max_payload
        self.mtu = MtuSearch(config.max_payload + MAX_HEADER, PEER_DATAGRAM)
        self._route_limit: int | None = None
        self._probing = False  # checked per packet: the search's state in one boolean
        self._mtu_changed()
        self._announce = False  # the next ST_STATE answers a SYN: it says how large a datagram we take

    # construction ------------------------------------------------------------------------------------------------
    @classmethod
    def connect(cls, conn_id: int, seq_nr: int, now: float, config: UtpConfig | None = None) -> UtpSocket:
        """An outgoing connection: its SYN (sent with `conn_id`, the id we receive on) is the first datagram."""
        sock = cls(conn_id, conn_id + 1, seq_nr, now, config or UtpConfig())
        sock._queue(PacketType.SYN, b"")
        return sock

    @classmethod
    def accept(cls, syn: Packet, seq_nr: int, now: float, config: UtpConfig | None = None) -> UtpSocket:
        """The connection a peer's SYN opens: we receive on its id + 1 and send on its id (BEP 29)."""
        sock = cls(syn.connection_id + 1, syn.connection_id, seq_nr, now, config or UtpConfig())
        sock.state = State.CONNECTED
        sock._ack_nr = syn.seq_nr
        sock._syn_seq = syn.seq_nr
        sock._peer_wnd = syn.wnd_size
        sock._reply_micro = (_us(now) - syn.timestamp) & TIMESTAMP_MASK
        sock._ack_pending = True  # the ST_STATE that completes the handshake
        sock._announce = True
        sock._use_large(syn)
        sock._events.append(Connected())
        return sock

    # what the owner sees -----------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def unsent_bytes(self) -> int:
        """Bytes written and not yet cut into packets: what the driver's write-buffer limits look at."""
        return len(self._sendbuf) - self._sendpos

    @property
    def buffer_size(self) -> int:
        """Bytes the send buffer holds, packetized ones not yet compacted away included (what it costs in memory)."""
        return len(self._sendbuf)

    @property
    def bytes_in_flight(self) -> int:
        return self._bytes_in_flight

    @property
    def rto(self) -> float:
        base = INITIAL_TIMEOUT if self._srtt is None else max(MIN_TIMEOUT, self._srtt + 4 * self._rttvar)
        return min(base * (1 << min(self._backoff, 16)), MAX_TIMEOUT)

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def read(self) -> bytes:
        """The bytes received in order since the last read; reading reopens the window we advertise."""
        if not self._unread:
            return b""
        was_small = self._advertised_window() < 2 * self.config.max_payload
        data = b"".join(self._unread)
        self._unread.clear()
        self._unread_bytes = 0
        if was_small:
            self._ack_pending = True  # tell a sender stalled on our window that it reopened
        return data

    def write(self, data: bytes | memoryview) -> None:
        """Queues bytes to send; they leave as the windows allow. Ignored once the connection is closing."""
        if self.state is State.CLOSED or self._closing:
            return
        if self._sendpos >= COMPACT_AT:  # what was cut into packets goes, or a busy buffer grows without end
            del self._sendbuf[: self._sendpos]
            self._sendpos = 0
        self._sendbuf += data

    def close(self) -> None:
        """Ends our side in order: a FIN goes out after every byte written; the connection is over once the peer
        acknowledged it and sent its own FIN (or LINGER seconds later, or after FIN_TIMEOUTS timeouts)."""
        if self.state is State.SYN_SENT:
            self._finish(None)
        elif self.state is State.CONNECTED:
            self._closing = True

    def abort(self, reason: str) -> None:
        """Ends the connection at once with an ST_RESET, e.g. because the peer broke the protocol."""
        if self.state is State.CLOSED:
            return
        self._reset_pending = self.state is State.CONNECTED
        self._finish(reason)

    # input -------------------------------------------------------------------------------------------------------
    def receive(self, packet: Packet, now: float) -> None:
        """Processes one packet the driver matched to this connection."""
        if self.state is State.CLOSED:
            return
        kind = packet.type
        if kind is PacketType.RESET:
            if self._fin_seq is not None:
                self._finish(None)  # the peer is gone after our FIN (its ack of it may have been lost): done
            else:
                self._finish("connection refused" if self.state is State.SYN_SENT else "connection reset by peer")
            return
        if kind is PacketType.SYN:
            if packet.seq_nr == self._syn_seq and self.state is State.CONNECTED:
                self._ack_pending = self._announce = True  # our ST_STATE was lost and the SYN came again
            return
        if self.state is State.SYN_SENT:
            if packet.ack_nr != self._syn_seq:
                return  # libtorrent too ignores anything but the answer to our SYN
            self.state = State.CONNECTED
            self._ack_nr = (packet.seq_nr - 1) & SEQ_MASK  # the SYN-ACK carries the next sequence number it sends
            self._use_large(packet)
            self._events.append(Connected())
        self._silent_timeouts = 0
        self._reply_micro = (_us(now) - packet.timestamp) & TIMESTAMP_MASK
        self._peer_wnd = packet.wnd_size
        if not self._process_acks(packet, now):
            return
        if kind is PacketType.DATA or kind is PacketType.FIN:
            self._process_data(packet)

    def _use_large(self, handshake: Packet) -> None:
        """Both sides asked for large packets (UtpConfig.large_payload): use them, within what the peer takes."""
        peer_max = handshake.max_datagram
        if self.config.large_payload and peer_max:
            size = max(self.config.max_payload, min(self.config.large_payload, peer_max - MAX_HEADER)) + MAX_HEADER
            size = min(size, self._route_limit or size)
            self.mtu = MtuSearch(size, size)  # no search: the peer said how large, the route takes it
            self._mtu_changed()

    # path MTU (utp_mtu.py) -----------------------------------------------------------------------------------------
    def limit_datagram(self, size: int) -> None:
        """The largest datagram the route to the peer takes (its MTU less the IP and UDP headers), from the driver."""
        self._route_limit = size
        self.mtu.limit(size)
        self._mtu_changed()

    def datagram_too_big(self, datagram: bytes) -> None:
        """The kernel refused `datagram` (EMSGSIZE): a hard ceiling, and that packet goes again in fragments."""
        if len(datagram) < HEADER_SIZE:
            return
        out = self._in_flight.get(int.from_bytes(datagram[16:18], "big"))
        if out is None or out.lost or not out.payload:
            return
        self.mtu.too_big(len(datagram))
        out.probe = False
        out.fragment = True
        out.lost = True  # sent again without cutting the window: the path refused it, the network did not drop it
        self._to_send[out.seq] = out
        self._bytes_in_flight -= len(out.payload)
        self._mtu_changed()

    def _mtu_changed(self) -> None:
        self.payload_size = self.mtu.floor - MAX_HEADER
        self._probing = not self.mtu.settled

    def _probe_size(self) -> int:
        """The payload of an MTU probe to send now, or 0: only once an RTT is known (the first window is as without
        the search), with data enough to fill it, and where the windows take it beside what is in flight (a probe
        never rides on the one-packet-always rule)."""
        if self._srtt is None:
            return 0
        size = (self.mtu.next_probe() or HEADER_SIZE) - HEADER_SIZE  # a probe's size is that of its datagram
        if size <= 0 or size > self.unsent_bytes or \
                self._bytes_in_flight + size > min(self.ledbat.window, self._peer_wnd):
            self.mtu.probe = None
            return 0
        return size

    def _probe_done(self, out: _Out, lost: bool) -> None:
        out.probe = False
        size = len(out.payload) + HEADER_SIZE  # as sent (a SACK it carried only makes the result safer)
        if lost:
            self.mtu.lost(size)
            out.fragment = True
        else:
            self.mtu.acked(size)
        self._mtu_changed()

    def _process_acks(self, packet: Packet, now: float) -> bool:
        """Removes what `packet` acknowledges from flight; False when it acks a packet never sent (reset)."""
        last_sent = (self._seq_nr - 1) & SEQ_MASK
        ahead = (packet.ack_nr - last_sent) & SEQ_MASK
        if 0 < ahead < _HALF:
            self.abort(f"peer acked sequence number {packet.ack_nr}, past the last one sent ({last_sent})")
            return False
        newly = (packet.ack_nr - self._acked) & SEQ_MASK
        if newly >= _HALF:
            return True  # an old ack, overtaken by a newer one: nothing to learn from it
        acked_bytes = 0
        rtt_sample: float | None = None
        in_flight = self._in_flight
        for i in range(1, newly + 1):
            out = in_flight.pop((self._acked + i) & SEQ_MASK, None)
            if out is not None:
                acked_bytes += self._acknowledge(out)
                if out.transmissions == 1:
                    rtt_sample = now - out.sent_at
        self._acked = packet.ack_nr
        mask = packet.sack
        if mask is not None:
            window = (last_sent - self._acked) & SEQ_MASK
            for seq in sacked(self._acked, mask):
                if (seq - self._acked) & SEQ_MASK > window:
                    break  # bits past what we sent mean nothing
                out = in_flight.pop(seq, None)
                if out is not None:
                    acked_bytes += self._acknowledge(out)
                    if out.transmissions == 1:
                        rtt_sample = now - out.sent_at
        if rtt_sample is not None:
            self._update_rtt(rtt_sample)
        if newly or acked_bytes:
            self._dup_acks = 0
            self._backoff = 0
            self._rto_at = now + self.rto if in_flight else None
            delay = packet.timestamp_difference or None
            rtt_us = None if self._srtt is None else int(self._srtt * 1_000_000)
            self.ledbat.on_ack(acked_bytes, delay, rtt_us, now, self._window_limited)
            self._window_limited = False
        elif packet.type is PacketType.STATE and in_flight:
            self._dup_acks += 1
            if self._dup_acks == DUP_ACK_LIMIT:
                first = in_flight.get((self._acked + 1) & SEQ_MASK)
                if first is not None and not first.lost:
                    self._mark_lost(first)
        self._detect_losses()
        if self._fin_seq is not None and not in_flight and self._linger_at is None:
            # our FIN and everything before it are acknowledged: the peer may still send until its own FIN
            if self._eof_seq is not None and self._eof_seq == self._ack_nr:
                self._finish(None)
                return False
            self._linger_at = now + LINGER
        return True

    def _acknowledge(self, out: _Out) -> int:
        if out.probe:
            self._probe_done(out, lost=False)
        if out.lost:
            del self._to_send[out.seq]
        else:
            self._bytes_in_flight -= len(out.payload)
        if out.tx > self._max_acked_tx:
            self._max_acked_tx = out.tx
        return len(out.payload)

    def _detect_losses(self) -> None:
        """Fast retransmit: a packet is lost when DUP_ACK_LIMIT packets sent after it were acknowledged."""
        limit = self._max_acked_tx - DUP_ACK_LIMIT
        for out in self._in_flight.values():
            if out.tx > limit:
                break
            if not out.lost:
                self._mark_lost(out)

    def _mark_lost(self, out: _Out) -> None:
        out.lost = True
        self._to_send[out.seq] = out
        self._bytes_in_flight -= len(out.payload)
        if out.probe:
            self._probe_done(out, lost=True)  # too large for the path, not congestion: the window stays
            return
        if (out.seq - self._loss_seq) & SEQ_MASK < _HALF and out.seq != self._loss_seq:
            self.ledbat.on_loss()  # once per window: packets sent before the cut do not cut again
            self._loss_seq = (self._seq_nr - 1) & SEQ_MASK

    def _update_rtt(self, sample: float) -> None:
        """RFC 6298 section 2 smoothing."""
        if self._srtt is None:
            self._srtt, self._rttvar = sample, sample / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - sample)
            self._srtt = 0.875 * self._srtt + 0.125 * sample

    def _process_data(self, packet: Packet) -> None:
        seq = packet.seq_nr
        distance = (seq - self._ack_nr - 1) & SEQ_MASK  # 0: the next one in order
        self._ack_pending = True
        if distance >= _HALF:
            return  # a duplicate of something delivered: the ack we owe says so again
        if distance >= MAX_AHEAD:
            self.abort(f"peer sent sequence number {seq}, {distance} packets past the window")
            return
        if self._eof_seq is not None and 0 < (seq - self._eof_seq) & SEQ_MASK < _HALF:
            return  # past the peer's FIN
        payload = b"" if packet.type is PacketType.FIN else packet.payload
        if packet.type is PacketType.FIN:
            self._eof_seq = seq
        if seq in self._reorder:
            return
        if self._unread_bytes + self._reorder_bytes + len(payload) > self.config.recv_window + self.config.max_payload:
            return  # over the window we advertised: dropped, the sender retransmits
        if distance:
            self._reorder[seq] = payload
            self._reorder_bytes += len(payload)
            return
        self._deliver(payload)
        self._ack_nr = seq
        reorder = self._reorder
        while reorder:
            nxt = (self._ack_nr + 1) & SEQ_MASK
            data = reorder.pop(nxt, None)
            if data is None:
                break
            self._reorder_bytes -= len(data)
            self._deliver(data)
            self._ack_nr = nxt
        if self._eof_seq == self._ack_nr:
            self._events.append(EndOfStream())
            if self._linger_at is not None:
                self._finish(None)  # both FINs are through

    def _deliver(self, data: bytes | memoryview) -> None:
        if data:
            self._unread.append(data)
            self._unread_bytes += len(data)

    # timers ------------------------------------------------------------------------------------------------------
    def next_wakeup(self) -> float | None:
        if self._linger_at is not None and (self._rto_at is None or self._linger_at < self._rto_at):
            return self._linger_at
        return self._rto_at

    def tick(self, now: float) -> None:
        """Fires the retransmission timer if it is due: everything in flight is deemed lost, the window falls to
        one packet, and the timer backs off; too many timeouts without a word from the peer end the connection.
        After our FIN is acknowledged, the wait for the peer's own FIN ends here too."""
        if self._linger_at is not None and now >= self._linger_at and self.state is not State.CLOSED:
            self._finish(None)
            return
        if self._rto_at is None or now < self._rto_at or self.state is State.CLOSED:
            return
        if not self._in_flight:
            self._rto_at = None
            return
        self._silent_timeouts += 1
        limit = SYN_TIMEOUTS if self.state is State.SYN_SENT else FIN_TIMEOUTS if self._fin_seq is not None \
            else DATA_TIMEOUTS
        if self._silent_timeouts >= limit:
            if self.state is State.SYN_SENT:
                self._finish("connect timed out")
            elif self._fin_seq is not None:
                self._finish(None)  # the peer never acked our FIN: we are done all the same
            else:
                self.abort("timed out")
            return
        for out in sorted(self._in_flight.values(), key=lambda o: (o.seq - self._acked) & SEQ_MASK):
            if not out.lost:
                out.lost = True
                self._to_send[out.seq] = out
                if out.probe:
                    self._probe_done(out, lost=True)
        self._bytes_in_flight = 0
        self._loss_seq = (self._seq_nr - 1) & SEQ_MASK  # the fast retransmits of this window cut no further
        if self.state is State.CONNECTED:
            self.ledbat.on_timeout()
        self._backoff += 1
        self._rto_at = now + self.rto

    # output ------------------------------------------------------------------------------------------------------
    def _advertised_window(self) -> int:
        return max(0, self.config.recv_window - self._reorder_bytes - self._unread_bytes)

    def _header(self, kind: PacketType, seq: int, ts: int) -> bytes:
        sack = sack_bitmask(self._ack_nr, self._reorder) if self._reorder else None
        conn_id = self.recv_id if kind is PacketType.SYN else self.send_id
        announce = 0
        if self.config.large_payload and (kind is PacketType.SYN or (kind is PacketType.STATE and self._announce)):
            announce = MAX_DATAGRAM
            self._announce = False
        return encode_header(kind, conn_id, seq, self._ack_nr, self._advertised_window(), ts, self._reply_micro,
                             sack, announce)

    def _queue(self, kind: PacketType, payload: bytes) -> None:
        out = _Out(kind, self._seq_nr, payload)
        out.lost = True  # "waiting to be sent": the same path as a retransmission
        self._in_flight[out.seq] = out
        self._to_send[out.seq] = out
        if kind is PacketType.FIN:
            self._fin_seq = out.seq
        self._seq_nr = (self._seq_nr + 1) & SEQ_MASK

    def _fits(self, size: int) -> bool:
        if self._bytes_in_flight == 0:
            return True  # one packet may always be out: the window probe when the peer's window is shut
        if self._bytes_in_flight + size > min(self.ledbat.window, self._peer_wnd):
            self._window_limited = True
            return False
        return True

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """The datagrams to send now: retransmissions, new data within the windows, a FIN, and an ack if one is
        owed and no data packet carried it."""
        if self.state is State.CLOSED:
            out = []
            if self._reset_pending:
                out.append(encode_header(PacketType.RESET, self.send_id, self._seq_nr, self._ack_nr, 0, _us(now), 0))
            elif self._ack_pending:
                out.append(self._header(PacketType.STATE, self._seq_nr, _us(now)))  # the ack of the peer's FIN
            self._reset_pending = self._ack_pending = False
            return out
        ts = _us(now)
        out: list[bytes] = []
        head = (self._acked + 1) & SEQ_MASK
        while self._to_send:
            item = next(iter(self._to_send.values()))
            # the packet at the head holds up everything the peer has buffered: it goes out whatever the window
            # says (TCP's fast retransmit does the same); it is queued again only when found lost again
            if not self._fits(len(item.payload)) and item.seq != head:
                break
            out.append(self._transmit(item, now, ts))
        if self.state is State.CONNECTED:
            payload_size = self.payload_size
            while self.unsent_bytes and len(self._in_flight) < MAX_IN_FLIGHT:
                size = min(payload_size, self.unsent_bytes)
                probe = 0
                if self._probing and self.mtu.probe is None:
                    probe = self._probe_size()
                    size = probe or size
                if not self._fits(size):
                    if probe:
                        self.mtu.probe = None  # not sent: offered again with the next packet
                    break
                chunk = bytes(memoryview(self._sendbuf)[self._sendpos : self._sendpos + size])  # one copy
                self._sendpos += size
                self._queue(PacketType.DATA, chunk)
                item = self._in_flight[(self._seq_nr - 1) & SEQ_MASK]
                item.probe = probe > 0
                out.append(self._transmit(item, now, ts))
            if not self.unsent_bytes and self._sendpos:
                self._sendbuf.clear()
                self._sendpos = 0
            if self._closing and self._fin_seq is None and not self.unsent_bytes:
                self._queue(PacketType.FIN, b"")
                out.append(self._transmit(self._in_flight[self._fin_seq], now, ts))  # type: ignore[index]
        if self._ack_pending and self.state is State.CONNECTED:
            # an ST_STATE carries the next sequence number we will send (libtorrent does the same)
            out.append(self._header(PacketType.STATE, self._seq_nr, ts))
        self._ack_pending = False
        return out

    def _transmit(self, item: _Out, now: float, ts: int) -> bytes:
        item.lost = False
        del self._to_send[item.seq]
        item.transmissions += 1
        item.sent_at = now
        self._tx += 1
        item.tx = self._tx
        self._in_flight.move_to_end(item.seq)
        self._bytes_in_flight += len(item.payload)
        if self._rto_at is None:
            self._rto_at = now + self.rto
        self._ack_pending = False
        if item.fragment:
            return Oversize(self._header(item.kind, item.seq, ts) + item.payload)
        return self._header(item.kind, item.seq, ts) + item.payload

    def _finish(self, error: str | None) -> None:
        self.state = State.CLOSED
        self._in_flight.clear()
        self._to_send.clear()
        self._bytes_in_flight = 0
        self._rto_at = None
        self._linger_at = None
        self._events.append(Closed(error))
