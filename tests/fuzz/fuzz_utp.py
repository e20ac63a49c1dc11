"""atheris fuzz target for uTP (BEP 29): packet parsing (header, extension chain, SACK bitmask), and a
connection fed a hostile peer's datagrams and the kernel's word on the path MTU.

Run: `python tests/fuzz/fuzz_utp.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target,
the rest is its input. Only UtpError may escape the parser, and a packet that parses must re-encode to the very
bytes read; the connection target lets nothing escape: whatever a peer sends, the socket either goes on or
closes with an event, as the driver would reset it on a UtpError.
"""

from __future__ import annotations

import harness

from peerloom.torrent.utp import MAX_HEADER, Closed, UtpConfig, UtpSocket
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


def _connection(data: bytes) -> None:
    """Datagrams (each a length byte and its bytes, the connection id forced to ours) fed to an accepted socket
    that is sending data, with the clock moving on by the byte that follows each one. A datagram whose first byte
    is 0xEE is no datagram: the kernel refused the last datagram sent (EMSGSIZE), and the route's MTU, from the
    next two bytes, is told to the path MTU search."""
    syn = parse_packet(encode_header(PacketType.SYN, 7, 1, 0, 1 << 20, 0, 0))
    sock = UtpSocket.accept(syn, 9, 0.0, UtpConfig(max_payload=100, recv_window=4000))
    sock.write(bytes(5000))
    now = 0.0
    pos = 0
    ended = False
    last_sent = b""
    while pos < len(data) and not sock.closed:
        size = data[pos]
        raw = bytearray(data[pos + 1 : pos + 1 + size])
        now += data[pos + 1 + size] / 50 if pos + 1 + size < len(data) else 0.0
        pos += size + 2
        if raw[:1] == b"\xee" and len(raw) >= 3:
            sock.datagram_too_big(last_sent)
            sock.limit_datagram(int.from_bytes(raw[1:3], "big"))
        else:
            if len(raw) >= 4:
                raw[2:4] = sock.recv_id.to_bytes(2, "big")
            try:
                sock.receive(parse_packet(bytes(raw)), now)
            except UtpError as exc:
                sock.abort(str(exc))
        sock.tick(now)
        for datagram in sock.datagrams_to_send(now):
            parse_packet(datagram)  # what we send is well-formed
            last_sent = datagram
        search = sock.mtu
        assert search.floor <= search.ceiling and sock.payload_size == search.floor - MAX_HEADER
        sock.read()
        ended |= any(isinstance(e, Closed) for e in sock.events())
        assert sock.closed == ended  # a connection ends once, and says so
        assert sock.bytes_in_flight >= 0


TestOneInput = harness.Pick((_packet, UtpError), (_connection, ()))


def seeds() -> list[bytes]:
    syn = encode_header(PacketType.SYN, 7, 1, 0, 1 << 20, 5, 0)
    state = encode_header(PacketType.STATE, 7, 9, 1, 1 << 20, 6, 1, sack=b"\x05\x00\x00\x00")
    data = encode_header(PacketType.DATA, 8, 2, 9, 1 << 20, 7, 2) + b"payload"
    stream = b"".join(bytes((len(d),)) + d + b"\x05" for d in (state, data, data))
    too_big = b"\x03\xee\x04\xb0\x05"  # EMSGSIZE, then a route of 1200-byte datagrams
    return [b"\x00" + syn, b"\x00" + state, b"\x00" + data, b"\x01" + stream, b"\x01" + stream + too_big + stream]


if __name__ == "__main__":
    harness.main(TestOneInput)
