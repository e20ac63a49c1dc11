"""The engine's address checks: a ban or our own address holds however the IP is spelt (an IPv4 peer arrives on a
dual-stack socket as ::ffff:a.b.c.d)."""

from __future__ import annotations

from peerloom.settings import Settings
from peerloom.torrent.engine import BitTorrentEngine


def test_a_ban_holds_for_the_ipv4_mapped_spelling_and_back() -> None:
    engine = BitTorrentEngine(Settings(), client_name="test")
    engine.ban(("::ffff:192.0.2.7", 6881), None)
    assert engine.is_banned(("192.0.2.7", 6881)) and engine.is_banned(("::ffff:192.0.2.7", 6881))
    engine.ban(("198.51.100.1", 1), None)
    assert engine.is_banned(("::ffff:198.51.100.1", 1)) and not engine.is_banned(("::ffff:198.51.100.1", 2))


def test_our_own_port_on_ipv6_or_mapped_loopback_is_ourselves() -> None:
    engine = BitTorrentEngine(Settings(), client_name="test")
    engine.port = 6881
    assert engine.is_self(("::1", 6881)) and engine.is_self(("::ffff:127.0.0.1", 6881))
    assert not engine.is_self(("::1", 6882)) and not engine.is_self(("2001:db8::1", 6881))


def test_a_secure_layer_peer_is_banned_by_its_multiaddr() -> None:
    from peerloom.codec.multiaddr import Multiaddr

    engine = BitTorrentEngine(Settings(), client_name="test")
    where = Multiaddr("/ip6/::1/tcp/4001")
    engine.ban(where, None)
    assert engine.is_banned(Multiaddr("/ip6/::1/tcp/4001")) and not engine.is_banned(("::1", 4001))
