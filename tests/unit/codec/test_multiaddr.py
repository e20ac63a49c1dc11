"""Multiaddr: spec examples in both forms, each protocol's validation, helpers, and property tests."""

import ipaddress
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerloom.codec.multiaddr import Multiaddr, MultiaddrError
from peerloom.errors import ProtocolError
from peerloom.identity import PeerId

ED25519_ID = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"  # peer-ids spec examples
SHA256_ID = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
SHA256_CID = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"
SHA256_DIGEST = PeerId.from_string(SHA256_ID).to_bytes()[2:]


@pytest.mark.parametrize(
    ("text", "hex_bytes"),
    [
        ("/ip4/127.0.0.1/tcp/4001", "047f000001060fa1"),
        ("/ip4/192.0.2.42/tcp/443", "04c000022a0601bb"),  # multiaddr test/multiaddr.feature
        ("/ip4/127.0.0.1/udp/1234", "047f000001910204d2"),  # multiaddr README, "Specification"
        ("/ip6/::1/tcp/4001", "29" + "00" * 15 + "01" + "060fa1"),
        ("/ip6/2001:db8::1/udp/4001/quic-v1", "2920010db8" + "00" * 10 + "0001" + "91020fa1" + "cd03"),
        ("/ip4/1.2.3.4/udp/4001/quic", "0401020304" + "91020fa1" + "cc03"),
        ("/dns/example.com/tcp/443/wss", "350b" + b"example.com".hex() + "0601bb" + "de03"),
        ("/dns4/example.com/tcp/80/ws", "360b" + b"example.com".hex() + "060050" + "dd03"),
        ("/dns6/example.com/tcp/80", "370b" + b"example.com".hex() + "060050"),
        ("/dnsaddr/bootstrap.libp2p.io", "3813" + b"bootstrap.libp2p.io".hex()),
        (f"/ip4/1.2.3.4/tcp/1/p2p/{SHA256_ID}", "0401020304060001" + "a503" + "22" + "1220" + SHA256_DIGEST.hex()),
        ("/p2p-circuit", "a202"),
    ],
)
def test_known_encodings(text, hex_bytes):
    addr = Multiaddr(text)
    assert bytes(addr).hex() == hex_bytes
    assert addr.to_bytes() == bytes.fromhex(hex_bytes)
    assert str(addr) == text
    assert Multiaddr.from_bytes(bytes.fromhex(hex_bytes)) == addr
    assert str(Multiaddr.from_bytes(bytearray.fromhex(hex_bytes))) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (f"/ipfs/{SHA256_ID}", f"/p2p/{SHA256_ID}"),  # the old name of p2p
        (f"/p2p/{SHA256_CID}", f"/p2p/{SHA256_ID}"),  # a CID reads as the same peer id
        ("/ip4/1.2.3.4/tcp/4001/", "/ip4/1.2.3.4/tcp/4001"),  # one trailing slash, as go and js accept
        ("/ip6/0:0:0:0:0:0:0:1/tcp/1", "/ip6/::1/tcp/1"),
        ("/ip6/2001:DB8::1/tcp/1", "/ip6/2001:db8::1/tcp/1"),
        ("/ip4/1.2.3.4/tcp/080", "/ip4/1.2.3.4/tcp/80"),
    ],
)
def test_text_is_canonicalised(text, canonical):
    assert str(Multiaddr(text)) == canonical
    assert Multiaddr(text) == Multiaddr(canonical)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/",
        "//",
        "ip4/1.2.3.4",
        "/ip4",
        "/ip4/",
        "/ip4/1.2.3.4//tcp/1",
        "/ip4/256.1.1.1",
        "/ip4/1.2.3",
        "/ip4/01.2.3.4",
        "/ip4/1.2.3.4.5",
        "/ip4/::1",
        "/ip4/ 1.2.3.4",
        "/ip6/1.2.3.4",
        "/ip6/::g",
        "/ip6/fe80::1%eth0",
        "/tcp/65536",
        "/tcp/-1",
        "/tcp/+1",
        "/tcp/0x10",
        "/tcp/1e3",
        "/tcp/",
        "/tcp/\u0661",  # a non-ASCII digit
        "/udp/99999999999999999999",
        "/dns4/",
        "/dns4/exa mple.com",
        "/dns4/" + "a" * 256,
        "/p2p/QmNotAPeerId",
        f"/p2p/{ED25519_ID[:-1]}",
        "/p2p/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # a CID, but dag-pb not libp2p-key
        "/unix/tmp/sock",  # known to multiaddr, not to peerloom
        "/quic-v1/1",  # a valueless protocol followed by a value
        "/http",
        "/ws" * 600,  # over the byte limit
    ],
)
def test_invalid_text_is_refused(text):
    with pytest.raises(MultiaddrError):
        Multiaddr(text)


@pytest.mark.parametrize(
    "hex_bytes",
    [
        "",
        "04",
        "047f0000",  # ip4 cut short
        "06",
        "060f",
        "2900",
        "3505" + b"exa".hex(),  # the length claims more than is there
        "35ff",  # length varint truncated
        "3500",  # an empty DNS name
        "3501" + b"/".hex(),
        "3502" + "c328",  # not UTF-8
        "a50300",  # an empty peer id
        "a503" + "04" + "13021111",  # an unsupported multihash
        "a503" + "22" + "1220" + "00" * 31,  # too short for its claimed digest
        "ff01",  # protocol 255 is unknown
        "8400",  # a non-minimal varint code
        "ffffffffffffffffff01",  # an overlong varint code
        "047f000001" + "ffff",
    ],
)
def test_invalid_bytes_are_refused(hex_bytes):
    with pytest.raises(MultiaddrError):
        Multiaddr.from_bytes(bytes.fromhex(hex_bytes))


def test_oversized_input_is_refused_before_parsing():
    with pytest.raises(MultiaddrError, match="longer than"):
        Multiaddr.from_bytes(b"\xdd\x03" * 10_000)
    with pytest.raises(MultiaddrError, match="longer than"):
        Multiaddr("/ws" * 10_000)


def test_value_for_and_components():
    addr = Multiaddr(f"/dns4/example.com/tcp/4001/ws/p2p/{ED25519_ID}")
    assert addr.value_for("dns4") == "example.com"
    assert addr.value_for("tcp") == "4001"
    assert addr.value_for("ws") == ""
    assert addr.value_for("udp") is None
    assert addr.value_for("ipfs") == ED25519_ID
    assert addr.components == (("dns4", "example.com"), ("tcp", "4001"), ("ws", None), ("p2p", ED25519_ID))
    with pytest.raises(MultiaddrError, match="unknown"):
        addr.value_for("sctp")


def test_peer_id_and_without_p2p():
    plain = Multiaddr("/ip4/1.2.3.4/tcp/4001")
    full = plain.encapsulate(f"/p2p/{ED25519_ID}")
    assert str(full) == f"/ip4/1.2.3.4/tcp/4001/p2p/{ED25519_ID}"
    assert full.peer_id == PeerId.from_string(ED25519_ID)
    assert full.without_p2p() == plain
    assert plain.peer_id is None
    assert plain.without_p2p() is plain
    with pytest.raises(MultiaddrError):
        Multiaddr(f"/p2p/{ED25519_ID}").without_p2p()


def test_circuit_address_names_the_target_not_the_relay():
    relayed = Multiaddr(f"/ip4/1.2.3.4/tcp/4001/p2p/{SHA256_ID}/p2p-circuit/p2p/{ED25519_ID}")
    assert relayed.peer_id == PeerId.from_string(ED25519_ID)
    assert str(relayed.without_p2p()) == f"/ip4/1.2.3.4/tcp/4001/p2p/{SHA256_ID}/p2p-circuit"
    assert relayed.without_p2p().peer_id is None
    assert relayed.value_for("p2p") == SHA256_ID  # value_for gives the first occurrence
    with pytest.raises(MultiaddrError, match="not a TCP address"):
        relayed.to_host_port()


def test_encapsulate_accepts_a_multiaddr_and_keeps_both_unchanged():
    base, suffix = Multiaddr("/ip4/1.2.3.4/tcp/1"), Multiaddr("/ws")
    assert base.encapsulate(suffix) == Multiaddr("/ip4/1.2.3.4/tcp/1/ws")
    assert str(base) == "/ip4/1.2.3.4/tcp/1" and str(suffix) == "/ws"
    with pytest.raises(MultiaddrError):
        base.encapsulate("not a multiaddr")
    long = Multiaddr("/ws" * 500)
    with pytest.raises(MultiaddrError, match="longer than"):
        long.encapsulate(long)


@pytest.mark.parametrize(
    ("text", "host_port"),
    [
        ("/ip4/127.0.0.1/tcp/4001", ("127.0.0.1", 4001)),
        ("/ip6/::1/tcp/0", ("::1", 0)),
        ("/dns/example.com/tcp/443", ("example.com", 443)),
        ("/dns4/example.com/tcp/65535", ("example.com", 65535)),
        ("/dns6/example.com/tcp/1", ("example.com", 1)),
        (f"/ip4/10.0.0.1/tcp/4001/p2p/{ED25519_ID}", ("10.0.0.1", 4001)),
    ],
)
def test_to_host_port(text, host_port):
    assert Multiaddr(text).to_host_port() == host_port


@pytest.mark.parametrize(
    "text",
    [
        "/ip4/1.2.3.4/udp/4001",
        "/ip4/1.2.3.4/udp/4001/quic-v1",
        "/ip4/1.2.3.4/tcp/4001/ws",
        "/ip4/1.2.3.4",
        "/tcp/4001",
        "/dnsaddr/bootstrap.libp2p.io",
        "/tcp/1/ip4/1.2.3.4",
        f"/p2p/{ED25519_ID}",
    ],
)
def test_to_host_port_refuses_other_shapes(text):
    with pytest.raises(MultiaddrError, match="not a TCP address"):
        Multiaddr(text).to_host_port()


def test_value_semantics():
    first, second = Multiaddr("/ip4/1.2.3.4/tcp/1"), Multiaddr("/ip4/1.2.3.4/tcp/1")
    assert first == second and hash(first) == hash(second)
    assert len({first, second, Multiaddr("/ip4/1.2.3.4/tcp/2")}) == 2
    assert first != "/ip4/1.2.3.4/tcp/1"
    assert repr(first) == "Multiaddr('/ip4/1.2.3.4/tcp/1')"
    with pytest.raises(AttributeError):
        first._bytes = b""  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(first)) == first


def test_multiaddr_error_is_a_protocol_error():
    assert issubclass(MultiaddrError, ProtocolError)


# --- properties -----------------------------------------------------------------------------------------------------

_PEER_IDS = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda digest: PeerId(b"\x12\x20" + digest)),
    st.binary(min_size=1, max_size=42).map(lambda key: PeerId(bytes((0, len(key))) + key)),
)
_DNS_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.é", min_size=1, max_size=60)
_COMPONENTS = st.one_of(
    st.ip_addresses(v=4).map(lambda ip: f"/ip4/{ip}"),
    st.ip_addresses(v=6).map(lambda ip: f"/ip6/{ip}"),
    st.integers(0, 65535).map(lambda port: f"/tcp/{port}"),
    st.integers(0, 65535).map(lambda port: f"/udp/{port}"),
    st.builds(lambda name, host: f"/{name}/{host}", st.sampled_from(["dns", "dns4", "dns6", "dnsaddr"]), _DNS_NAMES),
    _PEER_IDS.map(lambda peer: f"/p2p/{peer}"),
    st.sampled_from(["/quic", "/quic-v1", "/ws", "/wss", "/p2p-circuit"]),
)


@given(st.lists(_COMPONENTS, min_size=1, max_size=8))
def test_text_and_bytes_round_trip(components):
    text = "".join(components)
    addr = Multiaddr(text)
    assert Multiaddr(str(addr)) == addr
    assert Multiaddr.from_bytes(bytes(addr)) == addr
    assert str(Multiaddr.from_bytes(bytes(addr))) == str(addr)
    assert len(addr.components) == len(components)


@given(st.ip_addresses(), st.integers(0, 65535), _PEER_IDS)
def test_host_port_of_generated_addresses(ip, port, peer):
    family = "ip4" if isinstance(ip, ipaddress.IPv4Address) else "ip6"
    addr = Multiaddr(f"/{family}/{ip}/tcp/{port}/p2p/{peer.to_cid()}")
    assert addr.to_host_port() == (str(ip), port)
    assert addr.peer_id == peer


@given(st.binary(max_size=80))
def test_random_bytes_give_an_address_or_multiaddr_error(data):
    try:
        addr = Multiaddr.from_bytes(data)
    except MultiaddrError:
        return
    assert bytes(addr) == data  # what parses is canonical: the binary form is reproduced exactly
    assert Multiaddr(str(addr)) == addr


_PROTOCOL_NAMES = ["ip4", "ip6", "tcp", "udp", "dns", "dns4", "p2p", "ipfs", "ws", "quic-v1", "p2p-circuit"]
_VALUES = ["1.2.3.4", "::1", "4001", "65536", "", "x", ED25519_ID, SHA256_CID, "%", "é", "\x00"]
_TEXT_PIECES = st.sampled_from(_PROTOCOL_NAMES + _VALUES)


@given(st.one_of(st.text(max_size=60), st.lists(_TEXT_PIECES, max_size=8).map(lambda parts: "/" + "/".join(parts))))
def test_random_text_gives_an_address_or_multiaddr_error(text):
    try:
        addr = Multiaddr(text)
    except MultiaddrError:
        return
    assert Multiaddr.from_bytes(bytes(addr)) == addr
