"""atheris fuzz target for libp2p mDNS TXT records (discovery/mdns_records.py): what another peer's instance says.

Run: `python tests/fuzz/fuzz_mdns.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target: 0, one
TXT rdata; 1, several TXT records (the rest split at each 0xff 0xff pair, as js-libp2p sends one record per address);
2, the same through `MdnsPeers.receive`, which must never raise. Only MdnsError may escape the first two; whatever
parses names one peer, keeps at most MAX_ADDRS usable addresses, and survives a round trip through `encode_txt`.
"""

from __future__ import annotations

import harness

from peerloom.discovery.mdns_records import (
    MAX_ADDRS,
    MdnsError,
    MdnsPeers,
    encode_txt,
    instance_name,
    new_peer_name,
    peer_addrs,
    usable,
)
from peerloom.identity import Identity, PeerId

_ME = PeerId.from_public_key(Identity.generate().public_key)
_PEERS = MdnsPeers(_ME, new_peer_name())
_SPLIT = b"\xff\xff"


def _check(rdatas: list[bytes]) -> None:
    found = peer_addrs(rdatas)
    assert 0 < len(found.addrs) <= MAX_ADDRS and all(usable(a) for a in found.addrs)
    again = peer_addrs([encode_txt(a.encapsulate(f"/p2p/{found.peer}") for a in found.addrs)])
    assert (again.peer, again.addrs) == (found.peer, found.addrs)


def _one_record(data: bytes) -> None:
    _check([data])


def _records(data: bytes) -> None:
    _check(data.split(_SPLIT))


def _receive(data: bytes) -> None:
    found = _PEERS.receive(instance_name(new_peer_name()), data.split(_SPLIT))
    assert found is None or found.peer != _ME


TestOneInput = harness.Pick(_one_record, _records, (_receive, ()), allowed=MdnsError)


def seeds() -> list[bytes]:
    """Valid records to start a corpus from: zeroconf's shape (one record) and js-libp2p's (one per address)."""
    peer = PeerId.from_public_key(Identity.generate().public_key)
    a = f"dnsaddr=/ip4/192.168.1.7/tcp/4001/p2p/{peer}".encode()
    b = f"dnsaddr=/ip6/fd00::7/tcp/4001/p2p/{peer}".encode()
    one = bytes((len(a),)) + a + bytes((len(b),)) + b
    js = bytes((len(a),)) + a + _SPLIT + bytes((len(b),)) + b
    return [b"\x00" + one, b"\x01" + js, b"\x02" + js]


if __name__ == "__main__":
    harness.main(TestOneInput)
