"""HTTP tracker codecs: announce and scrape URLs and responses, good and hostile."""

from __future__ import annotations

import pytest

from peerloom.codec.bencode import encode
from peerloom.torrent.tracker import (
    AnnounceRequest,
    ScrapeStats,
    TrackerError,
    TrackerProtocolError,
    http_announce_url,
    http_scrape_url,
    parse_http_announce,
    parse_http_scrape,
)


def test_announce_url_percent_encodes_binary_fields_and_keeps_the_query() -> None:
    req = AnnounceRequest(b"\x00\xff" + b"a" * 18, b"-PL0100-" + b"x" * 12, 6881, 1, 2, 3, event="started", key=255)
    url = http_announce_url("http://t.example/announce?passkey=abc", req)
    assert url.startswith("http://t.example/announce?passkey=abc&info_hash=%00%FFaaaa")
    assert "&event=started" in url and "&compact=1" in url and "&key=000000ff" in url
    assert "ipv6=" not in url


def test_announce_url_tells_our_ipv6_address() -> None:
    """BEP 7: a client taking IPv6 peers tells its address, so a tracker reached over IPv4 hands it out too."""
    req = AnnounceRequest(b"i" * 20, b"p" * 20, 6881, 0, 0, 0, ipv6="2001:db8::1")
    assert http_announce_url("http://t.example/announce", req).endswith("&ipv6=2001%3Adb8%3A%3A1")


def test_compact_and_dict_peers_are_parsed() -> None:
    body = encode({b"interval": 60, b"min interval": 30, b"peers": b"\x7f\x00\x00\x01\x1a\xe1",
                   b"peers6": b"\x00" * 15 + b"\x01" + b"\x00\x50", b"complete": 3})
    resp = parse_http_announce(body)
    assert resp.interval == 60 and resp.min_interval == 30 and resp.complete == 3
    assert resp.peers == [("127.0.0.1", 6881), ("::1", 80)]
    listed = parse_http_announce(encode({b"interval": 5, b"peers": [{b"ip": b"10.0.0.1", b"port": 7},
                                                                     {b"ip": b"::ffff:10.0.0.2", b"port": 8}]}))
    assert listed.peers == [("10.0.0.1", 7), ("10.0.0.2", 8)]


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


H1, H2 = b"\x00\xff" + b"a" * 18, b"b" * 20


@pytest.mark.parametrize(
    ("announce", "scrape"),
    [  # the examples of BEP 48
        ("http://example.com/announce", "http://example.com/scrape"),
        ("http://example.com/x/announce", "http://example.com/x/scrape"),
        ("http://example.com/announce.php", "http://example.com/scrape.php"),
        ("http://example.com/announce?x=2%0644", "http://example.com/scrape?x=2%0644"),
        ("https://example.com:8443/a/announce?passkey=k", "https://example.com:8443/a/scrape?passkey=k"),
    ],
)
def test_scrape_url_replaces_the_last_announce_segment(announce: str, scrape: str) -> None:
    url = http_scrape_url(announce, [H1, H2])
    sep = "&" if "?" in scrape else "?"
    assert url == f"{scrape}{sep}info_hash=%00%FF{'a' * 18}&info_hash={'b' * 20}"


@pytest.mark.parametrize(
    "announce",
    ["http://example.com/a", "http://example.com/announce?x=2/4", "http://example.com/x%064announce",
     "http://example.com/", "example.com"],
)
def test_urls_without_the_announce_convention_have_no_scrape(announce: str) -> None:
    with pytest.raises(TrackerError, match="no scrape URL"):
        http_scrape_url(announce, [H1])


def test_a_scrape_always_names_its_torrents() -> None:
    with pytest.raises(ValueError):
        http_scrape_url("http://example.com/announce", [])


def test_scrape_response_counts_only_the_asked_torrents() -> None:
    body = encode({b"files": {H1: {b"complete": 5, b"downloaded": 50, b"incomplete": 10, b"name": b"x"},
                              b"c" * 20: {b"complete": 1, b"downloaded": 1, b"incomplete": 1}},
                   b"flags": {b"min_request_interval": 60}})
    assert parse_http_scrape(body, [H1, H2]) == {H1: ScrapeStats(complete=5, downloaded=50, incomplete=10)}
    sparse = encode({b"files": {H2: {b"complete": 2}}})
    assert parse_http_scrape(sparse, [H2]) == {H2: ScrapeStats(2, 0, 0)}


@pytest.mark.parametrize(
    "body",
    [b"garbage", encode([1]), encode({b"nofiles": 1}), encode({b"files": [H1]}), encode({b"files": {H1: 5}}),
     encode({b"files": {H1: {b"complete": -1}}}), encode({b"files": {H1: {b"complete": b"5"}}}),
     b"d5:filesde" + b"x" * (4 * 1024 * 1024)],
)
def test_malformed_scrape_responses_are_typed_errors(body: bytes) -> None:
    with pytest.raises(TrackerProtocolError):
        parse_http_scrape(body, [H1])


def test_scrape_failure_reason_is_reported() -> None:
    with pytest.raises(TrackerError, match="scrape disabled"):
        parse_http_scrape(encode({b"failure reason": b"scrape disabled"}), [H1])
