"""atheris fuzz target for uTP (BEP 29): packet parsing (header, extension chain, SACK bitmask).

Run: `python tests/fuzz/fuzz_utp.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target,
the rest is its input. Only UtpError may escape; a packet that parses must re-encode to the very bytes read.
"""

from __future__ import annotations

import harness

from peerloom.torrent.utp_packet import (
    EXT_SACK,
    PacketType,
    UtpError,
    encode_header,
    encode_packet,
    is_utp_datagram,
    parse_packet,
    sacked,
)


def _packet(data: bytes) -> None:
    packet = parse_packet(data)
    assert is_utp_datagram(data)
    assert encode_packet(packet) == data
    for kind, mask in packet.extensions:
        if kind == EXT_SACK:
            assert all(0 <= s <= 0xFFFF for s in sacked(packet.ack_nr, mask))


TestOneInput = harness.Pick(_packet, allowed=UtpError)


def seeds() -> list[bytes]:
    syn = encode_header(PacketType.SYN, 7, 1, 0, 1 << 20, 5, 0)
    state = encode_header(PacketType.STATE, 7, 9, 1, 1 << 20, 6, 1, sack=b"\x05\x00\x00\x00")
    data = encode_header(PacketType.DATA, 8, 2, 9, 1 << 20, 7, 2) + b"payload"
    return [b"\x00" + syn, b"\x00" + state, b"\x00" + data]


if __name__ == "__main__":
    harness.main(TestOneInput)
