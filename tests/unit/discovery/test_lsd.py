"""BEP 14 local service discovery, sans-I/O: the BT-SEARCH message both ways, hostile datagrams, our own announces
recognised by their cookie, and the announce schedule."""

from __future__ import annotations

import pytest

from peerloom.discovery.lsd import (
    LSD_GROUP,
    LSD_PORT,
    MAX_HASHES_PER_MESSAGE,
    Announce,
    LocalDiscovery,
    LsdError,
    decode,
    encode,
)

A, B = bytes(range(20)), b"\xab" * 20


def test_the_message_is_the_bep_14_text() -> None:
    data = encode(Announce(6881, (A,), b"c00k1e"))
    assert data == (
        b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n"
        b"Infohash: 000102030405060708090a0b0c0d0e0f10111213\r\ncookie: c00k1e\r\n\r\n\r\n"
    )
    assert decode(data) == Announce(6881, (A,), b"c00k1e", f"{LSD_GROUP}:{LSD_PORT}")


def test_several_info_hashes_any_header_case_and_no_cookie() -> None:
    text = (b"BT-SEARCH * HTTP/1.1\r\nhost: [ff15::efc0:988f]:6771\r\nPORT:  51413 \r\n"
            b"infohash: " + A.hex().upper().encode() + b"\r\nInfoHash: " + B.hex().encode() + b"\r\n"
            b"Infohash: " + A.hex().encode() + b"\r\nX-Other: ignored\r\n\r\n\r\n")
    msg = decode(text)
    assert msg.port == 51413 and msg.info_hashes == (A, B) and msg.cookie is None
    assert msg.host == "[ff15::efc0:988f]:6771"


@pytest.mark.parametrize("data", [
    b"",
    b"GET / HTTP/1.1\r\nPort: 1\r\nInfohash: " + A.hex().encode() + b"\r\n\r\n",
    b"BT-SEARCH * HTTP/1.1\r\nInfohash: " + A.hex().encode() + b"\r\n\r\n",  # no port
    b"BT-SEARCH * HTTP/1.1\r\nPort: 6881\r\n\r\n",  # no info-hash
    b"BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: " + A.hex().encode() + b"\r\n\r\n",
    b"BT-SEARCH * HTTP/1.1\r\nPort: 65536\r\nInfohash: " + A.hex().encode() + b"\r\n\r\n",
    b"BT-SEARCH * HTTP/1.1\r\nPort: \xb2\r\nInfohash: " + A.hex().encode() + b"\r\n\r\n",
    b"BT-SEARCH * HTTP/1.1\r\nPort: 6881\r\nInfohash: abc\r\n\r\n",
    b"BT-SEARCH * HTTP/1.1\r\nPort: 6881\r\nInfohash: " + b"zz" * 20 + b"\r\n\r\n",
    b"BT-SEARCH * HTTP/1.1\r\nPort 6881\r\n\r\n",
    b"BT-SEARCH * HTTP/1.1\r\nPort: 6881\r\n" + b"Infohash: " + A.hex().encode() + b"\r\n" * 1000,
])
def test_hostile_datagrams_raise_one_error(data: bytes) -> None:
    with pytest.raises(LsdError):
        decode(data)


def test_own_announces_are_recognised_and_malformed_ones_counted() -> None:
    ours, theirs = LocalDiscovery(6881), LocalDiscovery(7000)
    (datagram,) = ours.due([A, B], now=0.0)
    assert ours.receive(datagram) == [] and ours.own == 1
    assert theirs.receive(datagram) == [(A, 6881), (B, 6881)] and theirs.received == 1
    assert theirs.receive(b"junk") == [] and theirs.malformed == 1


def test_each_swarm_is_announced_once_per_interval_and_many_share_a_datagram() -> None:
    lsd = LocalDiscovery(6881, interval=300.0)
    assert len(lsd.due([A], 0.0)) == 1
    assert lsd.due([A], 299.0) == [] and lsd.next_due(299.0) == 300.0
    (both,) = lsd.due([A, B], 299.0)  # a new swarm goes at once, alone
    assert decode(both).info_hashes == (B,)
    assert decode(lsd.due([A, B], 300.0)[0]).info_hashes == (A,)
    lsd.due([B], 301.0)
    assert A not in lsd.last_sent  # a swarm that went away is forgotten
    many = [bytes([i]) * 20 for i in range(MAX_HASHES_PER_MESSAGE + 5)]
    sent = LocalDiscovery(1).due(many, 0.0)
    assert [len(decode(d).info_hashes) for d in sent] == [MAX_HASHES_PER_MESSAGE, 5]
    assert all(len(d) < 1400 for d in sent)

