"""Circuit Relay v2 messages and vouchers: round trips, bounds, typed errors, and bytes as the spec lays them out."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peerloom.codec.multiaddr import Multiaddr
from peerloom.codec.protobuf import encode_bytes_field, encode_varint_field
from peerloom.codec.varint import read_frame
from peerloom.identity import Identity
from peerloom.net.relay.messages import (
    MAX_ADDRS,
    MAX_MESSAGE_SIZE,
    HopMessage,
    HopType,
    Limit,
    RelayMessageError,
    RelayPeer,
    Reservation,
    Status,
    StopMessage,
    StopType,
    decode_hop,
    decode_stop,
    encode_hop,
    encode_stop,
    open_voucher,
    sign_voucher,
)

RELAY = Identity(Ed25519PrivateKey.from_private_bytes(bytes(32)))
PEER = Identity(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


def unframe(data: bytes) -> bytes:
    """The one message a writer framed: the bounded frame reader the stream side uses, and nothing after it."""
    frame = read_frame(data, MAX_MESSAGE_SIZE)
    assert frame is not None and frame[1] == len(data)
    return frame[0]


def test_hop_status_with_reservation_and_limit_round_trips() -> None:
    voucher = sign_voucher(RELAY, PEER.peer_id, 1_900_000_000)
    msg = HopMessage(HopType.STATUS, status=Status.OK, limit=Limit(120, 1 << 17),
                     reservation=Reservation(1_900_000_000, (Multiaddr(f"/ip4/1.2.3.4/tcp/4001/p2p/{RELAY.peer_id}"),),
                                             voucher))
    assert decode_hop(unframe(encode_hop(msg))) == msg


def test_connect_messages_carry_the_peer() -> None:
    hop = HopMessage(HopType.CONNECT, peer=RelayPeer(PEER.peer_id))
    assert decode_hop(unframe(encode_hop(hop))) == hop
    stop = StopMessage(StopType.CONNECT, peer=RelayPeer(PEER.peer_id, (Multiaddr("/ip4/10.0.0.1/tcp/1"),)),
                       limit=Limit(60, 0))
    assert decode_stop(unframe(encode_stop(stop))) == stop


def test_wire_layout_matches_the_spec_field_numbers() -> None:
    # HopMessage{type=RESERVE} is field 1 varint 0; StopMessage{type=STATUS, status=OK} is 1:1 then 4:100
    assert encode_hop(HopMessage(HopType.RESERVE)) == b"\x02\x08\x00"
    assert unframe(encode_stop(StopMessage(StopType.STATUS, status=Status.OK))) == b"\x08\x01\x20\x64"


def test_unknown_status_is_not_malformed_but_unknown_type_is() -> None:
    assert decode_hop(encode_varint_field(1, 2) + encode_varint_field(5, 999)).status is Status.UNUSED
    with pytest.raises(RelayMessageError):
        decode_hop(encode_varint_field(1, 7))
    with pytest.raises(RelayMessageError):
        decode_stop(b"")  # no type


@pytest.mark.parametrize("data", [b"\x08", b"\x0a\x05ab", b"\x12\x02\x0a\x01", b"\x08\x01\x12\x00", b"\x13"])
def test_malformed_messages_raise_the_typed_error(data: bytes) -> None:
    with pytest.raises(RelayMessageError):
        decode_hop(data)


def test_oversized_messages_are_refused_before_parsing() -> None:
    with pytest.raises(RelayMessageError, match="exceeds"):
        decode_hop(b"\x08\x00" + encode_bytes_field(9, bytes(MAX_MESSAGE_SIZE)))


def test_addresses_are_bounded_and_unreadable_ones_skipped() -> None:
    addr = Multiaddr("/ip4/1.2.3.4/tcp/1").to_bytes()
    peer = encode_bytes_field(1, PEER.peer_id.to_bytes()) + encode_bytes_field(2, b"\xff\xff") + b"".join(
        encode_bytes_field(2, addr) for _ in range(MAX_ADDRS + 10))
    msg = decode_stop(encode_varint_field(1, 0) + encode_bytes_field(2, peer))
    assert msg.peer is not None and len(msg.peer.addrs) == MAX_ADDRS


def test_voucher_verifies_and_names_relay_and_peer() -> None:
    voucher = open_voucher(sign_voucher(RELAY, PEER.peer_id, 123))
    assert (voucher.relay, voucher.peer, voucher.expiration) == (RELAY.peer_id, PEER.peer_id, 123)


def test_a_tampered_or_foreign_voucher_is_refused() -> None:
    good = bytearray(sign_voucher(RELAY, PEER.peer_id, 123))
    good[-1] ^= 1
    with pytest.raises(RelayMessageError, match="signature"):
        open_voucher(bytes(good))
    # signed by PEER but claiming RELAY as the relay: the signer must be the relay it names
    forged = sign_voucher(PEER, PEER.peer_id, 1)
    with pytest.raises(RelayMessageError):
        open_voucher(forged.replace(PEER.peer_id.to_bytes(), RELAY.peer_id.to_bytes(), 1))
