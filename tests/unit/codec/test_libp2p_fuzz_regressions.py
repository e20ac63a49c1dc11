"""Regressions for bugs that tests/fuzz/fuzz_libp2p_codecs.py found in the libp2p-side codecs (base32 text,
multiaddr text limits), replayed both directly and as fuzz inputs; the identify one also has a test of its own
in tests/unit/net/test_identify.py."""

from __future__ import annotations

import fuzz_libp2p_codecs  # tests/fuzz is on pytest's pythonpath
import pytest

from peerloom.codec.multiaddr import MAX_MULTIADDR_BYTES, Multiaddr, MultiaddrError
from peerloom.codec.multibase import MultibaseError, b32decode, multibase_decode
from peerloom.identity import PeerId, PeerIdError

ED25519_ID = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"  # peer-ids spec example
KELVIN_SIGN = "\u212a"  # str.lower() turns it into ASCII 'k'


@pytest.mark.parametrize("text", [KELVIN_SIGN + "a", "ab" + KELVIN_SIGN + "q", KELVIN_SIGN * 8])
def test_base32_refuses_a_kelvin_sign_for_k(text: str) -> None:
    # Found by fuzz_libp2p_codecs: b32decode lower-cased before checking the alphabet, and U+212A lowers to
    # 'k', so non-ASCII text decoded as if it were base32.
    assert b32decode(text.replace(KELVIN_SIGN, "k")) is not None  # the ASCII spelling is valid base32
    with pytest.raises(MultibaseError, match="invalid base32"):
        b32decode(text)
    with pytest.raises(MultibaseError):
        multibase_decode("b" + text)


def test_a_peer_id_cid_with_a_kelvin_sign_is_refused() -> None:
    cid = PeerId.from_string(ED25519_ID).to_cid()
    assert "k" in cid
    with pytest.raises(PeerIdError):
        PeerId.from_string(cid.replace("k", KELVIN_SIGN, 1))
    assert PeerId.from_string(cid.upper()) == PeerId.from_string(ED25519_ID)  # ASCII case still does not matter


@pytest.mark.parametrize(
    "component",
    [
        "/p2p-circuit",  # 12 characters for 2 bytes: the widest spelling of all
        "/quic-v1",
        "/ws",
        "/ip4/255.255.255.255",
        "/ip6/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "/tcp/65535",
        "/dnsaddr/x",
        "/dns/x",
        f"/p2p/{PeerId(bytes([0, 1, 0]))}",  # the shortest peer id: a 1-byte inlined key
    ],
)
def test_the_text_of_any_binary_multiaddr_within_the_limit_parses_back(component: str) -> None:
    # Found by fuzz_libp2p_codecs: a 1017-byte multiaddr (dns4, then many ip6) was valid in binary, as in
    # identify, but its text was over the 2048-character text limit, so str(addr) did not parse.
    one = bytes(Multiaddr(component))
    addr = Multiaddr.from_bytes(one * (MAX_MULTIADDR_BYTES // len(one)))
    assert Multiaddr(str(addr)) == addr
    assert str(Multiaddr(str(addr))) == str(addr)


def test_text_past_the_limit_is_still_refused_before_parsing() -> None:
    with pytest.raises(MultiaddrError, match="text longer than"):
        Multiaddr("/p2p-circuit" * (MAX_MULTIADDR_BYTES // 2) + "/")  # one character too many
    with pytest.raises(MultiaddrError, match="longer than 1024 bytes"):
        Multiaddr("/ws" * (MAX_MULTIADDR_BYTES // 2 + 1))  # within the text limit, over the byte limit


@pytest.mark.parametrize(
    "data",
    [
        b"\x03b\xe2\x84\xaaa",  # multibase target: "b" + KELVIN SIGN + "a"
        b"\x9b\x02",  # identify near the size limit, with nothing but the filler public key
        b"\x05" + b"\xa2\x02" * 512,  # multiaddr bytes target: 512 p2p-circuits
    ],
)
def test_fuzz_inputs_that_failed_now_pass(data: bytes) -> None:
    fuzz_libp2p_codecs.TestOneInput(data)
