"""Signed peer records (BEP 44 mutable items under the node's key): encoding within bounds, and what a resolver
refuses — another key, another salt, a bad signature, a stale seq, malformed values."""

from __future__ import annotations

import pytest

from peerloom.codec import bencode
from peerloom.codec.multiaddr import Multiaddr
from peerloom.dht.bep44 import MAX_VALUE, make_mutable
from peerloom.discovery.peer_record import (
    MAX_RECORD_ADDRS,
    SALT,
    PeerRecordError,
    RecordPublisher,
    decode_value,
    encode_value,
    next_seq,
    open_record,
    publishable,
    record_key,
)
from peerloom.discovery.peer_record_driver import expand_unspecified
from peerloom.identity import Identity, PeerId

ME = Identity.generate()


def sign(identity: Identity, raw: bytes, seq: int, salt: bytes = SALT) -> tuple[bytes, bytes]:
    return make_mutable(identity.private_key, raw, seq, salt)


def test_a_record_round_trips_and_its_addresses_end_in_the_peer_id() -> None:
    peer = ME.peer_id
    addrs = [Multiaddr("/ip4/198.51.100.7/tcp/4001"), Multiaddr(f"/ip6/2001:db8::7/tcp/4001/p2p/{peer}"),
             Multiaddr("/dns4/node.example/tcp/443")]
    raw = encode_value(addrs, 1_800_000_000)
    assert bencode.decode(raw)[b"a"][1] == Multiaddr("/ip6/2001:db8::7/tcp/4001").to_bytes()  # /p2p/ left out
    key, sig = sign(ME, raw, 7)
    assert key == record_key(peer)
    record = open_record(peer, key, sig, raw, 7, SALT)
    assert record.seq == 7 and record.timestamp == 1_800_000_000
    assert [str(a) for a in record.addrs] == [
        f"/ip4/198.51.100.7/tcp/4001/p2p/{peer}", f"/ip6/2001:db8::7/tcp/4001/p2p/{peer}",
        f"/dns4/node.example/tcp/443/p2p/{peer}"]


def test_the_value_stays_within_bep44s_limit() -> None:
    addrs = [Multiaddr(f"/dns4/{'a' * 60}{i}.example/tcp/{i + 1}") for i in range(40)]
    raw = encode_value(addrs, 1)
    kept, _ = decode_value(ME.peer_id, raw)
    assert len(raw) <= MAX_VALUE and 0 < len(kept) < MAX_RECORD_ADDRS
    assert [a.without_p2p() for a in kept] == addrs[: len(kept)]  # the first ones, in order
    many = [Multiaddr(f"/ip4/10.0.0.{i}/tcp/1") for i in range(1, 40)]
    assert len(decode_value(ME.peer_id, encode_value(many, 1))[0]) == MAX_RECORD_ADDRS


def test_a_record_signed_by_another_key_is_refused() -> None:
    raw = encode_value([Multiaddr("/ip4/198.51.100.7/tcp/4001")], 1)
    other = Identity.generate()
    key, sig = sign(other, raw, 5)
    with pytest.raises(PeerRecordError, match="another key"):
        open_record(ME.peer_id, key, sig, raw, 5, SALT)
    mine, _ = sign(ME, raw, 5)
    with pytest.raises(PeerRecordError, match="signature"):  # our key, someone else's signature
        open_record(ME.peer_id, mine, sig, raw, 5, SALT)
    with pytest.raises(PeerRecordError, match="signature"):  # signed for another seq
        open_record(ME.peer_id, *sign(ME, raw, 5), raw, 6, SALT)


def test_a_stale_seq_or_another_salt_is_refused() -> None:
    raw = encode_value([Multiaddr("/ip4/198.51.100.7/tcp/4001")], 1)
    key, sig = sign(ME, raw, 10)
    assert open_record(ME.peer_id, key, sig, raw, 10, SALT, min_seq=10).seq == 10  # the same record again
    with pytest.raises(PeerRecordError, match="stale"):
        open_record(ME.peer_id, key, sig, raw, 10, SALT, min_seq=11)
    key, sig = sign(ME, raw, 10, salt=b"other")
    with pytest.raises(PeerRecordError, match="salt"):
        open_record(ME.peer_id, key, sig, raw, 10, b"other")


@pytest.mark.parametrize("raw, match", [
    (b"i1e", "dictionary"),
    (b"d1:ai1e1:ti1ee", "address list"),
    (b"d1:ale1:ti-1ee", "address list"),
    (b"d1:al3:abce1:ti1ee", "bad address"),
    (b"d1:ali1ee1:ti1ee", "binary multiaddr"),
    (bencode.encode({b"a": [Multiaddr("/ip4/1.2.3.4/tcp/1").to_bytes()] * 17, b"t": 1}), "at most 16"),
    (b"x" * 1001, "at most 1000"),
    (b"d1:al", "not bencode"),
])
def test_malformed_values_raise_one_typed_error(raw: bytes, match: str) -> None:
    with pytest.raises(PeerRecordError, match=match):
        decode_value(ME.peer_id, raw)


def test_an_address_naming_another_peer_is_refused() -> None:
    other = Identity.generate().peer_id
    raw = bencode.encode({b"a": [Multiaddr(f"/ip4/1.2.3.4/tcp/1/p2p/{other}").to_bytes()], b"t": 1})
    with pytest.raises(PeerRecordError, match="address of"):
        decode_value(ME.peer_id, raw)


def test_a_peer_id_without_an_inlined_ed25519_key_has_no_record() -> None:
    sha256_id = PeerId(bytes([0x12, 0x20]) + bytes(32))
    with pytest.raises(PeerRecordError, match="inline"):
        record_key(sha256_id)


def test_seq_follows_the_clock_and_never_goes_back() -> None:
    assert next_seq(None, 1000.7) == 1000
    assert next_seq(1000, 1000.9) == 1001
    assert next_seq(5000, 1000.0) == 5001  # the clock went back
    assert next_seq(999, 2000.0) == 2000


def test_loopback_is_published_only_by_a_node_that_is_only_on_loopback() -> None:
    loop = Multiaddr("/ip4/127.0.0.1/tcp/4001")
    lan = Multiaddr("/ip4/192.168.1.5/tcp/4001")
    assert publishable([loop, Multiaddr("/ip6/::1/tcp/4001")]) == [loop, Multiaddr("/ip6/::1/tcp/4001")]
    assert publishable([loop, lan]) == [lan]
    assert publishable([Multiaddr("/ip4/0.0.0.0/tcp/1"), Multiaddr("/ip6/fe80::1/tcp/1"), lan]) == [lan]
    assert publishable([Multiaddr("/ip4/0.0.0.0/tcp/1")]) == []


def test_the_publisher_publishes_at_start_on_change_and_periodically() -> None:
    pub = RecordPublisher(interval=1800.0, retry=60.0)
    assert pub.next_wakeup() is None and not pub.due(0.0)  # nothing to publish yet
    addr = Multiaddr("/ip4/192.168.1.5/tcp/4001")
    pub.update([addr], 100.0)
    assert pub.due(100.0)
    value, seq = pub.make(100.0)
    assert seq == 100 and decode_value(ME.peer_id, value)[0] == (addr.encapsulate(f"/p2p/{ME.peer_id}"),)
    pub.failed(100.0)
    assert not pub.due(159.0) and pub.due(160.0)
    assert pub.make(160.0)[1] == 160
    pub.published(160.0)
    pub.update([addr], 200.0)  # unchanged: not due
    assert not pub.due(200.0) and pub.next_wakeup() == 1960.0
    pub.update([addr, Multiaddr("/ip4/192.168.1.5/tcp/4002")], 300.0)  # changed: due at once
    assert pub.due(300.0)
    assert pub.make(300.0)[1] == 300
    pub.published(300.0)
    assert not pub.due(2099.0) and pub.due(2100.0)
    pub.published(2100.0, stored=1)  # few nodes took it: soon again
    assert pub.next_wakeup() == 2160.0


def test_a_wildcard_listen_address_is_published_as_the_default_routes_address() -> None:
    wildcard, loop = Multiaddr("/ip4/0.0.0.0/tcp/4001"), Multiaddr("/ip4/127.0.0.1/tcp/4002")
    expanded = expand_unspecified([wildcard, loop])
    assert expanded[-1] == loop and wildcard not in expanded and len(expanded) <= 2
    for addr in expanded[:-1]:  # none when this host has no default route
        assert addr.value_for("tcp") == "4001" and addr.value_for("ip4") not in ("0.0.0.0", None)
