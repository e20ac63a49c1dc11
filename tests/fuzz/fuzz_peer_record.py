"""atheris fuzz target for signed peer records (the BEP 44 value of `discovery.peer_record`).

Run: `python tests/fuzz/fuzz_peer_record.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target:
0 decodes the rest as a record value; 1 signs the rest with a fixed key and opens it as a full record (signature,
key and salt checked). Only PeerRecordError may escape; a value that decodes has at most MAX_RECORD_ADDRS addresses,
each ending in the peer's id, and encodes back to a value that decodes to the same addresses.
"""

from __future__ import annotations

import harness
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peerloom.codec.multiaddr import Multiaddr
from peerloom.dht.bep44 import MAX_VALUE, make_mutable
from peerloom.discovery.peer_record import (
    MAX_RECORD_ADDRS,
    SALT,
    PeerRecordError,
    decode_value,
    encode_value,
    open_record,
)
from peerloom.identity import Identity

_SEED = bytes(range(32))
_IDENTITY = Identity(Ed25519PrivateKey.from_private_bytes(_SEED))
PEER = _IDENTITY.peer_id


def _value(data: bytes) -> None:
    addrs, timestamp = decode_value(PEER, data)
    assert len(addrs) <= MAX_RECORD_ADDRS and all(a.peer_id == PEER for a in addrs)
    again, stamp = decode_value(PEER, encode_value(addrs, timestamp))
    assert stamp == timestamp and again == addrs


def _record(data: bytes) -> None:
    raw = data[:MAX_VALUE]
    key, signature = make_mutable(_SEED, raw, 1, SALT)
    record = open_record(PEER, key, signature, raw, 1, SALT)
    assert record.peer == PEER and record.seq == 1


TestOneInput = harness.Pick(_value, _record, allowed=PeerRecordError)


def seeds() -> list[bytes]:
    """Valid record values to start a corpus from."""
    one = encode_value([Multiaddr("/ip4/127.0.0.1/tcp/4001"), Multiaddr("/ip6/::1/tcp/4001")], 1_800_000_000)
    two = encode_value([Multiaddr(f"/dns4/node.example/tcp/443/p2p/{PEER}")], 7)
    return [b"\x00" + one, b"\x01" + one, b"\x00" + two]


if __name__ == "__main__":
    harness.main(TestOneInput)
