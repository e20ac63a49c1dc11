"""Magnet links: every form of BEP 9 and BEP 52, round trips and refusals."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerloom.torrent.magnet import Magnet, MagnetError, parse_peer_address

V1 = bytes(range(20))
V2 = bytes(range(32))


def test_hex_and_base32_btih():
    hex_link = f"magnet:?xt=urn:btih:{V1.hex().upper()}"
    b32_link = f"magnet:?xt=urn:btih:{base64.b32encode(V1).decode()}"
    assert Magnet.parse(hex_link).info_hash_v1 == V1
    assert Magnet.parse(b32_link).info_hash_v1 == V1


def test_hybrid_link_with_everything():
    link = (
        f"magnet:?xt=urn:btih:{V1.hex()}&xt=urn:btmh:1220{V2.hex()}&dn=My+File%20%C3%A9"
        "&tr=http%3A%2F%2Ft%2Fa&tr.1=udp://u:80&x.pe=10.0.0.1:6881&x.pe=[::1]:7000&so=0,2,4-6"
        "&ws=http://seed/&unknown=ignored"
    )
    magnet = Magnet.parse(link)
    assert magnet.info_hash_v1 == V1
    assert magnet.info_hash_v2 == V2
    assert magnet.name == "My File é"
    assert magnet.trackers == ("http://t/a", "udp://u:80")
    assert magnet.peers == (("10.0.0.1", 6881), ("::1", 7000))
    assert magnet.web_seeds == ("http://seed/",)
    assert [i for i in range(8) if magnet.selects(i)] == [0, 2, 4, 5, 6]
    assert Magnet.parse(str(magnet)) == magnet


def test_v2_only_link():
    magnet = Magnet.parse(f"magnet:?xt=urn:btmh:1220{V2.hex()}")
    assert magnet.info_hash_v1 is None
    assert magnet.info_hash_v2 == V2
    assert str(magnet) == f"magnet:?xt=urn:btmh:1220{V2.hex()}"
    assert magnet.selects(12345)


@pytest.mark.parametrize(
    "link",
    [
        "http://example.com/",
        "magnet:?dn=nothing",
        "magnet:?xt=urn:btih:1234",
        "magnet:?xt=urn:btih:" + "g" * 40,
        "magnet:?xt=urn:btih:" + "1" * 32,  # '1' is not base32
        "magnet:?xt=urn:btmh:1114" + "00" * 32,  # sha1 multihash is not a v2 hash
        "magnet:?xt=urn:btmh:1220abcd",
        f"magnet:?xt=urn:btih:{V1.hex()}&x.pe=nohost",
        f"magnet:?xt=urn:btih:{V1.hex()}&x.pe=1.2.3.4:99999",
        f"magnet:?xt=urn:btih:{V1.hex()}&x.pe=[zz]:1",
        f"magnet:?xt=urn:btih:{V1.hex()}&so=3-1",
        f"magnet:?xt=urn:btih:{V1.hex()}&so=a",
        "magnet:?" + "a=b&" * 5000,
        "magnet:?xt=urn:btih:" + "a" * 100_000,
    ],
)
def test_refusals(link):
    with pytest.raises(MagnetError):
        Magnet.parse(link)


def test_peer_address():
    assert parse_peer_address("[2001:db8::1]:80") == ("2001:db8::1", 80)
    assert parse_peer_address("host.example:1") == ("host.example", 1)


@given(st.text(max_size=200))
def test_random_text_raises_only_magnet_error(text):
    try:
        Magnet.parse("magnet:?" + text)
    except MagnetError:
        pass
