"""Regressions for parser bugs found by fuzzing tests/fuzz/ targets (and by the review that went with it), for
modules whose own test files belong to other work: magnet links and HTTP tracker announces."""

from __future__ import annotations

import pytest

from peerloom.codec.bencode import encode
from peerloom.torrent.magnet import Magnet, MagnetError, parse_peer_address
from peerloom.torrent.tracker import parse_http_announce

V1 = bytes(range(20))
V2 = bytes(range(32))
LINK = f"magnet:?xt=urn:btih:{V1.hex()}"


# -- magnet links -----------------------------------------------------------------------------------
def test_link_with_undecodable_bytes_is_refused_not_a_crash_later() -> None:
    # Found by fuzz_bencode: a command-line argument with invalid UTF-8 arrives with lone surrogates; the
    # link parsed, and str(magnet) (the CLI's output, the resume record) then raised UnicodeEncodeError.
    with pytest.raises(MagnetError, match="not valid text"):
        Magnet.parse(LINK + "&dn=n\udcc13")
    assert Magnet.parse(LINK + "&dn=né").name == "né"  # real non-ASCII text is still fine


@pytest.mark.parametrize(
    "xt",
    [
        "urn:btih:" + "00" * 18 + "    ",  # bytes.fromhex skips whitespace: 18 bytes from 40 characters
        "urn:btih:" + "00 " * 4 + "00" * 14,
        "urn:btih:" + "A" * 31 + "=",  # base32 padding: 19 bytes from 32 characters
        "urn:btih:" + "A" * 24 + "=" * 8,
        "urn:btmh:1220" + "00 " * 4 + "00" * 26,  # 30 bytes from 64 characters
    ],
)
def test_info_hashes_of_the_wrong_length_are_refused(xt: str) -> None:
    with pytest.raises(MagnetError, match="invalid"):
        Magnet.parse("magnet:?xt=" + xt)


@pytest.mark.parametrize(
    "field",
    [
        "x.pe=host:\u00b2",  # '²'.isdigit() is true, int('²') raises ValueError
        "x.pe=host:\u0661",  # an Arabic-Indic digit
        "x.pe=[::1]:\u00b9",
        "x.pe=host:" + "1" * 5000,  # int() refuses more than 4300 digits
        "x.pe=host:000006881",
        "so=\u00b2",
        "so=1-\u00b3",
        "so=\u0661",
    ],
)
def test_non_ascii_or_overlong_numbers_are_refused(field: str) -> None:
    with pytest.raises(MagnetError):
        Magnet.parse(LINK + "&" + field)


def test_peer_addresses_still_parse() -> None:
    assert parse_peer_address("10.0.0.1:65535") == ("10.0.0.1", 65535)
    assert parse_peer_address("[::1]:1") == ("::1", 1)
    assert Magnet.parse(LINK + "&so=0,2-13").select_only == ((0, 0), (2, 13))


def test_every_link_that_parses_prints_as_a_link_that_parses_the_same() -> None:
    link = f"{LINK}&xt=urn:btmh:1220{V2.hex()}&dn=a%26b&tr=http://t/a?x=1%26y=2&x.pe=[fe80::1%25eth0]:7&so=1-2"
    magnet = Magnet.parse(link)
    assert Magnet.parse(str(magnet)) == magnet


@pytest.mark.parametrize("host", ["a%26b", "a+b", "a%2Bb", "a%25b", "a%23b", "a%3Db", "a%20b"])
def test_peer_hosts_with_url_syntax_survive_a_round_trip(host: str) -> None:
    # Found in review (fuzz_bencode's round-trip check now covers it): x.pe was printed without
    # percent-encoding, so a host holding '&' or '+' printed as a different link or an invalid one.
    magnet = Magnet.parse(f"{LINK}&x.pe={host}:6881")
    assert Magnet.parse(str(magnet)) == magnet


# -- HTTP tracker announces -------------------------------------------------------------------------
@pytest.mark.parametrize("port", [0, -1, 65_536, 625_535, 2**70])
def test_dictionary_peers_without_a_usable_port_are_skipped(port: int) -> None:
    # Found by fuzz_tracker: compact entries with port 0 were skipped, but a dictionary entry's port was
    # taken as it came, so the swarm would be handed peers it can never connect to.
    body = encode({b"interval": 60, b"peers": [{b"ip": b"10.0.0.1", b"port": port}, {b"ip": b"::1", b"port": 1}]})
    assert parse_http_announce(body).peers == [("::1", 1)]


def test_dictionary_peers_of_the_wrong_shape_are_skipped() -> None:
    peers = [[b"10.0.0.1", 1], b"x", 5, {b"ip": 5, b"port": 1}, {b"ip": b"no-ip", b"port": 1},
             {b"ip": b"\xff", b"port": 1}, {b"port": 1}, {b"ip": b"10.0.0.2", b"port": 65_535}]
    assert parse_http_announce(encode({b"interval": 60, b"peers": peers})).peers == [("10.0.0.2", 65_535)]
