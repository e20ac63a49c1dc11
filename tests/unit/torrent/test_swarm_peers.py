"""A torrent's peer table: one record per known address (when to dial it, failures, refusals, dialling)."""

from __future__ import annotations

import math

from peerloom.errors import AccessRefused
from peerloom.torrent.swarm_peers import MAX_FAILURES, Peers

A, B = ("10.0.0.1", 1), ("10.0.0.2", 2)


def table(**kw: object) -> Peers:
    options: dict = {"max_known": 100, "max_connected": 10, "secure": False, "excluded": lambda a: a == B} | kw
    return Peers(**options)


def test_a_failed_dial_backs_off_and_the_fifth_forgets_the_address() -> None:
    peers = table()
    peers.add([A, B], now=0.0)
    assert A in peers and B not in peers  # B is excluded (banned, or ourselves)
    assert list(peers.to_dial(0.0)) == [A]
    assert list(peers.to_dial(0.0)) == []  # being dialled: not twice
    peers.dial_failed(A, now=0.0)
    assert list(peers.to_dial(5.9)) == [] and list(peers.to_dial(6.0)) == [A]  # 2 s * 3^1
    for _ in range(MAX_FAILURES - 1):
        peers.dial_failed(A, now=0.0)
    assert A not in peers


def test_a_refusal_is_kept_on_the_record_and_a_success_clears_it() -> None:
    peers = table(secure=False)
    peers.add([A], now=0.0)
    refused = AccessRefused("not allowed")
    for _ in range(MAX_FAILURES):
        assert list(peers.to_dial(math.inf)) == [A]
        peers.dial_failed(A, now=0.0, refusal=refused)
    assert peers.refusals == {A: refused} and peers.refused_everywhere
    assert list(peers.to_dial(1e9)) == []  # given up on...
    peers.add([A], now=1e9)
    assert list(peers.to_dial(1e9)) == [A]  # ...until someone tells us of it again
    peers.dial_succeeded(A, now=1e9)
    assert peers.refusals == {} and not peers.refused_everywhere and peers.known[A].failures == 0


def test_a_secure_swarm_takes_no_plain_address() -> None:
    peers = table(secure=True)
    peers.add([A], now=0.0)
    assert A not in peers


def test_an_ipv4_peer_spelt_as_ipv4_mapped_ipv6_is_one_record() -> None:
    peers = table()
    peers.add([("::ffff:10.0.0.1", 1), A, ("::ffff:10.0.0.2", 2)], now=0.0)
    assert list(peers.known) == [A]  # and B, however spelt, is still excluded
