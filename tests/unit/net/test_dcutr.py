"""DCUtR's messages and the two sides' exchange (sans-I/O)."""

from __future__ import annotations

import pytest

from peerloom.codec.multiaddr import Multiaddr
from peerloom.codec.protobuf import encode_bytes_field, encode_varint_field
from peerloom.codec.varint import decode_varint
from peerloom.net.nat.dcutr import (
    MAX_ADDRS,
    MAX_MESSAGE_SIZE,
    DcutrError,
    HolePunch,
    HolePunchType,
    Initiator,
    Responder,
    decode_hole_punch,
    dialable,
    encode_hole_punch,
)

PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
A_ADDRS = [Multiaddr("/ip4/203.0.113.1/tcp/4001"), Multiaddr(f"/dns4/localhost/tcp/4002/p2p/{PEER}")]
B_ADDRS = [Multiaddr("/ip4/198.51.100.7/tcp/5001"), Multiaddr(f"/ip4/198.51.100.7/tcp/9/p2p/{PEER}/p2p-circuit")]


def unframe(data: bytes) -> HolePunch:
    length, start = decode_varint(data, 0)
    assert len(data) - start == length
    return decode_hole_punch(data[start:])


def test_the_exchange_gives_each_side_the_others_addresses_and_b_half_the_rtt() -> None:
    b, a = Initiator(B_ADDRS), Responder(A_ADDRS)
    connect = unframe(b.connect(now=100.0))
    assert connect.type is HolePunchType.CONNECT and list(connect.addrs) == [B_ADDRS[0]]  # no circuit address
    answer = unframe(a.on_connect(connect))
    assert a.remote_addrs == [B_ADDRS[0]]
    sync, delay, to_dial = b.on_connect(answer, now=100.3)
    assert delay == pytest.approx(0.15) and b.rtt == pytest.approx(0.3)
    assert to_dial == [A_ADDRS[0], A_ADDRS[1].without_p2p()]
    assert a.on_sync(unframe(sync)) == [B_ADDRS[0]]


def test_messages_out_of_order_are_refused() -> None:
    a = Responder(A_ADDRS)
    with pytest.raises(DcutrError):
        a.on_sync(HolePunch(HolePunchType.SYNC))
    a.on_connect(HolePunch(HolePunchType.CONNECT))
    with pytest.raises(DcutrError):
        a.on_connect(HolePunch(HolePunchType.CONNECT))
    b = Initiator(B_ADDRS)
    with pytest.raises(DcutrError):
        b.on_connect(HolePunch(HolePunchType.CONNECT), 0.0)  # before ours was sent
    b.connect(0.0)
    with pytest.raises(DcutrError):
        b.on_connect(HolePunch(HolePunchType.SYNC), 0.1)


def test_wire_layout() -> None:
    assert encode_hole_punch(HolePunch(HolePunchType.SYNC)) == b"\x03\x08\xac\x02"  # type = 300


@pytest.mark.parametrize("data", [b"", b"\x08\x01", b"\x08", b"\x12\x05ab", encode_varint_field(1, 200)])
def test_malformed_messages_raise_the_typed_error(data: bytes) -> None:
    with pytest.raises(DcutrError):
        decode_hole_punch(data)


def test_bounds() -> None:
    with pytest.raises(DcutrError, match="exceeds"):
        decode_hole_punch(bytes(MAX_MESSAGE_SIZE + 1))
    many = encode_varint_field(1, 100) + b"".join(
        encode_bytes_field(2, Multiaddr(f"/ip4/10.0.0.1/tcp/{i + 1}").to_bytes()) for i in range(MAX_ADDRS + 5))
    assert len(decode_hole_punch(many).addrs) == MAX_ADDRS
    assert decode_hole_punch(encode_varint_field(1, 100) + encode_bytes_field(2, b"\xff")).addrs == ()


def test_dialable_keeps_tcp_host_addresses_once() -> None:
    addrs = [Multiaddr("/ip4/1.2.3.4/tcp/1"), Multiaddr("/ip4/1.2.3.4/tcp/1"), Multiaddr("/ip6/::1/tcp/2"),
             Multiaddr("/ip4/1.2.3.4/udp/1"), Multiaddr(f"/ip4/1.2.3.4/tcp/1/p2p/{PEER}/p2p-circuit")]
    assert dialable(addrs) == [Multiaddr("/ip4/1.2.3.4/tcp/1"), Multiaddr("/ip6/::1/tcp/2")]
