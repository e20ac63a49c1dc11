"""libp2p mDNS TXT records, sans-I/O: what we advertise, what we take from others (both the zeroconf and the
js-libp2p shapes), and the entries we refuse or skip."""

from __future__ import annotations

import pytest

from peerloom.codec.multiaddr import Multiaddr
from peerloom.discovery.mdns_records import (
    MAX_ADDRS,
    MAX_ATTRIBUTES,
    MAX_TXT_RDATA,
    MAX_TXT_RECORDS,
    PEER_NAME_LENGTH,
    SERVICE_TYPE,
    MdnsError,
    MdnsPeers,
    PeerAddrs,
    advertised_addrs,
    decode_txt,
    encode_txt,
    instance_name,
    new_peer_name,
    peer_addrs,
)
from peerloom.identity import Identity, PeerId

ME = PeerId.from_public_key(Identity.generate().public_key)
OTHER = PeerId.from_public_key(Identity.generate().public_key)
THIRD = PeerId.from_public_key(Identity.generate().public_key)


def addr(text: str, peer: PeerId = OTHER) -> Multiaddr:
    return Multiaddr(f"{text}/p2p/{peer}")


def txt(*strings: bytes) -> bytes:
    return b"".join(bytes((len(s),)) + s for s in strings)


def dnsaddr(text: str, peer: PeerId = OTHER) -> bytes:
    return f"dnsaddr={text}/p2p/{peer}".encode()


def test_round_trip_of_what_we_advertise() -> None:
    addrs = [addr("/ip4/192.168.1.7/tcp/4001"), addr("/ip6/fd00::7/tcp/4001"), addr("/dns4/box.local/tcp/4001")]
    rdata = encode_txt(addrs)
    assert decode_txt(rdata) == [b"dnsaddr=" + str(a).encode() for a in addrs]
    assert peer_addrs([rdata]) == PeerAddrs(OTHER, tuple(a.without_p2p() for a in addrs), 0)


def test_js_libp2p_shape_one_txt_record_per_address() -> None:
    """@libp2p/mdns sends one TXT record per address, each one string; we gather them all."""
    records = [txt(dnsaddr("/ip4/10.0.0.2/tcp/1")), txt(dnsaddr("/ip4/10.0.0.3/tcp/2"))]
    found = peer_addrs(records)
    assert found.peer == OTHER
    assert found.addrs == (Multiaddr("/ip4/10.0.0.2/tcp/1"), Multiaddr("/ip4/10.0.0.3/tcp/2"))


def test_unusable_entries_are_skipped_and_counted() -> None:
    rdata = txt(
        b"other=attribute", b"dnsaddr", b"dnsaddr=not a multiaddr", b"dnsaddr=/ip4/10.0.0.9/tcp/9",  # no /p2p/
        dnsaddr("/ip4/10.0.0.1/tcp/1"),  # the first valid one: the peer is OTHER
        dnsaddr("/ip4/10.0.0.2/tcp/2", THIRD),  # another peer's id
        dnsaddr("/ip4/127.0.0.1/tcp/3"), dnsaddr("/ip4/0.0.0.0/tcp/4"), dnsaddr("/ip6/fe80::1/tcp/5"),
        dnsaddr("/ip4/10.0.0.1/udp/6/quic-v1"),  # not TCP: the secure layer cannot dial it
        b"DNSADDR=" + dnsaddr("/ip4/10.0.0.3/tcp/7")[8:],  # keys are case-insensitive
        b"dnsaddr=\xff\xfe",
    )
    found = peer_addrs([rdata])
    assert found.peer == OTHER
    assert found.addrs == (Multiaddr("/ip4/10.0.0.1/tcp/1"), Multiaddr("/ip4/10.0.0.3/tcp/7"))
    assert found.skipped == 8


def test_ipv4_link_local_addresses_are_kept() -> None:
    """169.254/16 is the LAN of hosts without DHCP: reachable without a zone, unlike fe80::/10."""
    found = peer_addrs([txt(dnsaddr("/ip4/169.254.3.4/tcp/1"), dnsaddr("/ip6/fe80::1/tcp/1"))])
    assert found.addrs == (Multiaddr("/ip4/169.254.3.4/tcp/1"),) and found.skipped == 1


@pytest.mark.parametrize("rdatas, message", [
    ([b""], "no dnsaddr"),
    ([txt(b"dnsaddr=/ip4/10.0.0.1/tcp/1")], "no dnsaddr"),
    ([txt(dnsaddr("/ip4/127.0.0.1/tcp/1"))], "no usable address"),
    ([b"\x05abc"], "past the end"),
    ([b"\x00" * (MAX_TXT_RDATA + 1)], "over"),
    ([txt(b"a=b") * (MAX_ATTRIBUTES + 1)], "more than"),
    ([txt(b"a=b")] * (MAX_TXT_RECORDS + 1), "TXT records"),
    ([txt(b"a=b") * 40, txt(b"a=b") * 40], "more than"),
])
def test_bad_records_are_refused_with_one_typed_error(rdatas: list[bytes], message: str) -> None:
    with pytest.raises(MdnsError, match=message):
        peer_addrs(rdatas)


def test_addresses_kept_are_bounded() -> None:
    many = txt(*(dnsaddr(f"/ip4/10.0.1.{i}/tcp/1") for i in range(MAX_ADDRS + 5)))
    found = peer_addrs([many])
    assert len(found.addrs) == MAX_ADDRS and found.skipped == 5


def test_encode_leaves_out_what_cannot_be_an_attribute_and_refuses_addresses_without_p2p() -> None:
    long = Multiaddr("/dns4/" + "a" * 250 + "/tcp/1").encapsulate(f"/p2p/{ME}")
    short = addr("/ip4/10.0.0.1/tcp/1", ME)
    assert decode_txt(encode_txt([long, short])) == [b"dnsaddr=" + str(short).encode()]
    assert len(decode_txt(encode_txt([short] * (MAX_ADDRS + 3)))) == MAX_ADDRS
    with pytest.raises(ValueError, match="/p2p/"):
        encode_txt([Multiaddr("/ip4/10.0.0.1/tcp/1")])


def test_peer_names_are_random_dns_labels() -> None:
    a, b = new_peer_name(), new_peer_name()
    assert a != b and len(a) == PEER_NAME_LENGTH and a.isalnum() and a == a.lower()
    assert instance_name(a) == f"{a}.{SERVICE_TYPE}" == f"{a}._p2p._udp.local."
    for bad in ("", "x" * 64, "a.b", "a b"):
        with pytest.raises(ValueError):
            instance_name(bad)


def test_advertised_addresses_expand_the_unspecified_host_and_drop_loopback() -> None:
    listen = [Multiaddr(f"/ip4/0.0.0.0/tcp/4001/p2p/{ME}")]
    ips = ["127.0.0.1", "192.168.1.7", "10.1.2.3", "fe80::1%eth0", "fd00::5"]
    assert advertised_addrs(listen, ips) == [addr("/ip4/192.168.1.7/tcp/4001", ME), addr("/ip4/10.1.2.3/tcp/4001", ME)]
    six = [Multiaddr(f"/ip6/::/tcp/4001/p2p/{ME}")]
    assert advertised_addrs(six, ips) == [addr("/ip6/fd00::5/tcp/4001", ME)]
    one = [Multiaddr(f"/ip4/10.1.2.3/tcp/4001/p2p/{ME}"), Multiaddr(f"/ip4/127.0.0.1/tcp/4002/p2p/{ME}")]
    assert advertised_addrs(one, ips) == [addr("/ip4/10.1.2.3/tcp/4001", ME)]
    assert advertised_addrs([Multiaddr(f"/ip4/127.0.0.1/tcp/1/p2p/{ME}")], ips) == []
    with pytest.raises(ValueError, match="/p2p/"):
        advertised_addrs([Multiaddr("/ip4/10.1.2.3/tcp/1")], ips)


def test_what_we_advertise_is_what_a_peer_takes() -> None:
    rdata = encode_txt(advertised_addrs([Multiaddr(f"/ip4/0.0.0.0/tcp/7/p2p/{ME}")], ["10.0.0.5", "127.0.0.1"]))
    assert peer_addrs([rdata]) == PeerAddrs(ME, (Multiaddr("/ip4/10.0.0.5/tcp/7"),), 0)


def test_our_own_instance_and_peer_id_are_ignored() -> None:
    name = new_peer_name()
    peers = MdnsPeers(ME, name)
    mine = encode_txt([addr("/ip4/10.0.0.5/tcp/7", ME)])
    assert peers.receive(instance_name(name).upper(), [mine]) is None  # our instance, by name
    assert peers.receive(instance_name(new_peer_name()), [mine]) is None  # an instance with our PeerId
    assert peers.receive(instance_name(new_peer_name()), [b"\x09garbage"]) is None
    theirs = encode_txt([addr("/ip4/10.0.0.6/tcp/8")])
    assert peers.receive(instance_name(new_peer_name()), [theirs]) == PeerAddrs(
        OTHER, (Multiaddr("/ip4/10.0.0.6/tcp/8"),), 0)
    assert (peers.own, peers.malformed, peers.received) == (2, 1, 1)
