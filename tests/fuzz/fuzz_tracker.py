"""atheris fuzz target for tracker responses: HTTP announce replies and compact peer lists.

Run: `python tests/fuzz/fuzz_tracker.py [corpus dir] [-max_total_time=N]`. The first input byte picks the
target, the rest is its input. Only TrackerError (a refusal, or TrackerProtocolError for a malformed reply)
may escape; `unpack_peers` may raise its documented ValueError only for a list of the wrong length. Every
peer a response yields must be a real address and port.
"""

from __future__ import annotations

import ipaddress

import harness

from peerloom.codec.bencode import encode
from peerloom.codec.compact import pack_peers, unpack_peers
from peerloom.torrent.tracker import MAX_PEERS, TrackerError, parse_http_announce


def _announce(data: bytes) -> None:
    resp = parse_http_announce(data)
    assert type(resp.interval) is int and resp.interval > 0
    assert len(resp.peers) <= MAX_PEERS
    for host, port in resp.peers:
        assert str(ipaddress.ip_address(host)) == host
        assert type(port) is int and 0 < port < 65536, f"peer port {port}"


def _compact(data: bytes) -> None:
    if not data:
        return
    v6, limit, body = bool(data[0] & 1), data[0] >> 1, data[1:]
    size = 18 if v6 else 6
    if len(body) % size:
        try:
            unpack_peers(body, v6, limit)
        except ValueError:
            return
        raise AssertionError("a compact list of the wrong length was accepted")
    peers = unpack_peers(body, v6, limit)
    sent = [body[i : i + size] for i in range(0, min(len(body), size * limit), size)]
    assert peers == [
        (str(ipaddress.ip_address(e[:-2])), int.from_bytes(e[-2:], "big")) for e in sent if e[-2:] != b"\x00\x00"
    ]
    assert pack_peers(peers, v6) == b"".join(e for e in sent if e[-2:] != b"\x00\x00")


TestOneInput = harness.Pick(_announce, _compact, allowed=TrackerError)


def seeds() -> list[bytes]:
    """Valid inputs for every target, to start a corpus from."""
    compact = bytes([127, 0, 0, 1, 0x1A, 0xE1, 10, 0, 0, 2, 0, 0])
    compact6 = bytes(15) + b"\x01\x00\x50"
    announces = [
        {b"interval": 1800, b"min interval": 60, b"peers": compact, b"peers6": compact6, b"complete": 3,
         b"incomplete": 1, b"warning message": b"careful"},
        {b"interval": 5, b"peers": [{b"ip": b"10.0.0.1", b"port": 7, b"peer id": b"x" * 20},
                                    {b"ip": b"2001:db8::1", b"port": 65535}]},
        {b"failure reason": b"unregistered torrent"},
    ]
    return [b"\x00" + encode(a) for a in announces] + [b"\x01\x40" + compact, b"\x01\x41" + compact6 * 2]


if __name__ == "__main__":
    harness.main(TestOneInput)
