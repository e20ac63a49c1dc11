"""yamux (`/yamux/1.0.0`): many flow-controlled streams over one connection, sans-I/O.

Wire format and rules from the hashicorp yamux spec (mirrored as libp2p specs `yamux/README.md`): a 12-byte
big-endian header (version 0, type, flags, stream id, length), Data / Window Update / Ping / Go Away frames,
SYN/ACK/FIN/RST flags, odd stream ids for the client and even for the server, a 256 KiB initial window per
stream and direction. Like go-yamux, a stream's receive window doubles (up to 16 MiB) when the application
consumed the last window grant within four round trips, so one stream can fill a fast link; the RTT comes
from our own pings, with a floor (see `MIN_TUNING_RTT`).

The Session owns no socket and no clock: feed it received bytes with `receive_data(data, now)`, send what
`data_to_send()` (or `frames_to_send()`) returns, and pass the current time (any monotonic seconds) where asked.
"""

from __future__ import annotations

import enum
import struct
import sys
from collections import deque
from dataclasses import dataclass

from peerloom.errors import PeerloomError, ProtocolError

PROTOCOL_ID = "/yamux/1.0.0"
HEADER_SIZE = 12
VERSION = 0

TYPE_DATA = 0
TYPE_WINDOW_UPDATE = 1
TYPE_PING = 2
TYPE_GO_AWAY = 3

FLAG_SYN = 1
FLAG_ACK = 2
FLAG_FIN = 4
FLAG_RST = 8

GO_AWAY_NORMAL = 0
GO_AWAY_PROTOCOL_ERROR = 1
GO_AWAY_INTERNAL_ERROR = 2

INITIAL_WINDOW = 256 * 1024  # spec, "Flow Control"
MAX_WINDOW = 16 * 1024 * 1024  # auto-tuning ceiling, as go-yamux
MAX_FRAME_SIZE = 64 * 1024  # largest frame we send, header included (go-yamux and js-libp2p use 64 KiB)
MAX_STREAMS = 256  # also the ACK backlog bound of libp2p yamux, "Implementation considerations"
SEND_BUFFER = 1024 * 1024  # bytes the application may queue on one stream beyond what has been framed
MAX_RECEIVE_BUFFER = 128 * 1024 * 1024  # auto-tuning stops when the windows of all streams would pass this
MAX_PENDING_PINGS = 32
MAX_CONTROL_BUFFER = 1024 * 1024  # replies owed to a peer that does not read them (pings, refusals)
# Auto-tuning compares the time a window grant took to be used up with TUNING_RTTS round trips (go-yamux: 4).
# The round trip is that of a ping on an idle connection; under load a window update and the data it allows
# also wait behind the sender's write buffer (megabytes) and whole batches of work in both event loops, so the
# feedback loop is far slower than an idle loopback ping (~1 ms) says. The floor keeps a window that is used
# up in a few milliseconds from being mistaken for one that is used up slowly.
TUNING_RTTS = 4
MIN_TUNING_RTT = 0.02
_MAX_WINDOW_FIELD = 0xFFFFFFFF

_HEADER = struct.Struct(">BBHII")


class YamuxError(ProtocolError):
    """The remote broke the yamux protocol; the session has queued a Go Away (protocol error) and is over."""


class StreamClosedError(PeerloomError):
    """A write or close on a stream that is unknown, reset, or already closed for writing."""


class OpenStreamError(PeerloomError):
    """No new stream now: go-away exchanged, session terminated, stream limit reached or ids used up."""


# --- events -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The remote opened a stream (SYN)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Stream data; acknowledge it with `acknowledge_received` once the application has consumed it.

    `data` is a copy (bytes), or a view of the received buffer when `receive_data` was told not to copy."""

    stream_id: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The remote closed its side of the stream (FIN): no more data will come."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The remote reset (or refused) the stream; it is gone in both directions."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamWritable:
    """A stream that refused part of a write has room again (its send queue fell to half)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PingAck:
    """The answer to one of our pings; `rtt` in the caller's time unit, also stored as `Session.rtt`."""

    opaque: int
    rtt: float


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The remote will accept no new streams; existing streams go on unless the code is an error."""

    error_code: int


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """The remote ended the session with an error code; every stream is gone. Close the connection."""

    error_code: int


Event = (
    StreamOpened
    | DataReceived
    | StreamEnded
    | StreamReset
    | StreamWritable
    | PingAck
    | GoAwayReceived
    | ConnectionTerminated
)


# --- stream state machine -----------------------------------------------------------------------------------------


class StreamState(enum.Enum):
    INIT = "init"  # opened here, SYN not yet framed
    SYN_SENT = "syn sent"
    SYN_RECEIVED = "syn received"  # opened by the remote, ACK not yet framed
    ESTABLISHED = "established"
    LOCAL_CLOSE = "local close"  # our FIN is out
    REMOTE_CLOSE = "remote close"  # their FIN is in
    CLOSED = "closed"
    RESET = "reset"


class _Step(enum.Enum):
    SEND_SYN = "send syn"
    SEND_ACK = "send ack"
    RECV_ACK = "receive ack"
    SEND_FIN = "send fin"
    RECV_FIN = "receive fin"


_S = StreamState
_TRANSITIONS: dict[tuple[StreamState, _Step], StreamState] = {
    (_S.INIT, _Step.SEND_SYN): _S.SYN_SENT,
    (_S.SYN_SENT, _Step.RECV_ACK): _S.ESTABLISHED,
    (_S.SYN_RECEIVED, _Step.SEND_ACK): _S.ESTABLISHED,
    (_S.SYN_SENT, _Step.SEND_FIN): _S.LOCAL_CLOSE,
    (_S.ESTABLISHED, _Step.SEND_FIN): _S.LOCAL_CLOSE,
    (_S.REMOTE_CLOSE, _Step.SEND_FIN): _S.CLOSED,
    (_S.SYN_SENT, _Step.RECV_FIN): _S.REMOTE_CLOSE,
    (_S.SYN_RECEIVED, _Step.RECV_FIN): _S.REMOTE_CLOSE,  # the ACK still goes out with our first frame
    (_S.ESTABLISHED, _Step.RECV_FIN): _S.REMOTE_CLOSE,
    (_S.LOCAL_CLOSE, _Step.RECV_FIN): _S.CLOSED,
    (_S.REMOTE_CLOSE, _Step.SEND_ACK): _S.REMOTE_CLOSE,
}
# Any state but CLOSED/RESET goes to RESET on RST either way. A received ACK outside SYN_SENT is tolerated.


class _Stream:
    __slots__ = (
        "blocked",
        "epoch",
        "fin_received",
        "fin_sent",
        "id",
        "pending_flags",
        "queue",
        "queued",
        "recv_credit",
        "recv_window",
        "send_credit",
        "state",
        "unacked",
        "write_closed",
    )

    def __init__(self, stream_id: int, state: StreamState, pending_flags: int) -> None:
        self.id = stream_id
        self.state = state
        self.pending_flags = pending_flags  # SYN or ACK, carried by the next frame we send on it
        self.send_credit = INITIAL_WINDOW  # what the remote lets us send
        self.queue: deque[memoryview] = deque()  # written, not yet framed
        self.queued = 0
        self.blocked = False  # a write was cut short; StreamWritable is owed
        self.write_closed = False
        self.fin_sent = False
        self.fin_received = False
        self.recv_window = INITIAL_WINDOW  # current window size, grown by auto-tuning
        self.recv_credit = INITIAL_WINDOW  # what the remote may still send
        self.unacked = 0  # delivered to the application, not yet acknowledged by it
        self.epoch: float | None = None  # when the current grant began: first frame heard, then each update

    def advance(self, step: _Step) -> None:
        new = _TRANSITIONS.get((self.state, step))
        if new is not None:
            self.state = new
        elif step is not _Step.RECV_ACK:
            raise AssertionError(f"yamux stream {self.id}: {step.value} in state {self.state.value}")


# --- the session --------------------------------------------------------------------------------------------------


class SessionState(enum.Enum):
    OPEN = "open"
    DRAINING = "draining"  # a Go Away went one way or both; existing streams continue
    TERMINATED = "terminated"  # protocol error or error Go Away: nothing more is processed


class Session:
    """One side of a yamux session: `client=True` opens odd stream ids (the dialer), the server even ones.

    Application side: `open_stream`, `write` (returns how much of the data it took: at most `send_buffer`
    bytes wait per stream; a short write is followed by a StreamWritable event), `close_stream` (FIN, after
    the queued data), `reset_stream`, `acknowledge_received` (frees receive window; the window update goes
    out when half the window is free), `ping`, `go_away`. Network side: `receive_data` returns events, and
    `data_to_send` (joined) or `frames_to_send` (as a list of pieces) the frames ready to go (within the
    peer's windows, streams served round robin).
    """

    def __init__(
        self,
        *,
        client: bool,
        max_streams: int = MAX_STREAMS,
        send_buffer: int = SEND_BUFFER,
        max_window: int = MAX_WINDOW,
        max_receive_buffer: int = MAX_RECEIVE_BUFFER,
        max_frame_size: int = MAX_FRAME_SIZE,
        min_tuning_rtt: float = MIN_TUNING_RTT,
    ) -> None:
        if max_frame_size <= HEADER_SIZE or send_buffer <= 0 or not INITIAL_WINDOW <= max_window <= 1 << 31:
            raise ValueError("invalid yamux session limits")
        if min_tuning_rtt < 0:
            raise ValueError("min_tuning_rtt must not be negative")
        self.client = client
        self.state = SessionState.OPEN
        self.rtt: float | None = None  # latest round trip measured by our pings
        self.go_away_sent = False
        self.go_away_received: int | None = None
        self._max_streams = max_streams
        self._send_buffer = send_buffer
        self._max_window = max_window
        self._max_receive_buffer = max_receive_buffer
        self._min_tuning_rtt = min_tuning_rtt
        self._max_payload = max_frame_size - HEADER_SIZE
        self._next_id = 1 if client else 2
        self._streams: dict[int, _Stream] = {}
        self._ready: dict[int, None] = {}  # ordered set of streams that may have a frame to send
        self._control = bytearray()  # window updates, pings, RSTs, go-away: sent before stream data
        self._events: list[Event] = []
        self._pings: dict[int, float] = {}  # opaque value -> time sent
        self._next_ping = 0
        self._total_window = 0  # sum of our receive windows, bounded for auto-tuning by max_receive_buffer
        # receive parser: a partial header, or the rest of a data frame's payload
        self._header = bytearray()
        self._payload_left = 0
        self._payload_stream: _Stream | None = None  # None while a payload is skipped
        self._payload_fin = False
        self._copy = True  # receive_data's copy argument, for the call in progress

    # --- queries ---

    @property
    def stream_count(self) -> int:
        """Streams not yet closed or reset, both directions."""
        return len(self._streams)

    def stream_state(self, stream_id: int) -> StreamState | None:
        """The stream's state; None once it is closed or reset (it is then forgotten)."""
        stream = self._streams.get(stream_id)
        return stream.state if stream is not None else None

    def write_capacity(self, stream_id: int) -> int:
        """How many bytes `write` would take now (0 when the stream cannot be written)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.write_closed:
            return 0
        return max(0, self._send_buffer - stream.queued)

    def send_window(self, stream_id: int) -> int:
        """The remote's current window for the stream: bytes we may frame before it sends an update."""
        stream = self._streams.get(stream_id)
        return stream.send_credit if stream is not None else 0

    def receive_window(self, stream_id: int) -> int:
        """The stream's current receive window size (auto-tuning grows it)."""
        stream = self._streams.get(stream_id)
        return stream.recv_window if stream is not None else 0

    # --- application side ---

    def open_stream(self) -> int:
        """A new outbound stream's id; its SYN goes out with its first frame."""
        if self.state is SessionState.TERMINATED or self.go_away_received is not None:
            raise OpenStreamError("the remote sent go-away or the session is over; no new streams")
        if len(self._streams) >= self._max_streams:
            raise OpenStreamError(f"yamux stream limit of {self._max_streams} reached")
        stream_id = self._next_id
        if stream_id > _MAX_WINDOW_FIELD:
            raise OpenStreamError("yamux stream ids are used up")
        self._next_id += 2
        self._add_stream(_Stream(stream_id, StreamState.INIT, FLAG_SYN))
        self._ready[stream_id] = None
        return stream_id

    def write(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue data on the stream; returns how many bytes were taken (less than len(data) when the queue is full)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.write_closed:
            raise StreamClosedError(f"yamux stream {stream_id} is not open for writing")
        view = memoryview(data).cast("B")
        take = min(len(view), self._send_buffer - stream.queued)
        if take < len(view):
            stream.blocked = True
        if take <= 0:
            return 0
        # bytes (or a view of bytes) are immutable and kept as they are; anything else is copied so the caller
        # may reuse its buffer
        immutable = isinstance(data, bytes) or (isinstance(data, memoryview) and isinstance(data.obj, bytes))
        stream.queue.append(view[:take] if immutable else memoryview(bytes(view[:take])))
        stream.queued += take
        self._ready[stream_id] = None
        return take

    def close_stream(self, stream_id: int) -> None:
        """Half-close: FIN follows the queued data. The remote may go on sending until it closes too."""
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(f"yamux stream {stream_id} is not open")
        if not stream.write_closed:
            stream.write_closed = True
            self._ready[stream_id] = None

    def reset_stream(self, stream_id: int) -> None:
        """Abort the stream both ways (RST); queued data is dropped. Unknown streams are ignored."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if stream.state is not StreamState.INIT:  # nothing was sent for an INIT stream, so nothing to reset
            self._control += _HEADER.pack(VERSION, TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)
        self._reset(stream)

    def acknowledge_received(self, stream_id: int, size: int, now: float) -> None:
        """The application consumed `size` bytes of the stream: credit them back to the remote.

        A window update goes out once half the window is free. If that half was used up within TUNING_RTTS
        round trips of the previous update (or of the stream's first frame), the window doubles first, up to
        max_window and the session's receive budget (go-yamux's rule). The round trip is the last ping's, but
        at least min_tuning_rtt; before any ping has been answered the window keeps its size.
        """
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if size < 0 or size > stream.unacked:
            raise ValueError(f"acknowledging {size} bytes but {stream.unacked} are unacknowledged")
        stream.unacked -= size
        if stream.fin_received:
            return
        window = stream.recv_window
        grant = window - stream.recv_credit - stream.unacked
        if grant < window // 2:
            return
        if (
            self.rtt is not None
            and stream.epoch is not None
            and now - stream.epoch < TUNING_RTTS * max(self.rtt, self._min_tuning_rtt)
        ):
            extra = min(2 * window, self._max_window) - window
            if extra > 0 and self._total_window + extra <= self._max_receive_buffer:
                stream.recv_window += extra
                self._total_window += extra
                grant += extra
        stream.epoch = now
        stream.recv_credit += grant
        flags = stream.pending_flags
        if flags:
            stream.pending_flags = 0
            stream.advance(_Step.SEND_ACK)
        self._control += _HEADER.pack(VERSION, TYPE_WINDOW_UPDATE, flags, stream_id, grant)

    def ping(self, now: float) -> int:
        """Send a ping (SYN) and return its opaque value; its PingAck event carries the round trip time."""
        opaque = self._next_ping
        self._next_ping = (opaque + 1) & _MAX_WINDOW_FIELD
        if len(self._pings) >= MAX_PENDING_PINGS:
            del self._pings[next(iter(self._pings))]
        self._pings[opaque] = now
        self._control += _HEADER.pack(VERSION, TYPE_PING, FLAG_SYN, 0, opaque)
        return opaque

    def go_away(self, error_code: int = GO_AWAY_NORMAL) -> None:
        """Tell the remote we accept no new streams; an error code also ends the session here."""
        if not self.go_away_sent:
            self.go_away_sent = True
            self._control += _HEADER.pack(VERSION, TYPE_GO_AWAY, 0, 0, error_code)
        if error_code != GO_AWAY_NORMAL:
            self._terminate()
        elif self.state is SessionState.OPEN:
            self.state = SessionState.DRAINING

    def events(self) -> list[Event]:
        """Events not yet returned (StreamWritable events come from data_to_send)."""
        events, self._events = self._events, []
        return events

    # --- network side: sending ---

    def data_to_send(self, max_bytes: int | None = None) -> bytes:
        """Frames ready to go: control frames first, then stream data round robin, one frame per stream per turn.

        With max_bytes, framing stops once that much is gathered (one frame may overshoot it).
        """
        return b"".join(self.frames_to_send(max_bytes))

    def frames_to_send(self, max_bytes: int | None = None) -> list[bytes | memoryview]:
        """What `data_to_send` returns, as the pieces it would join: headers, and payloads as views of the data
        given to `write` (not copied). Empty when nothing is ready. The views stay valid after the call."""
        parts: list[bytes | memoryview] = []
        size = 0
        if self._control:
            parts.append(bytes(self._control))
            size = len(self._control)
            self._control.clear()
        limit = sys.maxsize if max_bytes is None else max_bytes
        ready = self._ready
        streams = self._streams
        while ready and size < limit:
            for stream_id in list(ready):
                stream = streams.get(stream_id)
                added = self._frame(stream, parts) if stream is not None else 0
                if not added:
                    ready.pop(stream_id, None)
                    continue
                size += added
                if size >= limit:
                    break
        return parts

    def _frame(self, stream: _Stream, parts: list[bytes | memoryview]) -> int:
        """Append the stream's next frame to parts; its size, or 0 when the stream has nothing it may send."""
        size = min(stream.queued, stream.send_credit, self._max_payload)
        flags = stream.pending_flags
        # FIN goes on a frame of its own, after the last data: js-libp2p 3.x can lose the data of a frame that
        # also carries FIN (seen with its ping client), and the spec allows either form.
        fin = stream.write_closed and not stream.fin_sent and stream.queued == 0
        if not (size or flags or fin):
            return 0
        if fin:
            flags |= FLAG_FIN
        parts.append(_HEADER.pack(VERSION, TYPE_DATA if size else TYPE_WINDOW_UPDATE, flags, stream.id, size))
        if size:
            queue = stream.queue
            left = size
            while left:
                head = queue[0]
                if len(head) <= left:
                    parts.append(queue.popleft())
                    left -= len(head)
                else:
                    parts.append(head[:left])
                    queue[0] = head[left:]
                    left = 0
            stream.queued -= size
            stream.send_credit -= size
        stream.pending_flags = 0
        if flags & FLAG_SYN:
            stream.advance(_Step.SEND_SYN)
        if flags & FLAG_ACK:
            stream.advance(_Step.SEND_ACK)
        if stream.blocked and stream.queued <= self._send_buffer // 2:
            stream.blocked = False
            self._events.append(StreamWritable(stream.id))
        if fin:
            stream.fin_sent = True
            stream.advance(_Step.SEND_FIN)
            if stream.state is StreamState.CLOSED:
                self._remove(stream)
        return HEADER_SIZE + size

    # --- network side: receiving ---

    def receive_data(self, data: bytes | bytearray | memoryview, now: float, *, copy: bool = True) -> list[Event]:
        """Take received bytes in any split; return the events they cause (and any pending ones).

        Nothing of `data` is kept: DataReceived carries a copy, so the caller may reuse its buffer at once. With
        copy=False it carries a view of `data` instead, and the caller must leave those bytes as they are for as
        long as such a view lives (a driver lending its buffer to the streams until they are read).
        Raises YamuxError when the remote breaks the protocol: the session is then terminated with a
        Go Away (protocol error) waiting in data_to_send(). After termination, input is ignored.
        """
        if self.state is not SessionState.TERMINATED:
            self._copy = copy
            try:
                self._parse(memoryview(data).cast("B"), now)
            except YamuxError:
                self._fail()
                raise
        return self.events()

    def _parse(self, view: memoryview, now: float) -> None:
        pos = 0
        size = len(view)
        header = self._header
        while self.state is not SessionState.TERMINATED:
            if self._payload_left:
                take = min(self._payload_left, size - pos)
                if not take:
                    return
                stream = self._payload_stream
                if stream is not None and stream.state is not StreamState.RESET:
                    payload = view[pos : pos + take]
                    self._events.append(DataReceived(stream.id, bytes(payload) if self._copy else payload))
                pos += take
                self._payload_left -= take
                if self._payload_left:
                    return
                self._end_data_frame()
                continue
            if header:
                take = min(HEADER_SIZE - len(header), size - pos)
                header += view[pos : pos + take]
                pos += take
                if len(header) < HEADER_SIZE:
                    return
                fields = _HEADER.unpack(header)
                header.clear()
            elif size - pos >= HEADER_SIZE:
                fields = _HEADER.unpack_from(view, pos)
                pos += HEADER_SIZE
            else:
                header += view[pos:]
                return
            self._on_frame(*fields, now)

    def _on_frame(self, version: int, frame_type: int, flags: int, stream_id: int, length: int, now: float) -> None:
        if version != VERSION:
            raise YamuxError(f"unsupported yamux version {version}")
        if frame_type in (TYPE_DATA, TYPE_WINDOW_UPDATE):
            self._on_stream_frame(frame_type, flags, stream_id, length, now)
        elif frame_type == TYPE_PING:
            if flags & FLAG_SYN:
                self._reply(_HEADER.pack(VERSION, TYPE_PING, FLAG_ACK, 0, length))
            elif flags & FLAG_ACK:
                sent = self._pings.pop(length, None)
                if sent is not None:
                    self.rtt = max(0.0, now - sent)
                    self._events.append(PingAck(length, self.rtt))
        elif frame_type == TYPE_GO_AWAY:
            self._on_go_away(length)
        else:
            raise YamuxError(f"unknown yamux frame type {frame_type}")

    def _on_stream_frame(self, frame_type: int, flags: int, stream_id: int, length: int, now: float) -> None:
        """Data and Window Update frames: stream opening, flow control, half-close and reset."""
        if stream_id == 0:
            raise YamuxError("yamux data or window update frame on stream 0")
        stream = self._streams.get(stream_id)
        if flags & FLAG_SYN:
            if stream is not None:
                raise YamuxError(f"SYN for yamux stream {stream_id}, which is already open")
            if (stream_id & 1) == (self._next_id & 1):
                raise YamuxError(f"the remote opened yamux stream {stream_id}, an id of our parity")
            stream = self._accept(stream_id)
        if stream is None:  # refused, or closed/reset here already: skip any payload
            if frame_type == TYPE_DATA:
                self._skip(length, INITIAL_WINDOW if flags & FLAG_SYN else self._max_window)
            return
        if stream.state is StreamState.INIT:
            raise YamuxError(f"frame for yamux stream {stream_id} before we announced it")
        if stream.epoch is None:  # the remote's SYN or ACK: the initial window's grant is in effect
            stream.epoch = now
        if flags & FLAG_ACK and stream.state is StreamState.SYN_SENT:
            stream.advance(_Step.RECV_ACK)
        if flags & FLAG_RST:
            self._reset(stream)
            self._events.append(StreamReset(stream_id))
            if frame_type == TYPE_DATA:
                self._skip(length, stream.recv_credit)
            return
        if frame_type == TYPE_WINDOW_UPDATE:
            credit = stream.send_credit + length
            if credit > _MAX_WINDOW_FIELD:
                raise YamuxError(f"window update overflows the send window of yamux stream {stream_id}")
            stream.send_credit = credit
            if length and (stream.queued or stream.write_closed):
                self._ready[stream_id] = None
            if flags & FLAG_FIN:
                self._on_fin(stream)
            return
        if length:
            if stream.fin_received:
                raise YamuxError(f"data on yamux stream {stream_id} after its FIN")
            if length > stream.recv_credit:
                raise YamuxError(
                    f"{length} bytes on yamux stream {stream_id} exceed its receive window of {stream.recv_credit}"
                )
            stream.recv_credit -= length
            stream.unacked += length
        self._payload_left = length
        self._payload_stream = stream
        self._payload_fin = bool(flags & FLAG_FIN)
        if not length:
            self._end_data_frame()

    def _skip(self, length: int, limit: int) -> None:
        """Read past a data payload nobody wants; bounded by what the remote could have been allowed to send."""
        if length > limit:
            raise YamuxError(f"yamux data frame of {length} bytes for a stream that cannot take it")
        self._payload_left = length
        self._payload_stream = None
        self._payload_fin = False

    def _end_data_frame(self) -> None:
        stream = self._payload_stream
        self._payload_stream = None
        if self._payload_fin and stream is not None and stream.state is not StreamState.RESET:
            self._on_fin(stream)

    def _accept(self, stream_id: int) -> _Stream | None:
        """A SYN from the remote: the new stream, or None after queuing a RST (go-away sent or limit reached)."""
        if self.go_away_sent or len(self._streams) >= self._max_streams:
            self._reply(_HEADER.pack(VERSION, TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0))
            return None
        stream = _Stream(stream_id, StreamState.SYN_RECEIVED, FLAG_ACK)
        self._add_stream(stream)
        self._events.append(StreamOpened(stream_id))
        return stream

    def _on_fin(self, stream: _Stream) -> None:
        if stream.fin_received:
            return
        stream.fin_received = True
        stream.advance(_Step.RECV_FIN)
        self._events.append(StreamEnded(stream.id))
        if stream.state is StreamState.CLOSED:
            self._remove(stream)

    def _on_go_away(self, error_code: int) -> None:
        self.go_away_received = error_code
        self._events.append(GoAwayReceived(error_code))
        if error_code != GO_AWAY_NORMAL:
            self._terminate()
            self._events.append(ConnectionTerminated(error_code))
        elif self.state is SessionState.OPEN:
            self.state = SessionState.DRAINING

    def _reply(self, frame: bytes) -> None:
        """Queue a frame the remote's input asked for; a remote that never reads them is cut off."""
        if len(self._control) >= MAX_CONTROL_BUFFER:
            raise YamuxError("the remote keeps asking for replies without reading them")
        self._control += frame

    # --- bookkeeping ---

    def _add_stream(self, stream: _Stream) -> None:
        self._streams[stream.id] = stream
        self._total_window += stream.recv_window

    def _remove(self, stream: _Stream) -> None:
        del self._streams[stream.id]
        self._ready.pop(stream.id, None)
        self._total_window -= stream.recv_window
        stream.queue.clear()
        stream.queued = 0

    def _reset(self, stream: _Stream) -> None:
        stream.state = StreamState.RESET
        self._remove(stream)

    def _terminate(self) -> None:
        self.state = SessionState.TERMINATED
        for stream in self._streams.values():
            stream.state = StreamState.RESET
            stream.queue.clear()
        self._streams.clear()
        self._ready.clear()
        self._total_window = 0
        self._payload_left = 0
        self._header.clear()

    def _fail(self) -> None:
        """The remote broke the protocol: Go Away (protocol error) is the last frame we send."""
        if not self.go_away_sent:
            self.go_away_sent = True
            self._control += _HEADER.pack(VERSION, TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR)
        self._terminate()
