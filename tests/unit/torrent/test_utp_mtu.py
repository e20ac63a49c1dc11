"""Path MTU discovery for uTP: the bisection (a probe acked raises the floor, a lost one lowers the ceiling, EMSGSIZE
is a hard ceiling, it settles), and a connection over a path that drops datagrams larger than its MTU: it settles
below the MTU without counting the lost probes as congestion, and the data arrives byte-identical."""

from __future__ import annotations

import random

import pytest
from support.utp_net import Link, Pair

from peerloom.torrent.utp import MAX_HEADER, Oversize, State, UtpConfig, UtpSocket
from peerloom.torrent.utp_mtu import MIN_DATAGRAM, PEER_DATAGRAM, SETTLED, MtuSearch
from peerloom.torrent.utp_packet import PacketType, encode_header, parse_packet


def test_an_acked_probe_raises_the_floor() -> None:
    search = MtuSearch(1260, 1500)
    probe = search.next_probe()
    assert probe == 1380 and search.next_probe() is None  # one probe at a time
    search.acked(probe)
    assert (search.floor, search.ceiling, search.probe) == (1380, 1500, None)


def test_a_lost_probe_lowers_the_ceiling() -> None:
    search = MtuSearch(1260, 1500)
    probe = search.next_probe()
    assert probe is not None
    search.lost(probe)
    assert (search.floor, search.ceiling, search.probe) == (1260, probe - 1, None)


@pytest.mark.parametrize("path", [1252, 1300, 1472, 1500, 900])
def test_the_search_converges_on_the_path(path: int) -> None:
    search = MtuSearch(1260, PEER_DATAGRAM)
    search.limit(min(path, PEER_DATAGRAM)) if path < 1260 else None  # a route below the start: known at once
    for _ in range(20):
        probe = search.next_probe()
        if probe is None:
            break
        (search.acked if probe <= path else search.lost)(probe)
    assert search.settled and search.next_probe() is None
    assert path - SETTLED < search.floor <= path and search.ceiling <= max(path, search.floor + SETTLED)


def test_emsgsize_is_a_hard_ceiling_below_the_floor_too() -> None:
    search = MtuSearch(1460, 1500)
    search.next_probe()
    search.too_big(1300)
    assert search.ceiling == 1299 and search.floor == 1299 and search.probe is None
    search.acked(1400)  # an ack of an older, larger datagram cannot undo what the kernel said
    assert search.floor == 1299
    search.too_big(100)
    assert search.ceiling == MIN_DATAGRAM  # the floor of every path: below it nothing would ever go


def test_the_ceiling_never_rises() -> None:
    search = MtuSearch(1260, 1400)
    search.limit(1500)
    assert search.ceiling == 1400


def mtu_path(pair: Pair, datagram_limit: int, dropped: list[int]) -> None:
    """Datagrams over `datagram_limit` bytes are dropped (don't-fragment set, a router in the way), unless they may
    travel in fragments (`Oversize`)."""

    def path(to: str, datagram: bytes) -> bytes | None:
        if len(datagram) > datagram_limit and not isinstance(datagram, Oversize):
            dropped.append(len(datagram))
            return None
        return datagram

    pair.filter = path


@pytest.mark.parametrize("limit", [1252, 1350])  # a 1280-byte IPv4 path (28 bytes of IP and UDP), and another
def test_a_connection_settles_below_the_path_mtu_and_the_data_arrives(limit: int) -> None:
    pair = Pair(Link(latency=0.01), UtpConfig(max_payload=1150))
    dropped: list[int] = []
    mtu_path(pair, limit, dropped)
    pair.run(lambda: pair.b.sock is not None and pair.a.sock.state is State.CONNECTED)  # type: ignore[union-attr]
    a = pair.a.sock
    assert a is not None
    cuts: list[None] = []
    on_loss = a.ledbat.on_loss
    a.ledbat.on_loss = lambda: cuts.append(None) or on_loss()  # type: ignore[method-assign, func-returns-value]
    data = random.Random(1).randbytes(2 << 20)
    a.write(data)
    pair.run(lambda: len(pair.b.received) == len(data))
    assert bytes(pair.b.received) == data
    assert dropped, "no probe went past the path's MTU"
    assert a.mtu.settled and limit - SETTLED - MAX_HEADER < a.payload_size <= limit - MAX_HEADER
    assert not cuts  # the lost probes were not taken for congestion


def test_a_datagram_the_kernel_refuses_goes_again_in_fragments_without_a_window_cut() -> None:
    sock = UtpSocket.connect(10, 1000, 0.0, UtpConfig(max_payload=1400))
    sock.datagrams_to_send(0.0)
    sock.receive(parse_packet(encode_header(PacketType.STATE, 10, 500, 1000, 1 << 20, 0, 0)), 0.01)
    sock.write(bytes(5000))
    first, *_ = sock.datagrams_to_send(0.02)
    window = sock.ledbat.window
    sock.datagram_too_big(first)
    assert sock.mtu.ceiling == len(first) - 1  # the kernel's word: nothing that large goes
    assert sock.payload_size == min(1400 + MAX_HEADER, len(first) - 1) - MAX_HEADER
    again = sock.datagrams_to_send(0.03)
    resent = [d for d in again if parse_packet(d).seq_nr == parse_packet(first).seq_nr]
    assert len(resent) == 1 and isinstance(resent[0], Oversize) and resent[0] == first[:4] + resent[0][4:]
    assert sock.ledbat.window == window
