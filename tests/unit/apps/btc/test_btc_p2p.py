"""P2P framing and message codecs: Core's verack bytes, frames split anywhere reassemble, every message
round-trips, and the limits (message length, counts, command, checksum, BIP 155 lengths) raise `BtcError`."""

from __future__ import annotations

import pytest

from peerloom.apps.btc import p2p
from peerloom.apps.btc.p2p import (
    Addr,
    AddrV2,
    AddrV2Entry,
    BlockMessage,
    FeeFilter,
    FrameDecoder,
    GetAddr,
    GetData,
    GetHeaders,
    Headers,
    Inv,
    InvItem,
    NetAddress,
    NotFound,
    Ping,
    Pong,
    SendAddrV2,
    SendHeaders,
    TimedAddress,
    TxMessage,
    UnknownMessage,
    Verack,
    Version,
    WtxidRelay,
    decode_message,
    encode_message,
)
from peerloom.apps.btc.params import MAINNET, REGTEST
from peerloom.apps.btc.serialize import BtcError, compact_size

MAGIC = MAINNET.magic
VERSION = Version(
    70016, 1033, 1_700_000_000, NetAddress.from_host("127.0.0.1", 8333, 1), NetAddress.from_host("::1", 18444),
    0x1122334455667788, "/peerloom:0.1/", 123, True,
)
MESSAGES = [
    VERSION, Verack(), Ping(7), Pong(2**64 - 1), SendHeaders(), SendAddrV2(), WtxidRelay(), GetAddr(), FeeFilter(1000),
    GetHeaders(70016, (REGTEST.genesis_hash, bytes(32)), b"\x01" * 32),
    Headers((MAINNET.genesis.header, REGTEST.genesis.header)),
    Inv((InvItem(p2p.MSG_WTX, b"\x02" * 32), InvItem(p2p.MSG_BLOCK, b"\x03" * 32))),
    GetData((InvItem(p2p.MSG_WITNESS_BLOCK, b"\x03" * 32),)), NotFound((InvItem(p2p.MSG_WITNESS_TX, bytes(32)),)),
    Addr((TimedAddress(1_700_000_000, NetAddress.from_host("10.0.0.1", 8333, 9)),)),
    AddrV2((AddrV2Entry(1, 1 << 40, 1, bytes([10, 0, 0, 1]), 8333), AddrV2Entry(2, 0, 4, b"\x05" * 32, 9050))),
    BlockMessage(MAINNET.genesis), TxMessage(MAINNET.genesis.transactions[0]),
]


def test_a_verack_frame_is_the_bytes_core_sends() -> None:
    assert encode_message(MAGIC, Verack()).hex() == "f9beb4d976657261636b000000000000000000005df6e0e2"


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_a_frame(message: p2p.Message) -> None:
    wire = encode_message(MAGIC, message)
    decoder = FrameDecoder(MAGIC)
    frames = [f for i in range(len(wire)) for f in decoder.feed(wire[i : i + 1])]  # one byte at a time
    assert len(frames) == 1
    assert decode_message(*frames[0]) == message


def test_unknown_commands_are_kept_not_rejected() -> None:
    (frame,) = FrameDecoder(MAGIC).feed(p2p.frame(MAGIC, "cmpctblock", b"\x01\x02"))
    assert decode_message(*frame) == UnknownMessage("cmpctblock", b"\x01\x02")


def test_frames_with_a_bad_magic_command_length_or_checksum_are_refused() -> None:
    good = encode_message(MAGIC, Ping(1))
    with pytest.raises(BtcError, match="magic"):
        FrameDecoder(REGTEST.magic).feed(good)
    with pytest.raises(BtcError, match="checksum"):
        FrameDecoder(MAGIC).feed(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(BtcError, match="command"):
        FrameDecoder(MAGIC).feed(good[:4] + b"ping\x00x" + bytes(6) + good[16:])
    with pytest.raises(BtcError, match="command"):
        FrameDecoder(MAGIC).feed(good[:4] + bytes(12) + good[16:])
    # The length is refused from the header alone, before any of the payload is buffered.
    huge = MAGIC + b"block".ljust(12, b"\x00") + (p2p.MAX_PROTOCOL_MESSAGE_LENGTH + 1).to_bytes(4, "little") + bytes(4)
    with pytest.raises(BtcError, match="above"):
        FrameDecoder(MAGIC).feed(huge)
    assert FrameDecoder(MAGIC).feed(good[:23]) == []


@pytest.mark.parametrize(
    ("command", "payload", "match"),
    [
        ("verack", b"\x00", "no payload"),
        ("ping", bytes(9), "trailing"),
        ("headers", compact_size(2001) + bytes(81 * 2001), "limit"),
        ("headers", b"\x01" + MAINNET.genesis.header.serialize() + b"\xfd\x01", "truncated"),
        ("getheaders", bytes(4) + compact_size(102) + bytes(32 * 103), "limit"),
        ("inv", compact_size(50_001) + bytes(36), "limit"),
        ("inv", compact_size(3) + bytes(36 * 2), "exceeds"),
        ("addr", compact_size(1001) + bytes(30 * 1001), "limit"),
        ("addrv2", b"\x01" + bytes(4) + b"\x00" + b"\x01" + compact_size(5) + bytes(5) + bytes(2), "not 4"),
        ("addrv2", b"\x01" + bytes(4) + b"\x00" + b"\x09" + compact_size(513) + bytes(513 + 2), "limit"),
        ("version", bytes(20), "truncated"),
        ("version", bytes(80) + compact_size(257) + bytes(257), "limit"),
        ("tx", bytes(10), "without inputs"),
        ("block", bytes(80) + compact_size(10), "exceeds"),
    ],
)
def test_malformed_payloads_raise_btc_error(command: str, payload: bytes, match: str) -> None:
    with pytest.raises(BtcError, match=match):
        decode_message(command, payload)


def test_a_headers_transaction_count_is_read_and_ignored_as_core_does() -> None:
    payload = b"\x01" + MAINNET.genesis.header.serialize() + b"\x05"
    assert decode_message("headers", payload) == Headers((MAINNET.genesis.header,))


def test_addrv2_skips_networks_it_does_not_know() -> None:
    unknown = (7).to_bytes(4, "little") + b"\x00" + b"\x2a" + compact_size(3) + b"abc" + (1).to_bytes(2, "big")
    known = AddrV2((AddrV2Entry(9, 1, 2, bytes(15) + b"\x01", 8333),)).encode()[1:]
    decoded = AddrV2.decode(b"\x02" + unknown + known)
    assert decoded == AddrV2((AddrV2Entry(9, 1, 2, bytes(15) + b"\x01", 8333),))


def test_an_old_style_version_without_the_optional_fields_decodes() -> None:
    short = VERSION.encode()[: 4 + 8 + 8 + 26]
    decoded = Version.decode(short)
    assert decoded.version == 70016 and decoded.user_agent == "" and decoded.relay
    assert VERSION.addr_recv.host() == "127.0.0.1" and VERSION.addr_from.host() == "::1"
