"""AutoNAT v1 messages, the server's address and rate rules, the client's verdict."""

from __future__ import annotations

import pytest

from peerloom.codec.multiaddr import Multiaddr
from peerloom.codec.protobuf import encode_bytes_field, encode_varint_field
from peerloom.identity import Identity, PeerId
from peerloom.net.nat.autonat import (
    MAX_ADDRS,
    MAX_MESSAGE_SIZE,
    AutoNatError,
    DialBackLimiter,
    DialRequest,
    DialResponse,
    Reachability,
    Status,
    Verdict,
    candidates,
    decode_message,
    dialable,
    encode_request,
    encode_response,
    is_lan_ip,
)


def peer() -> PeerId:
    return PeerId.from_public_key(Identity.generate().public_key)


def test_request_and_response_round_trip() -> None:
    request = DialRequest(peer(), (Multiaddr("/ip4/203.0.113.5/tcp/4001"), Multiaddr("/ip6/2001:db8::1/tcp/1")))
    assert decode_message(encode_request(request)) == request
    response = DialResponse(Status.E_DIAL_ERROR, "dial failed", None)
    assert decode_message(encode_response(response)) == response
    ok = DialResponse(Status.OK, "", Multiaddr("/ip4/203.0.113.5/tcp/4001"))
    assert decode_message(encode_response(ok)) == ok


def test_go_libp2p_bytes_decode() -> None:
    """A request laid out field by field as go-libp2p's pb.Message marshals it."""
    p = peer()
    addr = Multiaddr("/ip4/1.2.3.4/tcp/4001")
    info = encode_bytes_field(1, p.multihash) + encode_bytes_field(2, addr.to_bytes())
    wire = encode_varint_field(1, 0) + encode_bytes_field(2, encode_bytes_field(1, info))
    assert decode_message(wire) == DialRequest(p, (addr,))


@pytest.mark.parametrize("wire", [
    b"",  # no type
    encode_varint_field(1, 0),  # a dial without its body
    encode_varint_field(1, 1) + encode_bytes_field(3, encode_varint_field(1, 7)),  # unknown status
    encode_varint_field(1, 0) + encode_bytes_field(2, encode_bytes_field(1, encode_bytes_field(1, b"\x00\x01"))),
    b"\xff" * 3,
    b"\x00" * (MAX_MESSAGE_SIZE + 1),
])
def test_malformed_messages_raise_the_typed_error(wire: bytes) -> None:
    with pytest.raises(AutoNatError):
        decode_message(wire)


def test_a_request_keeps_at_most_max_addrs() -> None:
    addrs = tuple(Multiaddr(f"/ip4/203.0.113.5/tcp/{1000 + i}") for i in range(MAX_ADDRS + 10))
    info = encode_bytes_field(1, peer().multihash) + b"".join(encode_bytes_field(2, a.to_bytes()) for a in addrs)
    request = decode_message(encode_varint_field(1, 0) + encode_bytes_field(2, encode_bytes_field(1, info)))
    assert isinstance(request, DialRequest) and len(request.addrs) == MAX_ADDRS


def test_the_server_dials_only_the_observed_ip_and_never_a_lan_address() -> None:
    addrs = tuple(Multiaddr(a) for a in (
        "/ip4/203.0.113.5/tcp/4001", "/ip4/198.51.100.9/tcp/4001", "/ip4/203.0.113.5/tcp/4001/p2p/" + str(peer()),
        "/ip4/203.0.113.5/udp/4001/quic-v1", "/dns4/example.com/tcp/4001", "/ip4/203.0.113.5/tcp/0",
    ))
    assert dialable(addrs, "203.0.113.5") == [Multiaddr("/ip4/203.0.113.5/tcp/4001")]
    lan = (Multiaddr("/ip4/192.168.1.2/tcp/4001"), Multiaddr("/ip4/127.0.0.1/tcp/4001"))
    assert dialable(lan, "192.168.1.2") == []
    assert dialable(lan, "127.0.0.1", allow_lan=True) == [Multiaddr("/ip4/127.0.0.1/tcp/4001")]


def test_lan_addresses() -> None:
    assert all(is_lan_ip(ip) for ip in ("10.1.2.3", "172.20.0.1", "192.168.0.1", "100.64.0.1", "127.0.0.1",
                                          "169.254.1.1", "::1", "fe80::1", "fd00::1", "not an ip"))
    assert not any(is_lan_ip(ip) for ip in ("203.0.113.5", "8.8.8.8", "2001:db8::1"))


def test_candidates_pair_each_observed_ip_with_the_listen_and_mapped_ports() -> None:
    listen = [Multiaddr("/ip4/0.0.0.0/tcp/4001"), Multiaddr("/ip4/10.0.0.2/tcp/4002"),
              Multiaddr("/ip4/203.0.113.7/tcp/4003")]
    got = candidates(listen, ["198.51.100.1"], [5000])
    assert [str(a) for a in got] == [
        "/ip4/203.0.113.7/tcp/4003", "/ip4/198.51.100.1/tcp/5000", "/ip4/198.51.100.1/tcp/4001",
        "/ip4/198.51.100.1/tcp/4002", "/ip4/198.51.100.1/tcp/4003",
    ]


def test_the_limiter_caps_each_peer_and_everyone_and_forgets_after_the_window() -> None:
    limiter = DialBackLimiter(per_peer=2, total=3, window=60.0)
    a, b, c = peer(), peer(), peer()
    assert [limiter.allow(a, 0.0), limiter.allow(a, 1.0), limiter.allow(a, 2.0)] == [True, True, False]
    assert limiter.allow(b, 3.0) and not limiter.allow(c, 4.0)  # three in the window overall
    assert limiter.allow(a, 61.0)  # the first two left the window


def test_the_limiter_remembers_a_bounded_number_of_peers() -> None:
    limiter = DialBackLimiter(per_peer=1, total=10**6, window=60.0, max_peers=100)
    for i in range(1000):
        assert limiter.allow(peer(), float(i) / 1000)
    assert limiter.remembered == 100


def test_the_verdict_needs_a_quorum_and_ignores_refusals() -> None:
    view = Reachability(quorum=2, ttl=100.0)
    s1, s2, s3 = peer(), peer(), peer()
    addr = Multiaddr("/ip4/203.0.113.5/tcp/4001")
    view.record(s1, DialResponse(Status.OK, "", addr), 0.0)
    assert view.verdict(0.0) == (Verdict.UNKNOWN, 0.0)
    view.record(s2, DialResponse(Status.E_DIAL_REFUSED, "rate limited"), 1.0)
    assert view.verdict(1.0)[0] is Verdict.UNKNOWN
    view.record(s2, DialResponse(Status.OK, "", addr), 2.0)
    assert view.verdict(2.0) == (Verdict.PUBLIC, 1.0)
    assert view.confirmed(2.0) == [addr]
    view.record(s3, DialResponse(Status.E_DIAL_ERROR, "dial failed"), 3.0)
    verdict, confidence = view.verdict(3.0)
    assert verdict is Verdict.PUBLIC and confidence == pytest.approx(2 / 3)
    view.record(s1, DialResponse(Status.E_DIAL_ERROR, "dial failed"), 4.0)  # a server's latest answer replaces its last
    verdict, confidence = view.verdict(4.0)
    assert verdict is Verdict.PRIVATE and confidence == pytest.approx(2 / 3)
    assert view.verdict(200.0) == (Verdict.UNKNOWN, 0.0)  # everything expired
