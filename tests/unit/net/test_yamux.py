"""yamux: spec frame bytes, two sessions back to back (streams, half-close, reset, flow control, auto-tuning,
limits, ping, go-away), byte splits and fuzzing."""

import itertools
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerloom.errors import ProtocolError
from peerloom.net.yamux import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR,
    INITIAL_WINDOW,
    MAX_FRAME_SIZE,
    MAX_WINDOW,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    ConnectionTerminated,
    DataReceived,
    GoAwayReceived,
    OpenStreamError,
    PingAck,
    Session,
    SessionState,
    StreamClosedError,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamState,
    StreamWritable,
    YamuxError,
)


def frame(frame_type: int, flags: int, stream_id: int, length: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BBHII", 0, frame_type, flags, stream_id, length) + payload


def parse_frames(data: bytes) -> list[tuple[int, int, int, int]]:
    """(type, flags, stream id, length) of each frame in data."""
    frames, pos = [], 0
    while pos < len(data):
        _, frame_type, flags, stream_id, length = struct.unpack_from(">BBHII", data, pos)
        frames.append((frame_type, flags, stream_id, length))
        pos += 12 + (length if frame_type == TYPE_DATA else 0)
    return frames


def merged(events: list) -> list:
    """Events with consecutive DataReceived of one stream joined (payloads may arrive in pieces)."""
    out: list = []
    for event in events:
        previous = out[-1] if out else None
        same_stream = isinstance(previous, DataReceived) and previous.stream_id == getattr(event, "stream_id", None)
        if isinstance(event, DataReceived) and same_stream:
            out[-1] = DataReceived(event.stream_id, previous.data + event.data)
            continue
        out.append(event)
    return out


class Pair:
    """A client and a server session wired back to back, with a simulated clock."""

    def __init__(self, **limits) -> None:
        self.client = Session(client=True, **limits)
        self.server = Session(client=False, **limits)
        self.now = 0.0
        self.events = {self.client: [], self.server: []}

    def peer(self, side: Session) -> Session:
        return self.server if side is self.client else self.client

    def pump(self, rounds: int = 1000) -> None:
        """Move bytes both ways until both are quiet; events collect in self.events."""
        for _ in range(rounds):
            moved = False
            for side in (self.client, self.server):
                out = side.data_to_send()
                self.events[side] += side.events()
                if out:
                    moved = True
                    self.events[self.peer(side)] += self.peer(side).receive_data(out, self.now)
            if not moved:
                return
        raise AssertionError("the sessions kept talking")

    def take(self, side: Session) -> list:
        events, self.events[side] = merged(self.events[side]), []
        return events


def received(events: list, stream_id: int) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id)


# --- frame bytes (hashicorp yamux spec.md, "Framing") ---------------------------------------------------------------


def test_first_frames_match_the_spec_layout():
    client = Session(client=True)
    first = client.open_stream()
    second = client.open_stream()
    assert (first, second) == (1, 3)  # client ids are odd
    assert Session(client=False).open_stream() == 2  # server ids are even
    client.write(first, b"hi")
    # version 0, type Data, flags SYN, stream 1, length 2; then stream 3 announced by a window update with SYN
    assert client.data_to_send() == bytes.fromhex("00 00 0001 00000001 00000002") + b"hi" + bytes.fromhex(
        "00 01 0001 00000003 00000000"
    )


def test_ping_and_go_away_bytes():
    session = Session(client=True)
    assert session.ping(0.0) == 0
    session.go_away()
    assert session.data_to_send() == bytes.fromhex("00 02 0001 00000000 00000000 00 03 0000 00000000 00000000")
    # a ping SYN is answered by a ping ACK carrying the same opaque value
    session.receive_data(frame(TYPE_PING, FLAG_SYN, 0, 0xDEADBEEF), 0.0)
    assert session.data_to_send() == bytes.fromhex("00 02 0002 00000000 deadbeef")


# --- streams --------------------------------------------------------------------------------------------------------


def test_open_accept_and_data_both_ways():
    pair = Pair()
    sid = pair.client.open_stream()
    assert pair.client.stream_state(sid) is StreamState.INIT
    pair.client.write(sid, b"request")
    pair.pump()
    assert pair.take(pair.server) == [StreamOpened(sid), DataReceived(sid, b"request")]
    assert pair.client.stream_state(sid) is StreamState.SYN_SENT
    assert pair.server.stream_state(sid) is StreamState.SYN_RECEIVED
    pair.server.write(sid, b"response")
    out = pair.server.data_to_send()
    assert parse_frames(out) == [(TYPE_DATA, FLAG_ACK, sid, 8)]  # the ACK rides on the first data frame
    assert pair.client.receive_data(out, 0.0) == [DataReceived(sid, b"response")]
    assert pair.client.stream_state(sid) is pair.server.stream_state(sid) is StreamState.ESTABLISHED


def test_half_close_then_full_close_forgets_the_stream():
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.write(sid, b"last words")
    pair.client.close_stream(sid)
    pair.pump()
    assert pair.take(pair.server) == [StreamOpened(sid), DataReceived(sid, b"last words"), StreamEnded(sid)]
    assert pair.client.stream_state(sid) is StreamState.LOCAL_CLOSE
    assert pair.server.stream_state(sid) is StreamState.REMOTE_CLOSE
    with pytest.raises(StreamClosedError):
        pair.client.write(sid, b"more")
    pair.server.write(sid, b"still talking")
    pair.pump()
    assert pair.take(pair.client) == [DataReceived(sid, b"still talking")]
    pair.server.close_stream(sid)
    pair.pump()
    assert pair.take(pair.client) == [StreamEnded(sid)]
    assert pair.client.stream_state(sid) is pair.server.stream_state(sid) is None
    assert pair.client.stream_count == pair.server.stream_count == 0


def test_fin_waits_for_queued_data_and_follows_it_in_a_frame_of_its_own():
    session = Session(client=True)
    sid = session.open_stream()
    session.write(sid, b"x" * 100)
    session.close_stream(sid)
    assert parse_frames(session.data_to_send()) == [
        (TYPE_DATA, FLAG_SYN, sid, 100),
        (TYPE_WINDOW_UPDATE, FLAG_FIN, sid, 0),  # never on the data frame (js-libp2p 3.x can drop that data)
    ]


def test_reset_both_ways():
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.write(sid, b"x")
    pair.pump()
    pair.take(pair.server)
    pair.server.reset_stream(sid)
    pair.pump()
    assert pair.take(pair.client) == [StreamReset(sid)]
    assert pair.client.stream_state(sid) is None
    with pytest.raises(StreamClosedError):
        pair.client.write(sid, b"y")
    pair.client.reset_stream(sid)  # unknown now: ignored
    # data still in flight for a reset stream is skipped
    pair.server.receive_data(frame(TYPE_DATA, 0, sid, 3, b"old"), 0.0)
    assert pair.server.state is SessionState.OPEN


def test_resetting_an_unannounced_stream_sends_nothing():
    session = Session(client=True)
    sid = session.open_stream()
    session.write(sid, b"never sent")
    session.reset_stream(sid)
    assert session.data_to_send() == b""


def test_syn_refused_with_rst_reports_reset_to_the_opener():
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.write(sid, b"x")
    out = pair.client.data_to_send()
    pair.server.receive_data(out, 0.0)
    pair.server.reset_stream(sid)
    assert parse_frames(pair.server.data_to_send()) == [(TYPE_WINDOW_UPDATE, FLAG_RST, sid, 0)]


# --- flow control ---------------------------------------------------------------------------------------------------


def test_sender_stops_at_the_window_and_resumes_on_update():
    pair = Pair(send_buffer=4 * INITIAL_WINDOW)
    sid = pair.client.open_stream()
    data = random.Random(1).randbytes(INITIAL_WINDOW + 1000)
    assert pair.client.write(sid, data) == len(data)
    pair.pump()
    events = pair.take(pair.server)
    assert received(events, sid) == data[:INITIAL_WINDOW]
    assert pair.client.send_window(sid) == 0
    # the application consumes less than half: no update yet
    pair.server.acknowledge_received(sid, INITIAL_WINDOW // 2 - 1, pair.now)
    assert pair.server.data_to_send() == b""
    pair.server.acknowledge_received(sid, 1, pair.now)
    update = pair.server.data_to_send()
    assert parse_frames(update) == [(TYPE_WINDOW_UPDATE, FLAG_ACK, sid, INITIAL_WINDOW // 2)]
    pair.client.receive_data(update, pair.now)
    pair.pump()
    assert received(pair.take(pair.server), sid) == data[INITIAL_WINDOW:]


def test_outgoing_data_is_split_into_frames_of_at_most_64_kib():
    session = Session(client=True)
    sid = session.open_stream()
    session.write(sid, bytes(200_000))
    frames = parse_frames(session.data_to_send())
    assert all(12 + length <= MAX_FRAME_SIZE for _, _, _, length in frames)
    assert sum(length for *_, length in frames) == 200_000


def test_a_frame_as_large_as_the_window_is_accepted():
    server = Session(client=False)
    events = server.receive_data(frame(TYPE_DATA, FLAG_SYN, 1, INITIAL_WINDOW, bytes(INITIAL_WINDOW)), 0.0)
    assert merged(events) == [StreamOpened(1), DataReceived(1, bytes(INITIAL_WINDOW))]


def test_exceeding_the_window_is_a_protocol_error_with_go_away():
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.write(sid, b"x")
    pair.pump()
    with pytest.raises(YamuxError):
        pair.server.receive_data(frame(TYPE_DATA, 0, sid, INITIAL_WINDOW), 0.0)
    assert pair.server.state is SessionState.TERMINATED
    assert parse_frames(pair.server.data_to_send()) == [(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR)]
    assert pair.server.receive_data(b"anything", 0.0) == []  # input after the failure is ignored
    assert isinstance(YamuxError("x"), ProtocolError)


def test_short_write_then_writable_event():
    session = Session(client=True, send_buffer=1000)
    sid = session.open_stream()
    assert session.write(sid, bytes(1500)) == 1000
    assert session.write_capacity(sid) == 0
    assert session.write(sid, b"more") == 0
    session.data_to_send()
    assert session.events() == [StreamWritable(sid)]
    assert session.write_capacity(sid) == 1000


def test_write_copies_mutable_buffers():
    pair = Pair()
    sid = pair.client.open_stream()
    buffer = bytearray(b"original")
    pair.client.write(sid, buffer)
    buffer[:] = b"mutated!"
    pair.pump()
    assert received(pair.take(pair.server), sid) == b"original"


def test_streams_share_the_connection_round_robin():
    session = Session(client=True)
    first, second = session.open_stream(), session.open_stream()
    session.write(first, bytes(200_000))
    session.write(second, bytes(200_000))
    order = [stream_id for _, _, stream_id, _ in parse_frames(session.data_to_send())]
    assert order[:4] == [first, second, first, second]


def test_data_to_send_respects_max_bytes():
    session = Session(client=True)
    sid = session.open_stream()
    session.write(sid, bytes(INITIAL_WINDOW))
    first = session.data_to_send(max_bytes=1000)
    assert len(first) <= MAX_FRAME_SIZE
    rest = session.data_to_send()
    assert sum(length for *_, length in parse_frames(first + rest)) == INITIAL_WINDOW


def test_frames_to_send_gives_the_pieces_data_to_send_joins_without_copying_payloads():
    def busy(session: Session) -> None:
        session.ping(0.0)
        first, second = session.open_stream(), session.open_stream()
        session.write(first, payload)
        session.write(second, b"small")
        session.close_stream(second)

    payload = bytes(range(256)) * 1024  # 256 KiB: four frames and a bit
    joined, pieces = Session(client=True), Session(client=True)
    busy(joined)
    busy(pieces)
    frames = pieces.frames_to_send(max_bytes=100_000)
    assert b"".join(frames) == joined.data_to_send(max_bytes=100_000)
    assert any(isinstance(f, memoryview) and f.obj is payload for f in frames)  # a view of the written bytes
    assert b"".join(pieces.frames_to_send()) == joined.data_to_send()
    assert pieces.frames_to_send() == []


def test_received_data_is_copied_out_of_the_callers_buffer():
    buffer = bytearray(frame(TYPE_DATA, FLAG_SYN, 1, 5, b"hello") + frame(TYPE_DATA, 0, 1, 3, b"abc")[:14])
    session = Session(client=False)
    events = session.receive_data(memoryview(buffer), 0.0)
    buffer[:] = bytes(len(buffer))  # the driver reuses its buffer for the next read
    events += session.receive_data(b"c", 0.0)
    assert events == [StreamOpened(1), DataReceived(1, b"hello"), DataReceived(1, b"ab"), DataReceived(1, b"c")]
    assert all(type(e.data) is bytes for e in events if isinstance(e, DataReceived))


# --- auto-tuning ----------------------------------------------------------------------------------------------------


def measure_rtt(pair: Pair, rtt: float) -> None:
    pair.server.ping(pair.now)
    pair.client.receive_data(pair.server.data_to_send(), pair.now)
    pair.now += rtt
    events = pair.server.receive_data(pair.client.data_to_send(), pair.now)
    assert events == [PingAck(0, rtt)]


def stream_bulk(pair: Pair, sid: int, total: int, consume_delay: float) -> None:
    """Send `total` bytes client -> server; the server consumes each delivery `consume_delay` after it arrived."""
    chunk = bytes(1 << 20)
    sent = got = 0
    while got < total:
        while sent < total:
            taken = pair.client.write(sid, chunk[: total - sent])
            sent += taken
            if not taken:
                break
        out = pair.client.data_to_send()
        pair.client.events()
        events = pair.server.receive_data(out, pair.now)
        pair.now += consume_delay
        for event in events:
            if isinstance(event, DataReceived):
                got += len(event.data)
                pair.server.acknowledge_received(sid, len(event.data), pair.now)
        pair.client.receive_data(pair.server.data_to_send(), pair.now)


def stream_paced(pair: Pair, sid: int, total: int, piece: int, step: float) -> None:
    """Send `total` bytes client -> server over a link that delivers `piece` bytes of frames every `step`
    seconds; the sender always has data waiting and the server consumes each piece as it arrives."""
    chunk = bytes(1 << 20)
    sent = got = 0
    while got < total:
        while sent < total and (taken := pair.client.write(sid, chunk[: total - sent])):
            sent += taken
        out = pair.client.data_to_send(max_bytes=piece)
        pair.client.events()
        pair.now += step
        for event in pair.server.receive_data(out, pair.now):
            if isinstance(event, DataReceived):
                got += len(event.data)
                pair.server.acknowledge_received(sid, len(event.data), pair.now)
        pair.client.receive_data(pair.server.data_to_send(), pair.now)


def test_window_doubles_up_to_16_mib_when_consumed_within_four_rtts():
    pair = Pair()
    measure_rtt(pair, 0.050)
    sid = pair.client.open_stream()
    pair.client.write(sid, b"x")
    pair.pump()
    pair.take(pair.server)
    pair.server.acknowledge_received(sid, 1, pair.now)
    windows = []
    for _ in range(12):
        stream_bulk(pair, sid, 8 << 20, consume_delay=0.001)
        windows.append(pair.server.receive_window(sid))
    assert windows[0] > INITIAL_WINDOW
    assert windows == sorted(windows)
    assert windows[-1] == MAX_WINDOW
    assert pair.client.send_window(sid) <= MAX_WINDOW


def test_window_stays_when_the_application_is_slow():
    pair = Pair()
    measure_rtt(pair, 0.010)
    sid = pair.client.open_stream()
    stream_bulk(pair, sid, 4 << 20, consume_delay=0.5)
    assert pair.server.receive_window(sid) == INITIAL_WINDOW


@pytest.mark.parametrize(("step", "grows"), [(0.21, False), (0.19, True)])
def test_window_grows_only_when_a_grant_is_used_up_within_four_rtts(step, grows):
    pair = Pair()
    measure_rtt(pair, 0.050)
    sid = pair.client.open_stream()
    # half the initial window arrives (and is consumed) per step: one grant per step, 4 x RTT = 0.2 s
    stream_paced(pair, sid, 2 << 20, piece=INITIAL_WINDOW // 2, step=step)
    assert (pair.server.receive_window(sid) > INITIAL_WINDOW) is grows


def test_an_idle_loopback_rtt_is_floored_so_a_busy_stream_still_grows():
    """A ping on an idle loopback connection says ~1 ms, but under load a window grant and the data it allows take
    several milliseconds between two Python processes. With the raw RTT the window stops at 1 MiB, where a grant
    (512 KiB at 128 KiB per 1.1 ms) takes 4.4 ms; with the floor it grows to the ceiling."""
    windows = {}
    for floor in (0.0, 0.02):
        pair = Pair(min_tuning_rtt=floor)
        measure_rtt(pair, 0.001)
        sid = pair.client.open_stream()
        stream_paced(pair, sid, 64 << 20, piece=128 * 1024, step=0.0011)
        windows[floor] = pair.server.receive_window(sid)
    assert windows == {0.0: 4 * INITIAL_WINDOW, 0.02: MAX_WINDOW}


def test_the_first_grant_grows_the_window_when_the_stream_is_fast_from_the_start():
    pair = Pair()
    measure_rtt(pair, 0.001)
    sid = pair.client.open_stream()
    pair.client.write(sid, bytes(INITIAL_WINDOW))
    pair.pump()  # the server hears of the stream (SYN) with its first data
    pair.now += 0.005
    pair.server.acknowledge_received(sid, INITIAL_WINDOW // 2, pair.now)
    assert pair.server.receive_window(sid) == 2 * INITIAL_WINDOW
    update = parse_frames(pair.server.data_to_send())
    assert update == [(TYPE_WINDOW_UPDATE, FLAG_ACK, sid, INITIAL_WINDOW // 2 + INITIAL_WINDOW)]
    with pytest.raises(ValueError):
        Session(client=True, min_tuning_rtt=-1.0)


def test_window_stays_without_an_rtt_or_beyond_the_session_budget():
    pair = Pair()
    sid = pair.client.open_stream()
    stream_bulk(pair, sid, 4 << 20, consume_delay=0.0)
    assert pair.server.receive_window(sid) == INITIAL_WINDOW  # no ping, no RTT, no tuning
    pair = Pair(max_receive_buffer=INITIAL_WINDOW * 3)
    measure_rtt(pair, 0.050)
    sid = pair.client.open_stream()
    stream_bulk(pair, sid, 16 << 20, consume_delay=0.0)
    assert pair.server.receive_window(sid) == 2 * INITIAL_WINDOW  # doubling again would pass the budget


# --- limits, ping, go-away ------------------------------------------------------------------------------------------


def test_syn_beyond_the_stream_limit_is_refused_with_rst():
    pair = Pair()
    pair.server = Session(client=False, max_streams=2)
    pair.events[pair.server] = []
    ids = [pair.client.open_stream() for _ in range(3)]
    for sid in ids:
        pair.client.write(sid, b"hello")
    pair.pump()
    assert [e for e in pair.take(pair.server) if isinstance(e, StreamOpened)] == [StreamOpened(1), StreamOpened(3)]
    assert pair.take(pair.client) == [StreamReset(5)]
    assert pair.server.stream_count == 2


def test_local_stream_limit_raises():
    session = Session(client=True, max_streams=1)
    session.open_stream()
    with pytest.raises(OpenStreamError):
        session.open_stream()


def test_ping_measures_rtt_and_unknown_acks_are_ignored():
    pair = Pair()
    opaque = pair.client.ping(10.0)
    pair.server.receive_data(pair.client.data_to_send(), 10.1)
    events = pair.client.receive_data(pair.server.data_to_send(), 10.25)
    assert events == [PingAck(opaque, pytest.approx(0.25))]
    assert pair.client.rtt == pytest.approx(0.25)
    assert pair.client.receive_data(frame(TYPE_PING, FLAG_ACK, 0, 999), 11.0) == []


def test_go_away_stops_new_streams_only():
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.write(sid, b"a")
    pair.pump()
    pair.take(pair.server)
    pair.client.go_away()
    pair.pump()
    assert pair.take(pair.server) == [GoAwayReceived(GO_AWAY_NORMAL)]
    with pytest.raises(OpenStreamError):
        pair.server.open_stream()
    # the client sent go-away: a new stream from the server is refused
    refused = pair.client.receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 2, 0), 0.0)
    assert refused == []
    assert parse_frames(pair.client.data_to_send()) == [(TYPE_WINDOW_UPDATE, FLAG_RST, 2, 0)]
    # existing streams carry on
    pair.server.write(sid, b"b")
    pair.pump()
    assert pair.take(pair.client) == [DataReceived(sid, b"b")]
    assert pair.client.state is pair.server.state is SessionState.DRAINING


def test_go_away_with_an_error_code_terminates():
    pair = Pair()
    pair.client.open_stream()
    events = pair.client.receive_data(frame(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR), 0.0)
    assert events == [GoAwayReceived(GO_AWAY_PROTOCOL_ERROR), ConnectionTerminated(GO_AWAY_PROTOCOL_ERROR)]
    assert pair.client.state is SessionState.TERMINATED
    assert pair.client.stream_count == 0


def test_pings_without_reading_the_replies_are_bounded():
    session = Session(client=False)
    flood = frame(TYPE_PING, FLAG_SYN, 0, 1) * 100_000
    with pytest.raises(YamuxError):
        session.receive_data(flood, 0.0)


# --- protocol errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x01" + frame(TYPE_PING, FLAG_SYN, 0, 0)[1:],  # version 1
        frame(7, 0, 0, 0),  # unknown type
        frame(TYPE_DATA, 0, 0, 0),  # data on stream 0
        frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 2, 0),  # the client opening an even id, which is the server's
        frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0) * 2,  # duplicate SYN
        frame(TYPE_DATA, FLAG_SYN, 1, INITIAL_WINDOW + 1),  # beyond the initial window
        frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0) + frame(TYPE_WINDOW_UPDATE, 0, 1, 0xFFFFFFFF),  # window overflow
        frame(TYPE_DATA, FLAG_SYN | FLAG_FIN, 1, 1, b"a") + frame(TYPE_DATA, 0, 1, 1, b"b"),  # data after FIN
        frame(TYPE_DATA, 0, 1, MAX_WINDOW + 1),  # too large for a stream we do not know
    ],
)
def test_protocol_errors(data):
    server = Session(client=False)  # remote is the client: odd ids
    with pytest.raises(YamuxError):
        server.receive_data(data, 0.0)
    assert server.state is SessionState.TERMINATED


def test_frames_for_a_stream_not_yet_announced_are_an_error():
    client = Session(client=True)
    sid = client.open_stream()
    with pytest.raises(YamuxError):
        client.receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_ACK, sid, 0), 0.0)


def test_acknowledging_more_than_received_is_a_caller_bug():
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.write(sid, b"abc")
    pair.pump()
    with pytest.raises(ValueError):
        pair.server.acknowledge_received(sid, 4, 0.0)


# --- splits and fuzzing ---------------------------------------------------------------------------------------------


def conversation() -> bytes:
    """What a client sends in a busy exchange: several streams, data, FIN, RST, window update, ping, go-away."""
    client = Session(client=True)
    out = b""
    first, second, third = client.open_stream(), client.open_stream(), client.open_stream()
    client.write(first, random.Random(2).randbytes(100_000))
    client.write(second, b"short")
    client.close_stream(second)
    out += client.data_to_send()
    client.reset_stream(third)
    client.ping(0.0)
    client.write(first, b"tail")
    client.close_stream(first)
    out += client.data_to_send()
    client.go_away()
    return out + client.data_to_send()


def events_for(pieces) -> list:
    server = Session(client=False)
    events = []
    for piece in pieces:
        events += server.receive_data(piece, 0.0)
    return merged(events), server.data_to_send()


def test_one_byte_at_a_time_gives_the_same_events():
    data = conversation()
    whole = events_for([data])
    assert events_for(data[i : i + 1] for i in range(len(data))) == whole
    assert StreamEnded(3) in whole[0] and StreamReset(5) in whole[0] and GoAwayReceived(0) in whole[0]


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(0, 200_000), max_size=20))
def test_random_splits_give_the_same_events(cuts):
    data = conversation()
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    assert events_for(data[a:b] for a, b in itertools.pairwise(bounds)) == events_for([data])


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=400), client=st.booleans(), valid_prefix=st.booleans())
def test_random_bytes_raise_only_yamux_errors(data, client, valid_prefix):
    session = Session(client=client)
    session.open_stream()
    remote_id = 2 if client else 1
    if valid_prefix:  # a stream the remote opened, so that random frames reach the stream paths
        data = frame(TYPE_WINDOW_UPDATE, FLAG_SYN, remote_id, 0) + frame(TYPE_DATA, 0, remote_id, 3, b"abc") + data
    try:
        for event in session.receive_data(data, 1.0):
            if isinstance(event, DataReceived):
                session.acknowledge_received(event.stream_id, len(event.data), 1.0)
        session.data_to_send()
    except YamuxError:
        assert session.state is SessionState.TERMINATED
