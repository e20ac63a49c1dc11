"""The sans-I/O PeerWire driven from byte strings: the handshake (BEP 3, BEP 52's hybrid answers), every
message-order rule (BEP 3, BEP 6, BEP 10) and the keep-alive / handshake deadline from `tick(now)`."""

from __future__ import annotations

import os

import pytest

from peerloom.errors import ProtocolError
from peerloom.torrent import wire
from peerloom.torrent.peer_wire import (
    HANDSHAKE_TIMEOUT,
    KEEPALIVE_EVERY,
    MAX_ALLOWED_FAST,
    FastExtensionError,
    HandshakeTimeout,
    PeerWire,
    Phase,
)
from peerloom.torrent.resume import pack_bits
from peerloom.torrent.wire import WireError

OURS = b"-PL0000-" + bytes(12)
THEIRS = b"-XX0001-" + os.urandom(12)
V1 = bytes(range(20))
V2 = bytes(range(100, 132))
PIECES = 12


def their_handshake(info_hash: bytes = V1, *, fast: bool = True, extensions: bool = True, v2: bool = False,
                    peer_id: bytes = THEIRS) -> bytes:
    reserved = wire.make_reserved(fast=fast, extensions=extensions, v2=v2)
    return wire.encode_handshake(wire.Handshake(info_hash, peer_id, reserved))


def frames(*messages: wire.Message) -> bytes:
    return b"".join(wire.encode(m) for m in messages)


def opened(*, fast: bool = True, now: float = 0.0) -> PeerWire:
    """An outgoing connection past both handshakes."""
    pw = PeerWire(OURS, outgoing=True, now=now)
    pw.start(V1, None, dht=False)
    assert [type(e) for e in pw.receive(their_handshake(fast=fast), now)] == [wire.Handshake]
    return pw


class Counts:
    """The torrent's piece counts (the picker), as far as the peer's pieces go."""

    def __init__(self, n: int) -> None:
        self.num_pieces = n
        self.availability = [0] * n

    def add_peer_pieces(self, bits: bytearray) -> None:
        self.availability = [a + b for a, b in zip(self.availability, bits, strict=True)]

    def remove_peer_pieces(self, bits: bytearray) -> None:
        self.availability = [a - b for a, b in zip(self.availability, bits, strict=True)]

    def peer_has(self, index: int) -> None:
        self.availability[index] += 1


def apply_pieces(pw: PeerWire, events: list[object], counts: Counts) -> None:
    """What the torrent does with the peer's announcements: they go to the wire's `holdings`."""
    for m in events:
        if isinstance(m, wire.Bitfield):
            pw.holdings.bitfield(m.bits, counts)
        elif isinstance(m, wire.Have):
            pw.holdings.have(m.index, counts)
        elif isinstance(m, wire.HaveAll):
            pw.holdings.have_all(counts)
        elif isinstance(m, wire.HaveNone):
            pw.holdings.have_none(counts)


def bitfield(pieces: set[int]) -> wire.Bitfield:
    return wire.Bitfield(pack_bits([i in pieces for i in range(PIECES)]))


# -- handshake ------------------------------------------------------------------------------------
def test_outgoing_handshake_then_the_messages_that_followed_it() -> None:
    pw = PeerWire(OURS, outgoing=True, now=0.0)
    ours = pw.start(V1, None, dht=True)
    hs = wire.parse_handshake(ours)
    assert (hs.info_hash, hs.peer_id, hs.supports_fast, hs.supports_extensions, hs.supports_dht) == (
        V1, OURS, True, True, True)
    data = their_handshake() + frames(wire.Unchoke(), wire.Have(3))
    # split anywhere, even inside the protocol string
    assert pw.receive(data[:7], 1.0) == []
    events = pw.receive(data[7:], 1.0)
    assert [type(e) for e in events] == [wire.Handshake] and events[0].peer_id == THEIRS
    assert pw.phase is Phase.OPEN and pw.peer_choking  # the rest is held until asked for
    assert pw.receive(b"", 1.0) == [wire.Unchoke(), wire.Have(3)]
    assert not pw.peer_choking


def test_an_answer_with_another_info_hash_is_refused() -> None:
    pw = PeerWire(OURS, outgoing=True, now=0.0)
    pw.start(V1, None, dht=False)
    with pytest.raises(WireError, match="another info-hash"):
        pw.receive(their_handshake(bytes(20)), 0.0)


def test_a_hybrids_answer_may_upgrade_to_the_truncated_v2_hash() -> None:
    pw = PeerWire(OURS, outgoing=True, now=0.0)
    ours = wire.parse_handshake(pw.start(V1, V2, dht=False))
    assert ours.supports_v2  # BEP 52: the upgrade bit on a hybrid's v1 handshake
    pw.receive(their_handshake(V2[:20]), 0.0)
    assert pw.info_hash == V2[:20]


def test_incoming_handshake_waits_for_accept_and_a_hybrid_answers_v2_to_the_upgrade_bit() -> None:
    pw = PeerWire(OURS, outgoing=False, now=0.0)
    events = pw.receive(their_handshake(V1, v2=True) + frames(wire.Interested()), 0.0)
    assert events == [wire.parse_handshake(their_handshake(V1, v2=True))] and pw.phase is Phase.ACCEPTING
    assert pw.receive(frames(wire.Have(1)), 0.0) == []  # held: no torrent yet
    answer = wire.parse_handshake(pw.accept(V2, dht=False))
    assert answer.info_hash == V2[:20] == pw.info_hash and answer.peer_id == OURS
    assert pw.receive(b"", 0.0) == [wire.Interested(), wire.Have(1)] and pw.peer_interested


def test_incoming_without_the_upgrade_bit_is_answered_with_its_own_hash() -> None:
    pw = PeerWire(OURS, outgoing=False, now=0.0)
    pw.receive(their_handshake(V1), 0.0)
    assert wire.parse_handshake(pw.accept(V2, dht=False)).info_hash == V1


def test_accept_before_a_handshake_and_bad_handshakes_are_errors() -> None:
    with pytest.raises(WireError):
        PeerWire(OURS, outgoing=False, now=0.0).accept(None, dht=False)
    with pytest.raises(WireError, match="not a BitTorrent handshake"):
        PeerWire(OURS, outgoing=False, now=0.0).receive(b"GET / HTTP/1.1\r\n", 0.0)
    with pytest.raises(WireError, match="ourselves"):
        PeerWire(OURS, outgoing=False, now=0.0).receive(their_handshake(peer_id=OURS), 0.0)


# -- the peer's pieces: any order, any number of times --------------------------------------------
@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([bitfield({0, 1})], {0, 1}),  # first
        ([wire.Interested(), wire.KeepAlive(), bitfield({2})], {2}),  # late
        ([bitfield({0, 1}), wire.Have(3), bitfield({1, 5})], {1, 5}),  # repeated: the whole new set
        ([wire.Have(7), bitfield({4}), wire.Have(9)], {4, 9}),  # have before the bitfield
        ([bitfield({4}), wire.HaveAll()], set(range(PIECES))),  # BEP 6, late
        ([wire.HaveAll(), wire.HaveNone(), wire.Have(2)], {2}),
        ([], set()),  # nothing at all: it has nothing (yet)
    ],
)
def test_piece_announcements_in_any_order(messages: list[wire.Message], expected: set[int]) -> None:
    pw = opened(fast=True)
    events = pw.receive(frames(*messages), 1.0)
    assert events == messages
    counts = Counts(PIECES)
    apply_pieces(pw, events, counts)
    assert counts.availability == [int(i in expected) for i in range(PIECES)]


@pytest.mark.parametrize(
    "message", [wire.HaveAll(), wire.HaveNone(), wire.RejectRequest(0, 0, 16384), wire.AllowedFast(1),
                wire.SuggestPiece(2)]
)
def test_fast_extension_messages_need_the_fast_bit(message: wire.Message) -> None:
    assert opened(fast=True).receive(frames(message), 0.0) == [message]
    with pytest.raises(FastExtensionError):
        opened(fast=False).receive(frames(bitfield({1}), message), 0.0)


def test_a_reject_of_a_request_we_never_sent_changes_nothing() -> None:
    pw = opened()
    pw.outstanding[(1, 0)] = 0.0
    events = pw.receive(frames(wire.RejectRequest(2, 0, 16384)), 0.0)
    assert events == [wire.RejectRequest(2, 0, 16384)]  # the torrent finds nothing of ours to abort
    assert pw.outstanding == {(1, 0): 0.0}


def test_allowed_fast_pieces_may_be_requested_while_choked() -> None:
    pw = opened()
    pw.receive(frames(wire.AllowedFast(4)), 0.0)
    assert pw.peer_choking and pw.may_request(4) and not pw.may_request(5)
    pw.receive(frames(wire.Unchoke()), 0.0)
    assert pw.may_request(5)
    pw.receive(frames(*[wire.AllowedFast(i) for i in range(10 * MAX_ALLOWED_FAST)]), 0.0)
    assert len(pw.allowed_fast) == MAX_ALLOWED_FAST  # a peer cannot grow it without bound


# -- choke and interest, both ways ----------------------------------------------------------------
def test_choke_and_interest_from_the_peer() -> None:
    pw = opened()
    assert pw.peer_choking and not pw.peer_interested
    pw.receive(frames(wire.Unchoke(), wire.Interested()), 0.0)
    assert not pw.peer_choking and pw.peer_interested
    pw.receive(frames(wire.Choke(), wire.NotInterested()), 0.0)
    assert pw.peer_choking and not pw.peer_interested


@pytest.mark.parametrize("fast", [True, False])
def test_choking_the_peer_drops_its_requests_and_rejects_them_with_the_fast_extension(fast: bool) -> None:
    pw = opened(fast=fast)
    assert pw.send(wire.Choke()) == b""  # already choked
    assert pw.send(wire.Unchoke()) == frames(wire.Unchoke()) and pw.send(wire.Unchoke()) == b""
    assert not pw.am_choking
    pw.pending.extend([(0, 0, 16384), (0, 16384, 16384)])
    rejects = [wire.RejectRequest(0, 0, 16384), wire.RejectRequest(0, 16384, 16384)] if fast else []
    assert pw.send(wire.Choke()) == frames(wire.Choke(), *rejects)
    assert pw.am_choking and not pw.pending


def test_our_interest() -> None:
    pw = opened()
    assert pw.send(wire.NotInterested()) == b""
    assert pw.send(wire.Interested()) == frames(wire.Interested()) and pw.am_interested
    assert pw.send(wire.Interested()) == b""
    assert pw.send(wire.NotInterested()) == frames(wire.NotInterested()) and not pw.am_interested


def test_other_messages_are_only_encoded() -> None:
    pw = opened()
    for m in (wire.Have(3), wire.HaveAll(), wire.Extended(0, b"de"), wire.KeepAlive()):
        assert pw.send(m) == wire.encode(m)
    assert pw.am_choking and not pw.am_interested


# -- pieces and requests: the parser's tuples, the data a view of the received bytes ---------------
def test_pieces_and_requests_are_delivered_as_they_are_parsed() -> None:
    pw = opened()
    block = os.urandom(16384)
    data = memoryview(bytearray(frames(wire.Request(1, 0, 16384)) + wire.piece_header(2, 16384, len(block)) + block))
    request, piece = pw.receive(data, 0.0)
    assert type(request) is wire.Request and request == (1, 0, 16384)
    assert type(piece) is wire.Piece and piece.index == 2 and piece.begin == 16384
    assert isinstance(piece.data, memoryview) and piece.data.obj is data.obj and piece.data == block


# -- BEP 10: the extension handshake at any time ---------------------------------------------------
def test_extension_handshake_first_late_and_repeated() -> None:
    pw = opened()
    pw.receive(frames(wire.Extended(0, b"d1:md6:ut_pexi5e11:ut_metadatai6ee1:v4:Toy1e")), 0.0)
    assert pw.ext_ids == {"ut_pex": 5, "ut_metadata": 6} and pw.client == "Toy1"
    pw.receive(frames(bitfield({1}), wire.Unchoke(), wire.Have(2)), 0.0)
    # a later one holds only changes: 0 disables, missing fields keep their values
    pw.receive(frames(wire.Extended(0, b"d1:md6:ut_pexi0eee")), 0.0)
    assert pw.ext_ids == {"ut_metadata": 6} and pw.client == "Toy1"
    late = opened()
    late.receive(frames(wire.Interested(), wire.Extended(0, b"d1:md11:ut_metadatai3eee")), 0.0)
    assert late.ext_ids == {"ut_metadata": 3}


def test_a_malformed_extension_handshake_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):  # the extension module's own error
        opened().receive(frames(wire.Extended(0, b"not bencode")), 0.0)


# -- malformed frames -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "frame",
    [
        b"\x00\x00\x00\x01\x63",  # unknown id 99
        b"\x00\x00\x00\x06\x04\x00\x00\x00\x01\x00",  # have with 5 payload bytes
        b"\x00\x00\x40\x0a\x07" + bytes(8),  # a piece longer than a block: refused from its header alone
        b"\x00\x00\x00\x02\x00\x00",  # choke with a payload
        b"\x00\x00\x00\x0d\x06" + bytes(8) + b"\x00\x01\x00\x00",  # a request of 64 KiB
    ],
)
def test_oversized_and_unknown_messages_are_errors(frame: bytes) -> None:
    with pytest.raises(WireError):
        opened().receive(frame, 0.0)


# -- time: the handshake deadline, then the keep-alive ---------------------------------------------
def test_the_handshake_deadline() -> None:
    pw = PeerWire(OURS, outgoing=True, now=100.0)
    pw.start(V1, None, dht=False)
    assert pw.next_wakeup() == 100.0 + HANDSHAKE_TIMEOUT
    assert pw.tick(100.0 + HANDSHAKE_TIMEOUT - 1) == b""
    with pytest.raises(HandshakeTimeout):
        pw.tick(100.0 + HANDSHAKE_TIMEOUT)


def test_keep_alive_after_a_silence_of_ours() -> None:
    pw = opened(now=100.0)
    assert pw.next_wakeup() == 100.0 + KEEPALIVE_EVERY  # the handshake deadline is gone
    assert pw.tick(100.0 + HANDSHAKE_TIMEOUT) == b""
    pw.sent(150.0)  # the driver wrote something: the keep-alive waits from there
    assert pw.next_wakeup() == 150.0 + KEEPALIVE_EVERY
    assert pw.tick(100.0 + KEEPALIVE_EVERY) == b""
    assert pw.tick(150.0 + KEEPALIVE_EVERY) == frames(wire.KeepAlive())
    assert pw.next_wakeup() == 150.0 + 2 * KEEPALIVE_EVERY
    assert pw.tick(151.0 + KEEPALIVE_EVERY) == b""
    # what the peer sends does not count as ours, but it is remembered for the idle check
    pw.receive(frames(wire.KeepAlive()), 400.0)
    assert pw.last_received == 400.0 and pw.next_wakeup() == 150.0 + 2 * KEEPALIVE_EVERY
