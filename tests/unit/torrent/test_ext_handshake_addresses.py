"""Our BEP 10 handshake tells a plain-TCP peer its own address (`yourip`) and, when we take IPv6 peers, ours
(`ipv6`); over the secure layer it tells neither (the secure layer has its own identify)."""

from __future__ import annotations

from types import SimpleNamespace

from peerloom.torrent.swarm_exchange import Exchange


def _handshake(remote: tuple[str, int] | None, ipv6: str | None, secure_key: object = None):  # type: ignore[no-untyped-def]
    context = SimpleNamespace(client_name="test", port=6881, ipv6_address=ipv6, utp_running=False)
    torrent = SimpleNamespace(private=False, meta=None)
    peer = SimpleNamespace(remote=remote, secure_key=secure_key)
    return Exchange(context, torrent).ext_handshake(peer)  # type: ignore[arg-type]


def test_yourip_and_our_ipv6_address() -> None:
    h = _handshake(("::ffff:192.0.2.7", 5000), "2001:db8::1")
    assert h.yourip == bytes([192, 0, 2, 7])  # an IPv4 peer on a dual-stack socket is told its IPv4 address
    assert h.ipv6 == bytes.fromhex("20010db8000000000000000000000001")
    assert _handshake(("2001:db8::9", 5000), None).yourip == bytes.fromhex("20010db8000000000000000000000009")
    assert _handshake(("192.0.2.7", 5000), None).ipv6 is None


def test_nothing_of_addresses_over_the_secure_layer() -> None:
    h = _handshake(("192.0.2.7", 5000), "2001:db8::1", secure_key=object())
    assert h.yourip is None and h.ipv6 is None
