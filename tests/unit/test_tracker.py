"""HTTP tracker codecs: announce URLs and responses, good and hostile."""

from __future__ import annotations

import pytest

from peerloom.codec.bencode import encode
from peerloom.torrent.tracker import (
    AnnounceRequest,
    TrackerError,
    TrackerProtocolError,
    http_announce_url,
    parse_http_announce,
)


def test_announce_url_percent_encodes_binary_fields_and_keeps_the_query() -> None:
    req = AnnounceRequest(b"\x00\xff" + b"a" * 18, b"-PL0100-" + b"x" * 12, 6881, 1, 2, 3, event="started", key=255)
    url = http_announce_url("http://t.example/announce?passkey=abc", req)
    assert url.startswith("http://t.example/announce?passkey=abc&info_hash=%00%FFaaaa")
    assert "&event=started" in url and "&compact=1" in url and "&key=000000ff" in url


def test_compact_and_dict_peers_are_parsed() -> None:
    body = encode({b"interval": 60, b"min interval": 30, b"peers": b"\x7f\x00\x00\x01\x1a\xe1",
                   b"peers6": b"\x00" * 15 + b"\x01" + b"\x00\x50", b"complete": 3})
    resp = parse_http_announce(body)
    assert resp.interval == 60 and resp.min_interval == 30 and resp.complete == 3
    assert resp.peers == [("127.0.0.1", 6881), ("::1", 80)]
    listed = parse_http_announce(encode({b"interval": 5, b"peers": [{b"ip": b"10.0.0.1", b"port": 7}]}))
    assert listed.peers == [("10.0.0.1", 7)]


@pytest.mark.parametrize(
    "body",
    [b"not bencode", encode([1]), encode({b"peers": b""}), encode({b"interval": 5, b"peers": b"\x01\x02\x03"}),
     b"x" * (4 * 1024 * 1024 + 1)],
)
def test_malformed_responses_are_typed_errors(body: bytes) -> None:
    with pytest.raises(TrackerProtocolError):
        parse_http_announce(body)


def test_failure_reason_is_reported() -> None:
    with pytest.raises(TrackerError, match="unregistered torrent"):
        parse_http_announce(encode({b"failure reason": b"unregistered torrent"}))
