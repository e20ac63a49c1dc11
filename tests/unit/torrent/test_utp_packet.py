"""uTP packet codec (BEP 29): header fields, the extension chain, SACK bitmasks, and the bounds on what a peer sends."""

from __future__ import annotations

import pytest

from peerloom.torrent.utp_packet import (
    HEADER_SIZE,
    MAX_EXTENSIONS,
    Packet,
    PacketType,
    UtpError,
    encode_header,
    encode_packet,
    is_utp_datagram,
    parse_packet,
    sack_bitmask,
    sacked,
)


def test_header_layout_matches_bep29() -> None:
    raw = encode_header(
        PacketType.SYN, 0x1234, seq_nr=1, ack_nr=0, wnd_size=0x10000, timestamp=7, timestamp_difference=9
    )
    assert len(raw) == HEADER_SIZE
    assert raw[0] == 0x41  # type 4 (SYN) in the high nibble, version 1 in the low
    assert raw[1] == 0 and raw[2:4] == b"\x12\x34"
    assert raw[4:8] == (7).to_bytes(4, "big") and raw[8:12] == (9).to_bytes(4, "big")
    assert raw[12:16] == (0x10000).to_bytes(4, "big") and raw[16:18] == b"\x00\x01" and raw[18:20] == b"\x00\x00"
    p = parse_packet(raw)
    assert (p.type, p.connection_id, p.seq_nr, p.ack_nr, p.wnd_size, p.timestamp, p.timestamp_difference) == (
        PacketType.SYN, 0x1234, 1, 0, 0x10000, 7, 9,
    )
    assert p.sack is None and bytes(p.payload) == b""


def test_sequence_numbers_and_timestamps_wrap() -> None:
    raw = encode_header(PacketType.DATA, 1, seq_nr=0x10001, ack_nr=-1, wnd_size=0, timestamp=2**32 + 5,
                        timestamp_difference=-1)
    p = parse_packet(raw)
    assert (p.seq_nr, p.ack_nr, p.timestamp, p.timestamp_difference) == (1, 0xFFFF, 5, 0xFFFFFFFF)


def test_sack_and_payload_round_trip() -> None:
    raw = encode_header(PacketType.STATE, 9, 3, 100, 5000, 1, 2, sack=b"\x05\x00\x00\x80") + b"hello"
    p = parse_packet(raw)
    assert p.sack == b"\x05\x00\x00\x80" and bytes(p.payload) == b"hello"
    assert encode_packet(p) == raw
    assert sacked(100, p.sack) == [102, 104, 133]


def test_unknown_extensions_are_skipped_and_kept_in_order() -> None:
    p = Packet(PacketType.DATA, 1, 2, 3, extensions=((3, b"\x00\x01\x02\x03"), (1, b"\xff" * 4), (77, b"")),
               payload=b"x")
    raw = encode_packet(p)
    q = parse_packet(raw)
    assert q.extensions == p.extensions and q.sack == b"\xff" * 4 and bytes(q.payload) == b"x"
    assert encode_packet(q) == raw


def test_sack_bitmask_bit_order_and_size() -> None:
    # BEP 29: bit 0 of the first byte is ack_nr + 2; the mask is a multiple of 4 bytes
    assert sack_bitmask(10, {12}) == b"\x01\x00\x00\x00"
    assert sack_bitmask(10, {13, 20}) == b"\x02\x01\x00\x00"
    assert sack_bitmask(10, {12 + 32}) == b"\x00" * 4 + b"\x01\x00\x00\x00"
    assert sack_bitmask(10, {11}) is None  # ack_nr + 1 is the gap itself, never in the mask
    assert sack_bitmask(0xFFFE, {0, 9}) == b"\x01\x02\x00\x00"  # wraps modulo 2^16
    assert sorted(sacked(0xFFFE, b"\x01\x02\x00\x00")) == [0, 9]
    assert sack_bitmask(10, {12 + 300}) is None  # beyond the largest mask we send


def test_demultiplexing_utp_from_krpc() -> None:
    utp = encode_header(PacketType.DATA, 1, 2, 3, 4, 5, 6)
    assert is_utp_datagram(utp)
    assert not is_utp_datagram(b"d1:ad2:id20:" + b"a" * 20 + b"e1:q4:ping1:t2:aa1:y1:qe")
    assert not is_utp_datagram(utp[:10])
    assert not is_utp_datagram(b"\x51" + utp[1:])  # type 5 does not exist


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\x01" * 19, "shorter"),
        (b"\x02" + bytes(19), "version"),
        (b"\x51" + bytes(19), "type"),
        (b"\x01\x01" + bytes(18), "past the end"),  # a SACK announced, nothing follows
        (b"\x01\x01" + bytes(18) + b"\x00\x08" + bytes(4), "past the end"),
        (b"\x01\x01" + bytes(18) + b"\x00\x00", "0 bytes"),
        (b"\x01\x01" + bytes(18) + b"\x01\x04" + bytes(4) + b"\x00\x04" + bytes(4), "two selective"),
        (b"\x01\x02" + bytes(18) + b"\x02\x00" * MAX_EXTENSIONS, "longer than"),
    ],
)
def test_malformed_packets_raise_utp_error(raw: bytes, why: str) -> None:
    with pytest.raises(UtpError, match=why):
        parse_packet(raw)


def test_a_sack_of_any_length_is_read_as_libtorrent_sends_it() -> None:
    # libtorrent sends (span + 7) / 8 bytes, not the multiple of 4 that BEP 29 asks for
    p = parse_packet(b"\x21\x01" + bytes(18) + b"\x00\x03\x01\x00\x80")
    assert p.sack == b"\x01\x00\x80" and sacked(p.ack_nr, p.sack) == [2, 25]


def test_our_datagram_extension_follows_a_sack_and_is_read_back() -> None:
    raw = encode_header(PacketType.STATE, 9, 3, 100, 5000, 1, 2, sack=b"\x01\x00\x00\x00", max_datagram=65507)
    p = parse_packet(raw)
    assert p.sack == b"\x01\x00\x00\x00" and p.max_datagram == 65507 and encode_packet(p) == raw
    assert parse_packet(encode_header(PacketType.SYN, 9, 3, 0, 0, 0, 0, max_datagram=2000)).max_datagram == 2000
    assert parse_packet(encode_header(PacketType.SYN, 9, 3, 0, 0, 0, 0)).max_datagram is None


def test_the_longest_allowed_chain_parses() -> None:
    raw = b"\x01\x02" + bytes(18) + b"\x02\x00" * (MAX_EXTENSIONS - 1) + b"\x00\x00"
    assert len(parse_packet(raw).extensions) == MAX_EXTENSIONS
