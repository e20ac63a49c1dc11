"""The sans-I/O uTP connection (BEP 29): handshake, ordered delivery under loss, reordering and duplication,
windows, retransmission timers, FIN/RESET, and a hostile peer costing only its own connection."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.utp_net import Link, Pair

from peerloom.torrent.utp import (
    COMPACT_AT,
    LINGER,
    MAX_HEADER,
    MIN_TIMEOUT,
    Closed,
    Connected,
    EndOfStream,
    Oversize,
    State,
    UtpConfig,
    UtpSocket,
)
from peerloom.torrent.utp_mtu import PEER_DATAGRAM
from peerloom.torrent.utp_packet import HEADER_SIZE, PacketType, encode_header, parse_packet


def payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def connected(pair: Pair) -> None:
    pair.run(lambda: pair.b.sock is not None and pair.a.sock.state is State.CONNECTED)  # type: ignore[union-attr]


def test_handshake_uses_bep29_connection_ids_and_sequence_numbers() -> None:
    sent: list[tuple[str, bytes]] = []
    pair = Pair()
    pair.filter = lambda to, d: sent.append((to, d)) or d  # type: ignore[func-returns-value]
    syn = parse_packet(pair.queue[0][3])
    assert syn.type is PacketType.SYN and syn.connection_id == 0x1234 and syn.seq_nr == 100
    connected(pair)
    a, b = pair.a.sock, pair.b.sock
    assert a is not None and b is not None
    assert (a.recv_id, a.send_id) == (0x1234, 0x1235) and (b.recv_id, b.send_id) == (0x1235, 0x1234)
    state = parse_packet(sent[0][1])
    assert sent[0][0] == "a" and state.type is PacketType.STATE
    assert state.connection_id == 0x1234 and state.ack_nr == 100 and state.seq_nr == 5000
    assert pair.a.events == [Connected()] and pair.b.events == [Connected()]
    a.write(b"hello")
    pair.run(lambda: bytes(pair.b.received) == b"hello")
    data = next(parse_packet(d) for to, d in sent if to == "b" and parse_packet(d).type is PacketType.DATA)
    assert data.connection_id == 0x1235 and data.seq_nr == 101
    b.write(b"world")
    pair.run(lambda: bytes(pair.a.received) == b"world")
    first = next(parse_packet(d) for to, d in sent if to == "a" and parse_packet(d).type is PacketType.DATA)
    assert first.seq_nr == 5000  # the acceptor's first DATA carries the seq_nr its SYN-ACK announced


def test_timestamp_difference_echoes_the_peers_clock() -> None:
    pair = Pair(Link(latency=0.025))
    connected(pair)
    assert pair.a.sock is not None
    pair.a.sock.write(b"x")
    seen: list[int] = []
    pair.filter = lambda to, d: seen.append(parse_packet(d).timestamp_difference) or d  # type: ignore[func-returns-value]
    pair.run(lambda: bool(pair.b.received) and len(seen) >= 2)
    assert any(abs(v - 25_000) <= 2 for v in seen)  # the one-way delay in µs, as both clocks agree here


@pytest.mark.parametrize(("loss", "jitter", "duplicate"), [(0.0, 0.0, 0.0), (0.05, 0.02, 0.02)])
def test_transfer_is_byte_identical_both_ways(loss: float, jitter: float, duplicate: float) -> None:
    pair = Pair(Link(latency=0.005, jitter=jitter, loss=loss, duplicate=duplicate, seed=3))
    connected(pair)
    up, down = payload(3 << 20, 1), payload(1 << 20, 2)
    assert pair.a.sock is not None and pair.b.sock is not None
    pair.a.sock.write(up)
    pair.b.sock.write(down)
    pair.run(lambda: len(pair.b.received) == len(up) and len(pair.a.received) == len(down))
    assert bytes(pair.b.received) == up and bytes(pair.a.received) == down
    assert pair.closed(pair.a) is None and pair.closed(pair.b) is None
    if loss:
        assert pair.a.datagrams > 1.04 * len(up) / pair.config.max_payload  # retransmissions really happened


@pytest.mark.parametrize("seed", range(6))
def test_sequence_numbers_wrap_under_loss_with_an_orderly_close(seed: int) -> None:
    """Both sides start just below 2^16, so that every counter wraps mid-transfer, on links that drop, reorder and
    duplicate; each run ends with both FINs acked."""
    link = Link(latency=0.003, jitter=0.01, loss=0.1, duplicate=0.05, seed=seed)
    pair = Pair(link, UtpConfig(max_payload=500), seqs=(0xFFF0 - seed, 0xFFFF - seed))
    connected(pair)
    a, b = pair.a.sock, pair.b.sock
    assert a is not None and b is not None
    up, down = payload(80_000, seed), payload(50_000, seed + 10)
    a.write(up)
    b.write(down)
    a.close()
    pair.run(lambda: pair.eof(pair.b) and len(pair.a.received) == len(down))
    b.close()
    pair.run(lambda: a.closed and b.closed)
    assert bytes(pair.b.received) == up and bytes(pair.a.received) == down
    assert pair.closed(pair.a) == Closed(None) and pair.closed(pair.b) == Closed(None)


def test_transfer_survives_heavy_loss_and_reordering() -> None:
    pair = Pair(Link(latency=0.01, jitter=0.05, loss=0.2, duplicate=0.1, seed=11))
    connected(pair)
    data = payload(300_000)
    assert pair.a.sock is not None
    pair.a.sock.write(data)
    pair.run(lambda: len(pair.b.received) >= len(data))
    assert bytes(pair.b.received) == data


def test_a_single_lost_packet_is_fast_retransmitted_before_the_timer() -> None:
    pair = Pair(Link(latency=0.001))
    connected(pair)
    assert pair.a.sock is not None
    dropped: list[int] = []

    def drop_one(to: str, d: bytes) -> bytes | None:
        p = parse_packet(d)
        if to == "b" and p.type is PacketType.DATA and not dropped and p.seq_nr == 110:
            dropped.append(p.seq_nr)
            return None
        return d

    pair.filter = drop_one
    start = pair.now
    pair.a.sock.write(payload(60_000))
    pair.run(lambda: len(pair.b.received) == 60_000)
    assert dropped == [110]
    assert pair.now - start < MIN_TIMEOUT  # SACK-driven, not the 500 ms timer


def test_orderly_close_delivers_everything_then_ends() -> None:
    pair = Pair(Link(latency=0.002, loss=0.05, seed=5))
    connected(pair)
    a, b = pair.a.sock, pair.b.sock
    assert a is not None and b is not None
    data = payload(200_000)
    a.write(data)
    a.close()
    pair.run(lambda: pair.eof(pair.b))
    assert bytes(pair.b.received) == data
    b.close()
    pair.run(lambda: a.closed and b.closed)
    assert pair.closed(pair.a) == Closed(None) and pair.closed(pair.b) == Closed(None)
    assert EndOfStream() in pair.b.events


def test_a_closed_side_waits_a_while_for_the_peers_fin_then_ends() -> None:
    pair = Pair(Link(latency=0.002))
    connected(pair)
    a, b = pair.a.sock, pair.b.sock
    assert a is not None and b is not None
    a.close()
    pair.run(lambda: pair.eof(pair.b))
    b.write(b"late but wanted")  # a half-closed peer may still send (TCP's half-close)
    pair.run(lambda: bytes(pair.a.received) == b"late but wanted")
    start = pair.now
    pair.run(lambda: a.closed)  # b never closes
    assert pair.closed(pair.a) == Closed(None) and 4.0 <= pair.now - start <= LINGER + 0.1


def test_connect_times_out_when_nothing_answers() -> None:
    pair = Pair(Link(loss=1.0))
    pair.run(lambda: pair.a.sock is not None and pair.a.sock.closed)
    assert pair.closed(pair.a) == Closed("connect timed out")
    assert 3.0 <= pair.now - 1000.0 <= 3.1  # 1 s, then 2 s: given up after 3 s like libtorrent


def test_a_silent_peer_times_out_with_backoff() -> None:
    pair = Pair(Link(latency=0.001))
    connected(pair)
    assert pair.a.sock is not None
    pair.link.loss = 1.0
    pair.a.sock.write(b"lost forever")
    start = pair.now
    pair.run(lambda: pair.a.sock is not None and pair.a.sock.closed)
    assert pair.closed(pair.a) == Closed("timed out")
    assert pair.now - start >= MIN_TIMEOUT * (1 + 2 + 4 + 8 + 16)


def test_the_receive_window_bounds_what_the_sender_sends() -> None:
    config = UtpConfig(recv_window=64_000)
    pair = Pair(Link(latency=0.001), config)
    connected(pair)
    a, b = pair.a.sock, pair.b.sock
    assert a is not None and b is not None
    pair.b.collect = lambda: pair.b.events.extend(b.events())  # type: ignore[method-assign]  # b stops reading
    a.write(payload(500_000))
    pair.flush()
    for _ in range(2000):
        pair.step()
    assert 40_000 <= b.read().__len__() <= 64_000 + config.max_payload
    assert a.unsent_bytes > 300_000  # the sender waits for the window
    del pair.b.collect
    pair.run(lambda: len(pair.b.received) >= 500_000 - 70_000)


def test_a_duplicate_syn_is_acked_again() -> None:
    pair = Pair(Link(latency=0.001))
    syn = pair.queue[0][3]
    connected(pair)
    assert pair.b.sock is not None
    pair.deliver("b", syn)
    (state,) = [parse_packet(d) for d in pair.b.sock.datagrams_to_send(pair.now)]
    assert state.type is PacketType.STATE and state.ack_nr == 100


def hostile(pair: Pair, **fields: int) -> None:
    b = pair.b.sock
    assert b is not None
    header = {"kind": PacketType.DATA, "connection_id": b.recv_id, "seq_nr": 101, "ack_nr": 4999, "wnd_size": 1 << 20,
              "timestamp": 0, "timestamp_difference": 0} | fields
    b.receive(parse_packet(encode_header(**header) + b"junk"), pair.now)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "why"),
    [({"ack_nr": 6000}, "past the last one sent"), ({"seq_nr": 101 + 20_000}, "past the window")],
)
def test_wild_numbers_reset_that_connection(fields: dict[str, int], why: str) -> None:
    pair = Pair(Link(latency=0.001))
    connected(pair)
    hostile(pair, **fields)
    b = pair.b.sock
    assert b is not None and b.closed
    closed = pair.b.events[-1] if pair.b.events and isinstance(pair.b.events[-1], Closed) else b.events()[-1]
    assert isinstance(closed, Closed) and why in (closed.error or "")
    (reset,) = [parse_packet(d) for d in b.datagrams_to_send(pair.now)]
    assert reset.type is PacketType.RESET and reset.connection_id == b.send_id
    pair.deliver("a", encode_header(PacketType.RESET, b.send_id, 0, 0, 0, 0, 0))
    assert pair.a.sock is not None and pair.a.sock.closed


def test_old_duplicates_and_wild_windows_do_not_break_the_connection() -> None:
    pair = Pair(Link(latency=0.001))
    connected(pair)
    hostile(pair, seq_nr=50, ack_nr=4000)  # long past: only acked again
    hostile(pair, seq_nr=101, wnd_size=0)  # a shut window: we still probe with one packet at a time
    b = pair.b.sock
    assert b is not None and not b.closed
    b.write(payload(5000))
    assert len(b.datagrams_to_send(pair.now)) >= 1
    hostile(pair, seq_nr=102, wnd_size=0xFFFFFFFF)  # a huge one: our congestion window still rules
    assert not b.closed and b.bytes_in_flight <= b.ledbat.window + b.config.max_payload


def test_abort_during_connect_sends_nothing() -> None:
    sock = UtpSocket.connect(1, 1, 0.0)
    assert len(sock.datagrams_to_send(0.0)) == 1
    sock.abort("shutting down")
    assert sock.datagrams_to_send(0.0) == [] and sock.events() == [Closed("shutting down")]


def test_three_duplicate_acks_without_sack_resend_the_first_unacked_packet() -> None:
    sock = UtpSocket.connect(10, 1000, 0.0, UtpConfig(max_payload=100))
    sock.datagrams_to_send(0.0)  # the SYN
    sock.receive(parse_packet(encode_header(PacketType.STATE, 10, 500, 1000, 1 << 20, 0, 0)), 0.01)
    sock.write(bytes(500))
    sent = [parse_packet(d) for d in sock.datagrams_to_send(0.02)]
    assert [p.seq_nr for p in sent if p.type is PacketType.DATA] == [1001, 1002]  # the initial window: 2 packets
    dup = encode_header(PacketType.STATE, 10, 500, 1000, 1 << 20, 0, 0)
    for _ in range(2):
        sock.receive(parse_packet(dup), 0.03)
        assert sock.datagrams_to_send(0.03) == []
    sock.receive(parse_packet(dup), 0.03)
    (resent,) = [parse_packet(d) for d in sock.datagrams_to_send(0.03)]
    assert resent.type is PacketType.DATA and resent.seq_nr == 1001


@pytest.mark.parametrize(
    ("a_large", "b_large", "expected"), [(16384, 16384, 16384), (16384, 0, 1200), (0, 16384, 1200)]
)
def test_large_packets_only_when_both_sides_ask(a_large: int, b_large: int, expected: int) -> None:
    syn = parse_packet(UtpSocket.connect(7, 1, 0.0, UtpConfig(large_payload=a_large)).datagrams_to_send(0.0)[0])
    a = UtpSocket.connect(7, 1, 0.0, UtpConfig(large_payload=a_large))
    a.datagrams_to_send(0.0)
    b = UtpSocket.accept(syn, 50, 0.0, UtpConfig(large_payload=b_large))
    (state,) = [parse_packet(d) for d in b.datagrams_to_send(0.0)]
    a.receive(state, 0.01)
    assert a.payload_size == b.payload_size == expected
    a.write(bytes(40_000))
    sizes = []
    for _ in range(10):  # let the window open
        for p in [parse_packet(d) for d in a.datagrams_to_send(0.02)]:
            sizes.append(len(p.payload))
            b.receive(p, 0.02)
        for d in b.datagrams_to_send(0.02):
            a.receive(parse_packet(d), 0.02)
    assert len(b.read()) == 40_000
    if expected > PEER_DATAGRAM:
        assert max(sizes) == expected  # no MTU search: the peer said how large, and no route is in the way
    else:  # the MTU search probes above the start, never past the 1500-byte datagrams a libtorrent peer reads
        assert expected < max(sizes) <= PEER_DATAGRAM - HEADER_SIZE


def test_the_send_buffer_does_not_grow_in_a_steady_transfer() -> None:
    pair = Pair(Link(latency=0.001))
    connected(pair)
    a = pair.a.sock
    assert a is not None
    for _ in range(40):  # the sender never runs dry: its buffer is never empty when it is written to
        a.write(bytes(200_000))
        pair.run(lambda: a.unsent_bytes < 100_000)
        assert a.buffer_size < 200_000 + 100_000 + COMPACT_AT
    pair.run(lambda: len(pair.b.received) == 40 * 200_000)


packets = st.lists(
    st.tuples(
        st.sampled_from([PacketType.DATA, PacketType.STATE, PacketType.FIN, PacketType.SYN]),
        st.integers(-40, 40) | st.integers(0, 0xFFFF),  # seq_nr near the expected one, or anywhere
        st.integers(-40, 40) | st.integers(0, 0xFFFF),  # ack_nr near our last sent, or anywhere
        st.sampled_from([0, 1, 1500, 1 << 20, 0xFFFFFFFF]),
        st.none() | st.binary(min_size=1, max_size=40),
        st.integers(0, 3000),
        st.floats(0, 2),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(packets)
def test_any_packet_sequence_from_a_peer_keeps_the_connection_consistent(script: list) -> None:
    """Whatever a peer sends (near-valid or wild numbers, windows, SACKs), the socket raises nothing, keeps its
    accounting straight, and ends at most once, saying why."""
    syn = parse_packet(encode_header(PacketType.SYN, 7, 1000, 0, 1 << 20, 0, 0))
    sock = UtpSocket.accept(syn, 2000, 0.0, UtpConfig(max_payload=100, recv_window=5000))
    sock.write(bytes(20_000))
    now = 0.0
    ended = 0
    for kind, seq, ack, wnd, sack, size, dt in script:
        now += dt
        sock.tick(now)
        sent = sock.datagrams_to_send(now)
        for d in sent:  # MTU probes are larger than the configured size, never than the search's ceiling (a lost
            # probe sent again in fragments is past it: it keeps its sequence number, hence its size)
            assert isinstance(d, Oversize) or len(d) <= max(sock.mtu.ceiling, 100 + MAX_HEADER)
        seq_nr = (1001 + seq) & 0xFFFF if seq <= 40 else seq
        ack_nr = (2000 + ack) & 0xFFFF if ack <= 40 else ack
        header = encode_header(kind, sock.recv_id, seq_nr, ack_nr, wnd, 0, 0, sack)
        sock.receive(parse_packet(header + bytes(size)), now)
        sock.read()
        ended += sum(isinstance(e, Closed) for e in sock.events())
        assert 0 <= sock.bytes_in_flight <= 20_000
        assert ended == (1 if sock.closed else 0)
        wake = sock.next_wakeup()
        assert wake is None or not sock.closed
