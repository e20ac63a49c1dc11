"""The LSD driver without sockets: what it sends to BEP 14's IPv6 group, and whom it reports an announce from."""

from __future__ import annotations

from peerloom.discovery.lsd import LSD_GROUP6, Announce, decode, encode
from peerloom.discovery.lsd_driver import LsdService

A = bytes(range(20))


def test_an_ipv6_announce_names_bep14s_ipv6_group_and_a_link_local_sender_keeps_its_scope() -> None:
    heard: list[tuple[bytes, tuple[str, int]]] = []
    lsd = LsdService(6881, lambda: [A], lambda h, a: heard.append((h, a)), interface="", group=LSD_GROUP6)
    (datagram,) = lsd.state.due([A], 0.0)
    assert decode(datagram).host == "[ff15::efc0:988f]:6771"
    other = encode(Announce(7000, (A,), b"other", "[ff15::efc0:988f]:6771"))
    lsd.datagram_received(other, ("fe80::1", 6771, 0, 3))  # the scope id comes as the 4th item
    lsd.datagram_received(other, ("2001:db8::7", 6771, 0, 3))  # a global address needs none
    lsd.datagram_received(other, ("192.0.2.7", 6771))
    assert heard == [(A, ("fe80::1%3", 7000)), (A, ("2001:db8::7", 7000)), (A, ("192.0.2.7", 7000))]
