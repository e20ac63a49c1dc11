"""atheris fuzz target for BEP 14 local service discovery announces (the BT-SEARCH datagram).

Run: `python tests/fuzz/fuzz_lsd.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target (there
is one), the rest is a datagram. Only LsdError may escape; an announce that parses has a valid port and 20-byte
info-hashes, and survives a round trip through `encode`.
"""

from __future__ import annotations

import harness

from peerloom.discovery.lsd import Announce, LocalDiscovery, LsdError, decode, encode


def _announce(data: bytes) -> None:
    msg = decode(data)
    assert 0 < msg.port < 65536 and msg.info_hashes
    assert all(len(h) == 20 for h in msg.info_hashes)
    again = decode(encode(Announce(msg.port, msg.info_hashes, msg.cookie)))
    assert (again.port, again.info_hashes) == (msg.port, msg.info_hashes)
    assert LocalDiscovery(1).receive(data) == [(h, msg.port) for h in msg.info_hashes]


TestOneInput = harness.Pick(_announce, allowed=LsdError)


def seeds() -> list[bytes]:
    """Valid announces to start a corpus from."""
    one = encode(Announce(6881, (bytes(range(20)),), b"abc123"))
    two = (b"BT-SEARCH * HTTP/1.1\r\nHost: [ff15::efc0:988f]:6771\r\nport: 51413\r\nInfohash: " + b"ab" * 20
           + b"\r\ninfohash: " + b"CD" * 20 + b"\r\n\r\n\r\n")
    return [b"\x00" + one, b"\x00" + two]


if __name__ == "__main__":
    harness.main(TestOneInput)
