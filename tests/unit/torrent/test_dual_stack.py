"""The address we tell peers in BEP 10's `ipv6` field when we listen on one address: only an IPv6 one worth
dialling."""

from __future__ import annotations

import pytest

from peerloom.torrent.dual_stack import is_wildcard, own_ipv6


@pytest.mark.parametrize(("host", "told"), [
    ("2001:db8::1", "2001:db8::1"),
    ("::1", "::1"),
    ("fe80::1", None),  # link-local: useless without a scope the peer does not share
    ("::ffff:192.0.2.7", None),
    ("192.0.2.7", None),
    ("peer.example", None),
])
def test_own_ipv6_of_a_specific_listen_address(host: str, told: str | None) -> None:
    assert own_ipv6(host) == told


def test_wildcards() -> None:
    assert all(is_wildcard(h) for h in ("", "0.0.0.0", "::"))
    assert not any(is_wildcard(h) for h in ("127.0.0.1", "::1", "localhost"))
