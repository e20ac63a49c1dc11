"""atheris fuzz target for Circuit Relay v2 and DCUtR messages (`net.relay.messages`, `net.nat.dcutr`).

Run: `python tests/fuzz/fuzz_relay.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target:
0 a HopMessage, 1 a StopMessage, 2 a reservation voucher (signed envelope), 3 a DCUtR HolePunch message. Only
RelayMessageError / DcutrError may escape; a message that decodes encodes back to one that decodes the same, and a
voucher that opens was signed by the relay it names.
"""

from __future__ import annotations

import harness
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peerloom.codec.varint import read_frame
from peerloom.identity import Identity, PeerId, decode_public_key
from peerloom.net.nat.dcutr import DcutrError, HolePunch, HolePunchType, decode_hole_punch, encode_hole_punch
from peerloom.net.relay.messages import (
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

_RELAY = Identity(Ed25519PrivateKey.from_private_bytes(bytes(32)))


def _payload(framed: bytes) -> bytes:
    frame = read_frame(framed, MAX_MESSAGE_SIZE)  # the bounded frame reader the stream side uses
    assert frame is not None and frame[1] == len(framed)
    return frame[0]


def _hop(data: bytes) -> None:
    msg = decode_hop(data)
    assert decode_hop(_payload(encode_hop(msg))) == msg


def _stop(data: bytes) -> None:
    msg = decode_stop(data)
    assert decode_stop(_payload(encode_stop(msg))) == msg


def _voucher(data: bytes) -> None:
    voucher = open_voucher(data)
    assert PeerId.from_public_key(decode_public_key(voucher.signer)) == voucher.relay  # signed by its relay


def _hole_punch(data: bytes) -> None:
    msg = decode_hole_punch(data)
    assert decode_hole_punch(_payload(encode_hole_punch(msg))) == msg


TestOneInput = harness.Pick(_hop, _stop, _voucher, (_hole_punch, DcutrError), allowed=RelayMessageError)


def seeds() -> list[bytes]:
    """Valid messages to start a corpus from."""
    peer = RelayPeer(_RELAY.peer_id)
    hop = encode_hop(HopMessage(HopType.STATUS, status=Status.OK, limit=Limit(120, 1 << 17),
                                reservation=Reservation(1_900_000_000, (), sign_voucher(_RELAY, _RELAY.peer_id, 1))))
    stop = encode_stop(StopMessage(StopType.CONNECT, peer=peer, limit=Limit(60, 0)))
    punch = encode_hole_punch(HolePunch(HolePunchType.CONNECT, ()))
    return [b"\x00" + _payload(hop), b"\x01" + _payload(stop), b"\x02" + sign_voucher(_RELAY, _RELAY.peer_id, 5),
            b"\x03" + _payload(punch)]


if __name__ == "__main__":
    harness.main(TestOneInput)
