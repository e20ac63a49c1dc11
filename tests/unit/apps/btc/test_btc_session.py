"""The per-peer handshake (sans-I/O): two sessions complete version/wtxidrelay/sendaddrv2/verack; pings are
answered; BIP 339/155 messages after verack drop the peer; early or redundant messages cost misbehaviour
points up to disconnection; self-connections and ancient peers are refused."""

from __future__ import annotations

import dataclasses

import pytest

from peerloom.apps.btc.p2p import (
    FrameDecoder,
    Inv,
    InvItem,
    Message,
    Ping,
    Pong,
    SendAddrV2,
    SendHeaders,
    Verack,
    Version,
    WtxidRelay,
    decode_message,
    encode_message,
)
from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.session import DISCOURAGE_THRESHOLD, LocalInfo, PeerMisbehaved, PeerSession

NOW = 1_700_000_000
MAGIC = REGTEST.magic


def sent(session: PeerSession) -> list[Message]:
    return [decode_message(*f) for f in FrameDecoder(MAGIC).feed(session.data_to_send())]


def wire(*messages: Message) -> bytes:
    return b"".join(encode_message(MAGIC, m) for m in messages)


def pair() -> tuple[PeerSession, PeerSession]:
    dialer = PeerSession(MAGIC, LocalInfo(nonce=1), outbound=True, peer_address=("127.0.0.1", 18444))
    listener = PeerSession(MAGIC, LocalInfo(nonce=2, start_height=5), outbound=False)
    return dialer, listener


def handshake() -> tuple[PeerSession, PeerSession]:
    dialer, listener = pair()
    dialer.start(NOW)
    for _ in range(3):  # a few round trips settle it
        listener.receive_data(dialer.data_to_send(), NOW)
        dialer.receive_data(listener.data_to_send(), NOW)
    return dialer, listener


def test_two_sessions_complete_the_handshake_in_the_bips_order() -> None:
    dialer, listener = pair()
    dialer.start(NOW)
    first = sent(dialer)
    assert [type(m) for m in first] == [Version]
    assert first[0].addr_recv.host() == "127.0.0.1" and first[0].timestamp == NOW  # type: ignore[attr-defined]
    assert listener.receive_data(wire(*first), NOW) == []
    answer = sent(listener)
    assert [type(m) for m in answer] == [Version, WtxidRelay, SendAddrV2, Verack]
    dialer.receive_data(wire(*answer), NOW)
    assert dialer.established and not listener.established
    reply = sent(dialer)
    assert [type(m) for m in reply] == [WtxidRelay, SendAddrV2, Verack, SendHeaders]
    listener.receive_data(wire(*reply), NOW)
    assert listener.established
    for s in (dialer, listener):
        assert s.features.wtxid_relay and s.features.addrv2 and s.misbehaviour == 0
    assert listener.features.send_headers and dialer.features.version.start_height == 5  # type: ignore[union-attr]


def test_pings_are_answered_and_application_messages_delivered() -> None:
    dialer, listener = handshake()
    inv = Inv((InvItem(2, b"\x01" * 32),))
    assert listener.receive_data(wire(Ping(42), inv), NOW) == [inv]
    assert sent(listener) == [Pong(42)]
    dialer.send(inv)
    assert listener.receive_data(dialer.data_to_send(), NOW) == [inv]


@pytest.mark.parametrize("late", [WtxidRelay(), SendAddrV2()], ids=lambda m: type(m).__name__)
def test_bip339_and_bip155_announcements_after_verack_drop_the_peer(late: Message) -> None:
    _, listener = handshake()
    with pytest.raises(PeerMisbehaved, match="after verack"):
        listener.receive_data(wire(late), NOW)


def test_messages_before_the_handshake_cost_points_up_to_disconnection() -> None:
    dialer, listener = pair()
    listener.receive_data(wire(Ping(1)), NOW)
    assert listener.misbehaviour == 1 and sent(listener) == []  # not answered before version
    dialer.start(NOW)
    listener.receive_data(dialer.data_to_send(), NOW)
    listener.receive_data(wire(Ping(2)), NOW)  # after version, before verack
    assert listener.misbehaviour == 2
    listener.receive_data(dialer.data_to_send() + wire(Verack()), NOW)
    assert listener.established
    with pytest.raises(PeerMisbehaved, match="redundant"):
        listener.receive_data(wire(*[Verack()] * DISCOURAGE_THRESHOLD), NOW)


def test_a_connection_to_ourselves_and_an_ancient_peer_are_refused() -> None:
    me = LocalInfo(nonce=99)
    dialer = PeerSession(MAGIC, me, outbound=True)
    listener = PeerSession(MAGIC, me, outbound=False)
    dialer.start(NOW)
    with pytest.raises(PeerMisbehaved, match="ourselves"):
        listener.receive_data(dialer.data_to_send(), NOW)
    old = PeerSession(MAGIC, LocalInfo(nonce=3), outbound=False)
    (version,) = [m for m in sent(_started()) if isinstance(m, Version)]
    ancient = dataclasses.replace(version, version=31799)
    with pytest.raises(PeerMisbehaved, match="older"):
        old.receive_data(wire(ancient), NOW)


def _started() -> PeerSession:
    s = PeerSession(MAGIC, LocalInfo(nonce=4), outbound=True)
    s.start(NOW)
    return s


def test_a_70015_peer_gets_no_wtxidrelay_and_its_own_is_ignored() -> None:
    (version,) = sent(_started())
    old = dataclasses.replace(version, version=70015)  # type: ignore[type-var]
    listener = PeerSession(MAGIC, LocalInfo(nonce=5), outbound=False)
    listener.receive_data(wire(old, WtxidRelay()), NOW)
    assert [type(m) for m in sent(listener)] == [Version, Verack]
    assert not listener.features.wtxid_relay
    with pytest.raises(RuntimeError):
        listener.send(Ping(1))  # no application traffic before the handshake is done
