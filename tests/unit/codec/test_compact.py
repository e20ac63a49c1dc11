"""Compact peers and the canonical form of IP addresses: an IPv4 peer is one peer however it is spelt (a dual-stack
socket reports it as ::ffff:a.b.c.d, a peer list may carry it in 18 bytes)."""

from __future__ import annotations

import pytest

from peerloom.codec.compact import (
    canonical_address,
    canonical_ip,
    format_address,
    is_ipv6,
    pack_peers,
    packed_ip,
    unpack_peers,
)


@pytest.mark.parametrize(("host", "canonical"), [
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("::ffff:c000:207", "192.0.2.7"),
    ("0:0:0:0:0:ffff:192.0.2.7", "192.0.2.7"),
    ("192.0.2.7", "192.0.2.7"),
    ("2001:DB8:0:0::1", "2001:db8::1"),
    ("::1", "::1"),
    ("fe80::1%eth0", "fe80::1%eth0"),  # a link-local address cannot be dialled without its scope
    ("tracker.example", "tracker.example"),
])
def test_canonical_ip(host: str, canonical: str) -> None:
    assert canonical_ip(host) == canonical
    assert canonical_address((host, 6881)) == (canonical, 6881)


def test_is_ipv6_counts_mapped_addresses_as_ipv4() -> None:
    assert is_ipv6("2001:db8::1") and is_ipv6("::1")
    assert not is_ipv6("::ffff:192.0.2.7") and not is_ipv6("192.0.2.7") and not is_ipv6("host")


def test_format_address_brackets_ipv6() -> None:
    assert format_address(("::1", 6881)) == "[::1]:6881"
    assert format_address(("192.0.2.7", 6881)) == "192.0.2.7:6881"


def test_packed_ip() -> None:
    assert packed_ip("::ffff:192.0.2.7") == bytes([192, 0, 2, 7])
    assert packed_ip("::1") == bytes(15) + b"\x01"
    assert packed_ip("host") is None


def test_an_ipv4_mapped_entry_of_a_v6_list_is_an_ipv4_peer() -> None:
    mapped = bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 7]) + b"\x1a\xe1"
    assert unpack_peers(mapped + bytes(15) + b"\x01\x00\x50", True, 10) == [("192.0.2.7", 6881), ("::1", 80)]


def test_pack_peers_puts_a_mapped_address_with_ipv4() -> None:
    peers = [("::ffff:192.0.2.7", 6881), ("2001:db8::1", 80), ("198.51.100.1", 1)]
    assert pack_peers(peers, False) == bytes([192, 0, 2, 7]) + b"\x1a\xe1" + bytes([198, 51, 100, 1]) + b"\x00\x01"
    assert unpack_peers(pack_peers(peers, True), True, 10) == [("2001:db8::1", 80)]
