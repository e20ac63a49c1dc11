"""Identify messages (libp2p specs, identify/README.md): the round trip, what the decoder skips, what it refuses,
and the bounds it keeps; random and damaged input raises only IdentifyError."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.mutations import mutated

from peerloom.codec.multiaddr import Multiaddr
from peerloom.codec.protobuf import encode_bytes_field, encode_varint_field, iter_fields
from peerloom.codec.varint import encode_varint
from peerloom.errors import ProtocolError
from peerloom.identity import PeerId, encode_public_key
from peerloom.net.identify import (
    MAX_IDENTIFY_SIZE,
    MAX_LISTED,
    PROTOCOL_VERSION,
    IdentifyError,
    IdentifyInfo,
    decode_identify,
    encode_identify,
)

# Field numbers of the Identify message in the spec's identify.proto (7 is unused there).
PUBLIC_KEY, LISTEN_ADDRS, PROTOCOLS, OBSERVED_ADDR, PROTOCOL_VERSION_FIELD, AGENT_VERSION = range(1, 7)
SIGNED_PEER_RECORD = 8

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
PEER = PeerId.from_public_key(KEY)
ADDRS = [
    Multiaddr(f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"),
    Multiaddr("/ip6/2001:db8::1/udp/4001/quic-v1"),
    Multiaddr("/dns4/example.com/tcp/443/wss"),
]
OBSERVED = Multiaddr("/ip4/192.0.2.7/tcp/50000")
FULL = IdentifyInfo(
    protocol_version=PROTOCOL_VERSION,
    agent_version="peerloom/0.1 (tests)",
    public_key=encode_public_key(KEY),
    listen_addrs=ADDRS,
    protocols=["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/peerloom/bittorrent/1.0.0"],
    observed_addr=OBSERVED,
)
UNKNOWN_PROTOCOL_ADDR = encode_varint(0x01BC) + bytes(2)  # sctp: a real protocol, not one peerloom knows


def test_identify_error_is_a_protocol_error() -> None:
    assert issubclass(IdentifyError, ProtocolError)


# -- round trip ------------------------------------------------------------------------------------------
def test_round_trip_with_every_field() -> None:
    assert decode_identify(encode_identify(FULL)) == FULL


def test_encoding_uses_the_spec_field_numbers() -> None:
    fields = [(field.number, field.as_bytes()) for field in iter_fields(encode_identify(FULL))]
    assert sorted(fields) == sorted(
        [
            (PROTOCOL_VERSION_FIELD, PROTOCOL_VERSION.encode()),
            (AGENT_VERSION, b"peerloom/0.1 (tests)"),
            (PUBLIC_KEY, encode_public_key(KEY)),
            *((LISTEN_ADDRS, bytes(addr)) for addr in ADDRS),
            (OBSERVED_ADDR, bytes(OBSERVED)),
            *((PROTOCOLS, protocol.encode()) for protocol in FULL.protocols),
        ]
    )


def test_decodes_a_message_written_field_by_field_in_any_order() -> None:
    message = (
        encode_bytes_field(PROTOCOLS, b"/ipfs/ping/1.0.0")
        + encode_bytes_field(OBSERVED_ADDR, bytes(OBSERVED))
        + encode_bytes_field(LISTEN_ADDRS, bytes(ADDRS[1]))
        + encode_bytes_field(AGENT_VERSION, "agent/ü".encode())
        + encode_bytes_field(PUBLIC_KEY, b"key bytes are kept as they came")
        + encode_bytes_field(LISTEN_ADDRS, bytes(ADDRS[0]))
        + encode_bytes_field(PROTOCOL_VERSION_FIELD, b"ipfs/0.1.0")
    )
    assert decode_identify(message) == IdentifyInfo(
        protocol_version="ipfs/0.1.0",
        agent_version="agent/ü",
        public_key=b"key bytes are kept as they came",
        listen_addrs=[ADDRS[1], ADDRS[0]],
        protocols=["/ipfs/ping/1.0.0"],
        observed_addr=OBSERVED,
    )


def test_empty_message_is_the_empty_info_and_back() -> None:
    assert decode_identify(b"") == IdentifyInfo()
    assert encode_identify(IdentifyInfo()) == b""  # absent and empty read the same, so nothing is written


def test_a_repeated_single_field_keeps_the_last_value() -> None:
    message = encode_bytes_field(AGENT_VERSION, b"first") + encode_bytes_field(AGENT_VERSION, b"second")
    assert decode_identify(message).agent_version == "second"


def test_reencoding_a_message_at_the_size_limit_stays_within_it() -> None:
    # Found by fuzz_libp2p_codecs: the encoder wrote empty version fields the message did not have, so a
    # message of exactly MAX_IDENTIFY_SIZE bytes came back 4 bytes too long and its own re-encoding was refused.
    key_field = encode_bytes_field(PUBLIC_KEY, bytes(MAX_IDENTIFY_SIZE - 4))
    assert len(key_field) == MAX_IDENTIFY_SIZE
    info = decode_identify(key_field)
    assert encode_identify(info) == key_field
    assert decode_identify(encode_identify(info)) == info


# -- skipped ---------------------------------------------------------------------------------------------
def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    unknown = (
        encode_varint_field(7, 1)
        + encode_bytes_field(SIGNED_PEER_RECORD, b"an envelope peerloom does not read")
        + encode_bytes_field(1000, b"far future")
        + (encode_varint(9 << 3 | 1) + bytes(8))  # I64
        + (encode_varint(10 << 3 | 5) + bytes(4))  # I32
    )
    message = encode_identify(FULL)
    assert decode_identify(unknown + message + unknown) == FULL


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        UNKNOWN_PROTOCOL_ADDR,
        bytes(ADDRS[0])[:-1],  # truncated peer id
        b"\x04\x7f\x00",  # truncated ip4
        b"\x35\x00",  # empty DNS name
        b"\x06\x0f",  # half a port
    ],
)
def test_unparseable_listen_and_observed_addrs_are_skipped(bad: bytes) -> None:
    message = (
        encode_bytes_field(LISTEN_ADDRS, bad)
        + encode_bytes_field(LISTEN_ADDRS, bytes(ADDRS[0]))
        + encode_bytes_field(LISTEN_ADDRS, bad)
        + encode_bytes_field(OBSERVED_ADDR, bad)
        + encode_bytes_field(AGENT_VERSION, b"still read")
    )
    info = decode_identify(message)
    assert info.listen_addrs == [ADDRS[0]]
    assert info.observed_addr is None
    assert info.agent_version == "still read"


def test_an_unparseable_observed_addr_leaves_an_earlier_good_one() -> None:
    message = encode_bytes_field(OBSERVED_ADDR, bytes(OBSERVED)) + encode_bytes_field(OBSERVED_ADDR, b"\xff")
    assert decode_identify(message).observed_addr == OBSERVED


# -- refused ---------------------------------------------------------------------------------------------
def test_oversized_message_is_refused_before_parsing() -> None:
    at_limit = encode_bytes_field(PUBLIC_KEY, bytes(MAX_IDENTIFY_SIZE - 4))
    assert len(at_limit) == MAX_IDENTIFY_SIZE
    assert decode_identify(at_limit).public_key == bytes(MAX_IDENTIFY_SIZE - 4)
    with pytest.raises(IdentifyError, match="bytes"):
        decode_identify(at_limit + b"\x00")
    with pytest.raises(IdentifyError):
        decode_identify(b"\xff" * (MAX_IDENTIFY_SIZE + 1))  # refused by size, not by what it holds


@pytest.mark.parametrize("number", [AGENT_VERSION, PROTOCOL_VERSION_FIELD, PROTOCOLS])
@pytest.mark.parametrize("value", [b"\xff", b"agent\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])
def test_text_that_is_not_utf8_is_refused(number: int, value: bytes) -> None:
    with pytest.raises(IdentifyError, match="not UTF-8"):
        decode_identify(encode_identify(FULL) + encode_bytes_field(number, value))


@pytest.mark.parametrize("number", [PUBLIC_KEY, LISTEN_ADDRS, PROTOCOLS, OBSERVED_ADDR, AGENT_VERSION])
def test_a_known_field_with_the_wrong_wire_type_is_refused(number: int) -> None:
    with pytest.raises(IdentifyError, match="wire type"):
        decode_identify(encode_varint_field(number, 1))


@pytest.mark.parametrize(
    "message",
    [
        encode_identify(FULL)[:-1],  # the last field cut short
        b"\x0a\x05abc",  # a length past the end
        b"\x0a",  # a key with no value
        b"\x0b",  # wire type 3 (group start)
        b"\x00\x00",  # field number 0
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # a length varint over 10 bytes
    ],
)
def test_malformed_protobuf_is_refused(message: bytes) -> None:
    with pytest.raises(IdentifyError, match="malformed identify"):
        decode_identify(message)


# -- bounds ----------------------------------------------------------------------------------------------
def test_listed_addrs_and_protocols_are_capped_at_max_listed() -> None:
    addrs = [Multiaddr(f"/ip4/10.0.{i // 256}.{i % 256}/tcp/4001") for i in range(MAX_LISTED + 20)]
    protocols = [f"/proto/{i}" for i in range(MAX_LISTED + 20)]
    info = decode_identify(encode_identify(IdentifyInfo(listen_addrs=addrs, protocols=protocols)))
    assert info.listen_addrs == addrs[:MAX_LISTED]
    assert info.protocols == protocols[:MAX_LISTED]


def test_skipped_addrs_do_not_count_against_the_cap() -> None:
    bad = encode_bytes_field(LISTEN_ADDRS, UNKNOWN_PROTOCOL_ADDR) * 50
    good = b"".join(
        encode_bytes_field(LISTEN_ADDRS, bytes(Multiaddr(f"/ip4/10.0.0.{i}/tcp/1"))) for i in range(MAX_LISTED)
    )
    assert len(decode_identify(bad + good).listen_addrs) == MAX_LISTED


def test_fields_past_the_cap_are_not_parsed() -> None:
    protocols = [f"/p/{i}" for i in range(MAX_LISTED)]
    message = encode_identify(IdentifyInfo(protocols=protocols, listen_addrs=[ADDRS[0]] * MAX_LISTED))
    # Past the cap, neither a bad protocol id nor an unknown address is looked at.
    info = decode_identify(message + encode_bytes_field(PROTOCOLS, b"\xff") + encode_bytes_field(LISTEN_ADDRS, b"\x00"))
    assert info.protocols == protocols and len(info.listen_addrs) == MAX_LISTED


def test_version_strings_and_protocol_ids_are_cut_to_256_characters() -> None:
    long_text = "é" * 1000
    info = decode_identify(
        encode_identify(IdentifyInfo(protocol_version=long_text, agent_version=long_text, protocols=[long_text]))
    )
    assert info.protocol_version == info.agent_version == info.protocols[0] == "é" * 256


# -- properties ------------------------------------------------------------------------------------------
def _check(data: bytes) -> None:
    """Decodes to a bounded info whose re-encoding decodes equal, or raises IdentifyError and nothing else."""
    try:
        info = decode_identify(data)
    except IdentifyError:
        return
    assert len(info.listen_addrs) <= MAX_LISTED and len(info.protocols) <= MAX_LISTED
    assert max(map(len, [info.protocol_version, info.agent_version, *info.protocols])) <= 256
    again = encode_identify(info)
    assert len(again) <= len(data)
    assert decode_identify(again) == info


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_identify_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(st.just(encode_identify(FULL)), max_edits=6))
def test_damaged_messages_raise_only_identify_error(data: bytes) -> None:
    _check(data)


_fields = st.one_of(
    st.tuples(st.sampled_from([LISTEN_ADDRS, OBSERVED_ADDR]), st.sampled_from([bytes(a) for a in ADDRS]) | st.binary()),
    st.tuples(st.sampled_from([PROTOCOLS, AGENT_VERSION, PROTOCOL_VERSION_FIELD]), st.text().map(str.encode)),
    st.tuples(st.integers(1, 20), st.binary(max_size=40)),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_fields, max_size=12))
def test_messages_of_well_formed_fields_round_trip(fields: list[tuple[int, bytes]]) -> None:
    _check(b"".join(encode_bytes_field(number, value) for number, value in fields))


@settings(max_examples=50, deadline=None)
@given(st.integers(0, len(encode_identify(FULL))))
def test_every_prefix_of_a_message_decodes_or_is_refused(cut: int) -> None:
    _check(encode_identify(FULL)[:cut])
