"""BEP 55 hole punching, sans-I/O: the ut_holepunch message bytes, the relay's answers and the bounds on punching."""

from __future__ import annotations

import pytest

from peerloom.torrent import holepunch as hp
from peerloom.torrent.holepunch import ErrorCode, Holepunch, HolepunchError, MsgType


def test_message_bytes_as_bep55_lays_them_out() -> None:
    v4 = hp.encode_holepunch(Holepunch(MsgType.CONNECT, ("192.0.2.7", 6881)))
    assert v4 == bytes([1, 0, 192, 0, 2, 7]) + (6881).to_bytes(2, "big") + bytes(4)
    err = hp.encode_holepunch(Holepunch(MsgType.ERROR, ("2001:db8::1", 80), ErrorCode.NO_SUPPORT))
    assert err[:2] == b"\x02\x01" and len(err) == 2 + 16 + 6 and err[-4:] == b"\x00\x00\x00\x03"
    assert hp.parse_holepunch(err) == Holepunch(MsgType.ERROR, ("2001:db8::1", 80), 3)
    # an IPv4 peer seen on a dual-stack socket goes out as IPv4
    mapped = hp.encode_holepunch(Holepunch(MsgType.RENDEZVOUS, ("::ffff:198.51.100.9", 7000)))
    assert hp.parse_holepunch(mapped) == Holepunch(MsgType.RENDEZVOUS, ("198.51.100.9", 7000))


@pytest.mark.parametrize("payload", [
    b"", b"\x00", b"\x03\x00" + bytes(10), b"\x00\x02" + bytes(10), b"\x00\x00" + bytes(9), b"\x00\x00" + bytes(11),
    b"\x00\x01" + bytes(10),  # IPv6 type with an IPv4-sized body
])
def test_malformed_messages_are_refused(payload: bytes) -> None:
    with pytest.raises(HolepunchError):
        hp.parse_holepunch(payload)


def test_relay_introduces_both_sides_or_says_why_not() -> None:
    a, b = ("198.51.100.1", 6881), ("203.0.113.2", 6882)
    to_a, to_b = hp.relay_answer(a, b, True, False)
    assert hp.parse_holepunch(to_a) == Holepunch(MsgType.CONNECT, b)
    assert to_b is not None and hp.parse_holepunch(to_b) == Holepunch(MsgType.CONNECT, a)
    for supports, is_self, initiator, target, code in [
        (None, False, a, b, ErrorCode.NOT_CONNECTED),
        (False, False, a, b, ErrorCode.NO_SUPPORT),
        (True, True, a, b, ErrorCode.NO_SELF),
        (True, False, None, b, ErrorCode.NO_SUCH_PEER),  # we do not know where the initiator listens
        (True, False, a, ("203.0.113.2", 0), ErrorCode.NO_SUCH_PEER),
    ]:
        to_a, to_b = hp.relay_answer(initiator, target, supports, is_self)
        assert to_b is None
        assert hp.parse_holepunch(to_a) == Holepunch(MsgType.ERROR, hp.canonical(target), code)


def test_rendezvous_only_through_the_peer_that_told_us_and_not_too_often() -> None:
    state: hp.HolepunchState[str] = hp.HolepunchState()
    b = ("203.0.113.2", 6882)
    assert state.rendezvous_for(b, 0.0) is None  # nobody told us of b
    state.learned(("::ffff:203.0.113.2", 6882), "relay")
    relay, payload = state.rendezvous_for(b, 1.0) or (None, b"")
    assert relay == "relay" and hp.parse_holepunch(payload) == Holepunch(MsgType.RENDEZVOUS, b)
    assert state.rendezvous_for(b, 2.0) is None  # asked a moment ago
    assert state.rendezvous_for(b, 1.0 + hp.PUNCH_COOLDOWN) is not None
    state.forget_source("relay")
    assert state.rendezvous_for(b, 1000.0) is None  # the relay left


def test_punches_are_bounded() -> None:
    state: hp.HolepunchState[str] = hp.HolepunchState()
    addrs = [(f"192.0.2.{i}", 7000) for i in range(1, 20)]
    taken = [a for a in addrs if state.may_punch(a, 0.0)]
    assert len(taken) == hp.MAX_PUNCHES and len(state.in_flight) == hp.MAX_PUNCHES
    assert not state.may_punch(taken[0], 0.0)  # already in flight
    state.done(taken[0])
    assert not state.may_punch(taken[0], 1.0)  # punched a moment ago, unasked: a relay hammering us
    assert state.may_punch(taken[0], 1.0 + hp.PUNCH_COOLDOWN)
    state.learned(addrs[-1], "relay")
    state.rendezvous_for(addrs[-1], 5.0)
    assert not state.may_punch(("192.0.2.99", 0), 5.0)  # port 0
    for a in taken[1:]:
        state.done(a)
    assert state.may_punch(addrs[-1], 6.0)  # the answer to our own rendezvous is punched at once


def test_remembered_addresses_are_bounded() -> None:
    state: hp.HolepunchState[int] = hp.HolepunchState()
    for i in range(hp.MAX_SOURCES + 500):
        state.learned((f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 6881), i)
    assert state.rendezvous_for(("10.0.0.0", 6881), 0.0) is None  # the oldest were dropped
    assert state.rendezvous_for((f"10.0.{(hp.MAX_SOURCES + 499) >> 8 & 255}.{(hp.MAX_SOURCES + 499) & 255}", 6881),
                                0.0) is not None
