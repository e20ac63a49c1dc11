"""BEP 10 extension handshake, BEP 9 metadata exchange and BEP 11 peer exchange: round trips, every
malformed form a peer can send, the metadata assembler and PEX diffing; hostile input raises only
ExtensionError."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.mutations import mutated

from peerloom.codec.bencode import decode, encode
from peerloom.errors import ProtocolError
from peerloom.torrent import extensions as ext
from peerloom.torrent.extensions import (
    MAX_METADATA_SIZE,
    MAX_PEX_PEERS,
    METADATA_PIECE,
    PEX_SEND_MAX,
    ExtensionError,
    ExtHandshake,
    MetadataAssembler,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    PexMessage,
    PexState,
)

V4 = ("10.1.2.3", 6881)
V6 = ("2001:db8::7", 51413)


def compact4(host: str, port: int) -> bytes:
    return bytes(int(x) for x in host.split(".")) + port.to_bytes(2, "big")


def test_extension_error_is_a_protocol_error() -> None:
    assert issubclass(ExtensionError, ProtocolError)


# -- BEP 10 extension handshake ---------------------------------------------------------------------
def test_ext_handshake_round_trip_with_every_field() -> None:
    h = ExtHandshake(
        ids={"ut_metadata": 2, "ut_pex": 1, "lt_donthave": 7},
        client="peerloom 0.1",
        port=6881,
        reqq=250,
        metadata_size=31_337,
        yourip=bytes([192, 0, 2, 1]),
        upload_only=True,
    )
    assert ext.parse_ext_handshake(ext.encode_ext_handshake(h)) == h


def test_ext_handshake_round_trip_minimal_and_ipv6_yourip() -> None:
    assert ext.parse_ext_handshake(ext.encode_ext_handshake(ExtHandshake(ids={}))) == ExtHandshake(ids={})
    h = ExtHandshake(ids={"ut_pex": 1}, yourip=bytes(15) + b"\x01", metadata_size=1)
    assert ext.parse_ext_handshake(ext.encode_ext_handshake(h)) == h


def test_ext_handshake_without_m_has_no_extensions() -> None:
    assert ext.parse_ext_handshake(encode({b"v": b"x"})) == ExtHandshake(ids={}, client="x")


def test_ext_handshake_ignores_known_keys_of_the_wrong_type_or_range() -> None:
    payload = encode({
        b"m": {b"ut_metadata": b"2", b"ut_pex": 0, b"big": 256, b"neg": -1, b"list": [1], b"ok": 255, b"one": 1},
        b"v": 5,
        b"p": 70_000,
        b"reqq": b"250",
        b"metadata_size": -5,
        b"yourip": b"123",
        b"upload_only": 2,
    })
    assert ext.parse_ext_handshake(payload) == ExtHandshake(ids={"ut_pex": 0, "ok": 255, "one": 1})  # 0: disabled


@pytest.mark.parametrize(
    ("key", "value"),
    [(b"p", 0), (b"p", 65_536), (b"reqq", 0), (b"reqq", (1 << 20) + 1), (b"metadata_size", 0),
     (b"metadata_size", (1 << 62) + 1), (b"yourip", bytes(5)), (b"yourip", [b"1"])],
)
def test_ext_handshake_out_of_range_values_are_dropped(key: bytes, value: object) -> None:
    h = ext.parse_ext_handshake(encode({b"m": {}, key: value}))
    assert (h.port, h.reqq, h.metadata_size, h.yourip) == (None, None, None, None)


def test_ext_handshake_bounds_names_and_client() -> None:
    many = {b"x%05d" % i: 1 + i % 255 for i in range(10_000)}
    h = ext.parse_ext_handshake(encode({b"m": many, b"v": b"c" * 10_000}))
    assert len(h.ids) == 64
    assert h.client == "c" * 100


def test_ext_handshake_names_that_are_not_utf8_are_replaced() -> None:
    h = ext.parse_ext_handshake(encode({b"m": {b"\xffbad": 3}, b"v": b"\xfe"}))
    assert h.ids == {"\ufffdbad": 3}
    assert h.client == "\ufffd"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"garbage",
        encode([b"m"]),
        encode(7),
        encode(b"d1:mdee"),  # a string that looks like a dict
        encode({b"m": [b"ut_pex", 1]}),
        encode({b"m": b"ut_pex"}),
        encode({b"m": 1}),
        b"d1:md6:ut_pexi1eee" + b"x",  # trailing data
        b"d1:md6:ut_pexi1e",  # truncated
        b"d1:m" + b"l" * 8 + b"e" * 8 + b"e",  # nested deeper than the bound
        b"d1:v99999999999:xe",  # a string claiming more bytes than sent
    ],
)
def test_ext_handshake_malformed(payload: bytes) -> None:
    with pytest.raises(ExtensionError):
        ext.parse_ext_handshake(payload)


# -- BEP 9 metadata messages -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "msg",
    [
        MetadataRequest(0),
        MetadataRequest(MAX_METADATA_SIZE // METADATA_PIECE - 1),
        MetadataReject(3),
        MetadataData(0, 5, b"hello"),
        MetadataData(1, METADATA_PIECE + 1, b"x"),
        MetadataData(2, MAX_METADATA_SIZE, b"\x00" * METADATA_PIECE),
        MetadataData(0, 1, b""),
    ],
)
def test_metadata_round_trip(msg: object) -> None:
    assert ext.parse_metadata(ext.encode_metadata(msg)) == msg  # type: ignore[arg-type]


def test_metadata_data_is_whatever_follows_the_dictionary() -> None:
    payload = b"d8:msg_typei1e5:piecei0e10:total_sizei8ee" + b"d1:xe" + b"abc"
    assert ext.parse_metadata(payload) == MetadataData(0, 8, b"d1:xeabc")


@pytest.mark.parametrize(
    "fields",
    [
        {b"msg_type": 0},  # no piece
        {b"msg_type": 0, b"piece": -1},
        {b"msg_type": 0, b"piece": MAX_METADATA_SIZE // METADATA_PIECE},  # beyond any legal metadata
        {b"msg_type": 2, b"piece": 2**64},
        {b"msg_type": 0, b"piece": b"0"},
        {b"msg_type": 0, b"piece": [0]},
        {b"piece": 0},  # no type
        {b"msg_type": 3, b"piece": 0},
        {b"msg_type": -1, b"piece": 0},
        {b"msg_type": b"0", b"piece": 0},
        {b"msg_type": 1, b"piece": 0},  # data without total_size
        {b"msg_type": 1, b"piece": 0, b"total_size": 0},
        {b"msg_type": 1, b"piece": 0, b"total_size": -1},
        {b"msg_type": 1, b"piece": 0, b"total_size": MAX_METADATA_SIZE + 1},
        {b"msg_type": 1, b"piece": 0, b"total_size": 2**62},  # absurd: refused, nothing allocated
        {b"msg_type": 1, b"piece": 0, b"total_size": b"10"},
    ],
)
def test_metadata_malformed_fields(fields: dict[bytes, object]) -> None:
    with pytest.raises(ExtensionError):
        ext.parse_metadata(encode(fields))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"x",
        encode([0, 0]),
        encode(b"msg_type"),
        b"d8:msg_typei0e5:piecei0e",  # unterminated dictionary
        b"d8:msg_typei0e5:piece99999:e",
        b"d1:a" + b"l" * 4 + b"e" * 4 + b"e",  # nested deeper than the bound
        encode({b"msg_type": 1, b"piece": 0, b"total_size": 20_000}) + b"x" * (METADATA_PIECE + 1),
    ],
)
def test_metadata_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(ExtensionError):
        ext.parse_metadata(payload)


# -- BEP 9 metadata assembly -------------------------------------------------------------------------
INFO = encode({b"name": b"file", b"piece length": 16384, b"length": 1, b"pieces": bytes(20), b"pad": b"p" * 40_000})
INFO_V1 = hashlib.sha1(INFO).digest()
INFO_V2 = hashlib.sha256(INFO).digest()


def chunks(info: bytes) -> list[bytes]:
    return [info[i : i + METADATA_PIECE] for i in range(0, len(info), METADATA_PIECE)]


def sized(size: int, **hashes: bytes | None) -> MetadataAssembler:
    assembler = MetadataAssembler(info_hash_v1=hashes.get("v1"), info_hash_v2=hashes.get("v2"))
    assembler.set_size(size)
    return assembler


def test_assembler_collects_pieces_in_any_order() -> None:
    assembler = sized(len(INFO), v1=INFO_V1)
    assert assembler.num_pieces == 3
    assert [assembler.next_request() for _ in range(4)] == [0, 1, 2, None]
    parts = chunks(INFO)
    assert assembler.receive(2, parts[2]) is None
    assert assembler.receive(0, parts[0]) is None
    assert assembler.receive(1, parts[1]) == INFO
    assert assembler.done
    assert assembler.next_request() is None
    assert assembler.receive(0, parts[0]) is None  # late duplicates are ignored


@pytest.mark.parametrize("hashes", [{"v2": INFO_V2}, {"v1": INFO_V1, "v2": INFO_V2}])
def test_assembler_checks_v2_and_hybrid_info_hashes(hashes: dict[str, bytes]) -> None:
    assembler = sized(len(INFO), **hashes)
    results = [assembler.receive(i, part) for i, part in enumerate(chunks(INFO))]
    assert results[-1] == INFO


@pytest.mark.parametrize(
    "hashes",
    [{"v1": hashlib.sha1(b"other").digest()}, {"v2": hashlib.sha256(b"other").digest()},
     {"v1": INFO_V1, "v2": hashlib.sha256(b"other").digest()}],
)
def test_assembler_rejects_metadata_that_does_not_match_the_info_hash(hashes: dict[str, bytes]) -> None:
    assembler = sized(len(INFO), **hashes)
    parts = chunks(INFO)
    assembler.receive(0, parts[0])
    assembler.receive(1, parts[1])
    with pytest.raises(ExtensionError, match="info-hash"):
        assembler.receive(2, parts[2])
    assert not assembler.done


def test_assembler_starts_over_after_a_mismatch_and_can_still_succeed() -> None:
    assembler = sized(len(INFO), v1=INFO_V1)
    parts = chunks(INFO)
    for piece in range(3):
        assert assembler.next_request() == piece
    bad = bytes([parts[1][0] ^ 1]) + parts[1][1:]
    assembler.receive(0, parts[0])
    assembler.receive(1, bad)
    with pytest.raises(ExtensionError):
        assembler.receive(2, parts[2])
    assert sorted(assembler.next_request() for _ in range(3)) == [0, 1, 2]  # every piece is asked again
    assembler.receive(0, parts[0])
    assembler.receive(1, parts[1])
    assert assembler.receive(2, parts[2]) == INFO


@pytest.mark.parametrize("piece", [-1, 3, 4096, 2**40])
def test_assembler_rejects_pieces_out_of_range(piece: int) -> None:
    assembler = sized(len(INFO), v1=INFO_V1)
    with pytest.raises(ExtensionError, match="out of range"):
        assembler.receive(piece, b"x" * METADATA_PIECE)


@pytest.mark.parametrize(
    ("piece", "length"),
    [(0, METADATA_PIECE - 1), (1, METADATA_PIECE + 1), (0, 0), (2, len(INFO) % METADATA_PIECE + 1),
     (2, len(INFO) % METADATA_PIECE - 1), (2, METADATA_PIECE)],
)
def test_assembler_rejects_data_pieces_of_the_wrong_length(piece: int, length: int) -> None:
    assembler = sized(len(INFO), v1=INFO_V1)
    with pytest.raises(ExtensionError, match="bytes, expected"):
        assembler.receive(piece, b"x" * length)


def test_assembler_metadata_of_whole_pieces_and_of_one_byte() -> None:
    whole = b"w" * (2 * METADATA_PIECE)
    assembler = sized(len(whole), v1=hashlib.sha1(whole).digest())
    assert assembler.receive(0, whole[:METADATA_PIECE]) is None
    assert assembler.receive(1, whole[METADATA_PIECE:]) == whole
    tiny = sized(1, v2=hashlib.sha256(b"x").digest())
    assert tiny.num_pieces == 1
    assert tiny.receive(0, b"x") == b"x"


@pytest.mark.parametrize("size", [0, -1, MAX_METADATA_SIZE + 1, 2**62, 2**200])
def test_assembler_refuses_absurd_sizes(size: int) -> None:
    assembler = MetadataAssembler(info_hash_v1=INFO_V1, info_hash_v2=None)
    with pytest.raises(ExtensionError, match="out of range"):
        assembler.set_size(size)
    assert assembler.size is None
    assert assembler.next_request() is None


def test_assembler_allocates_nothing_for_the_size_a_peer_claims() -> None:
    tracemalloc.start()
    try:
        assembler = MetadataAssembler(info_hash_v1=INFO_V1, info_hash_v2=None)
        assembler.set_size(MAX_METADATA_SIZE)
        first = [assembler.next_request() for _ in range(4)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first == [0, 1, 2, 3]
    assert assembler.num_pieces == MAX_METADATA_SIZE // METADATA_PIECE
    assert peak < 256 * 1024


def test_assembler_size_must_agree_between_peers() -> None:
    assembler = sized(len(INFO), v1=INFO_V1)
    assembler.set_size(len(INFO))
    with pytest.raises(ExtensionError, match="differs"):
        assembler.set_size(len(INFO) + 1)
    assert assembler.size == len(INFO)


def test_assembler_ignores_data_before_the_size_is_known() -> None:
    assembler = MetadataAssembler(info_hash_v1=INFO_V1, info_hash_v2=None)
    assert assembler.next_request() is None
    assert assembler.receive(0, b"anything") is None


def test_assembler_release_makes_a_piece_requestable_again() -> None:
    assembler = sized(len(INFO), v1=INFO_V1)
    assert [assembler.next_request() for _ in range(3)] == [0, 1, 2]
    assert assembler.next_request() is None
    assembler.release(1)
    assert assembler.next_request() == 1
    assert assembler.next_request() is None


def test_assembler_needs_an_info_hash() -> None:
    with pytest.raises(ValueError):
        MetadataAssembler(info_hash_v1=None, info_hash_v2=None)


# -- BEP 11 peer exchange ----------------------------------------------------------------------------
def test_pex_round_trip_with_both_families_and_flags() -> None:
    msg = PexMessage(
        added=[V4, ("192.0.2.9", 1)], added_flags=[0x02, 0x10], dropped=[("198.51.100.1", 80), ("::1", 2)]
    )
    assert ext.parse_pex(ext.encode_pex(msg)) == msg
    msg6 = PexMessage(added=[("10.0.0.1", 5), V6], added_flags=[0x01, 0x04], dropped=[])
    assert ext.parse_pex(ext.encode_pex(msg6)) == msg6


def test_pex_empty_message() -> None:
    assert ext.parse_pex(ext.encode_pex(PexMessage())) == PexMessage()
    assert ext.parse_pex(b"de") == PexMessage()


def test_pex_flags_list_shorter_or_longer_than_the_peers() -> None:
    peers = compact4("10.0.0.1", 1) + compact4("10.0.0.2", 2) + compact4("10.0.0.3", 3)
    short = ext.parse_pex(encode({b"added": peers, b"added.f": b"\x02"}))
    assert short.added_flags == [2, 0, 0]
    long = ext.parse_pex(encode({b"added": peers, b"added.f": b"\x01\x02\x03\x04\x05"}))
    assert long.added_flags == [1, 2, 3]
    wrong_type = ext.parse_pex(encode({b"added": peers, b"added.f": 7, b"added6.f": [1]}))
    assert wrong_type.added_flags == [0, 0, 0]
    flags_only = ext.parse_pex(encode({b"added.f": b"\x01\x02"}))
    assert flags_only == PexMessage()


def test_pex_flags_stay_with_their_peer_when_a_port_zero_entry_is_skipped() -> None:
    peers = compact4("10.0.0.1", 0) + compact4("10.0.0.2", 2) + compact4("10.0.0.3", 3)
    msg = ext.parse_pex(encode({b"added": peers, b"added.f": b"\x01\x02\x04"}))
    assert msg.added == [("10.0.0.2", 2), ("10.0.0.3", 3)]
    assert msg.added_flags == [0x02, 0x04]
    v6 = bytes(15) + b"\x01" + b"\x00\x00" + bytes(15) + b"\x02" + b"\x00\x09"
    msg6 = ext.parse_pex(encode({b"added6": v6, b"added6.f": b"\x10\x20"}))
    assert msg6.added == [("::2", 9)]
    assert msg6.added_flags == [0x20]


@pytest.mark.parametrize(
    "fields",
    [
        {b"added": b"\x01\x02\x03\x04\x05"},  # truncated entry
        {b"added": compact4(*V4) + b"\x01"},
        {b"added6": bytes(17)},
        {b"added6": bytes(18 + 6)},  # an IPv4 entry in the IPv6 list
        {b"dropped": bytes(7)},
        {b"dropped6": bytes(35)},
        {b"added": 5},
        {b"added": [compact4(*V4)]},
        {b"dropped": {b"a": b"b"}},
        {b"dropped6": 0},
    ],
)
def test_pex_malformed_peer_lists(fields: dict[bytes, object]) -> None:
    with pytest.raises(ExtensionError, match="compact peer list"):
        ext.parse_pex(encode(fields))


@pytest.mark.parametrize("payload", [b"", b"le", encode(b"added"), b"d5:added6:", b"d5:addedi1e" + b"x"])
def test_pex_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(ExtensionError):
        ext.parse_pex(payload)


def test_pex_keeps_at_most_the_bound_per_list() -> None:
    many = b"".join(compact4(f"10.0.{i // 250}.{i % 250 + 1}", 1000 + i) for i in range(1000))
    msg = ext.parse_pex(encode({b"added": many, b"added.f": b"\x02" * 1000, b"dropped": many}))
    assert len(msg.added) == len(msg.added_flags) == MAX_PEX_PEERS
    assert len(msg.dropped) == MAX_PEX_PEERS
    assert msg.added[0] == ("10.0.0.1", 1000)


# -- PEX state ---------------------------------------------------------------------------------------
def peers(n: int, start: int = 0) -> set[tuple[str, int]]:
    return {(f"10.0.{i // 250}.{i % 250 + 1}", 7000 + i) for i in range(start, start + n)}


def test_pex_state_sends_only_changes() -> None:
    state = PexState()
    first = state.update(peers(3))
    assert first is not None
    assert first.added == sorted(peers(3)) and first.dropped == [] and first.added_flags == [0, 0, 0]
    assert state.update(peers(3)) is None
    changed = state.update(peers(3, start=1))  # peer 0 left, peer 3 arrived
    assert changed is not None
    assert changed.added == sorted(peers(1, start=3))
    assert changed.dropped == sorted(peers(1))
    assert state.sent == peers(3, start=1)
    gone = state.update(set())
    assert gone is not None and gone.added == [] and gone.dropped == sorted(peers(3, start=1))
    assert state.update(set()) is None


def test_pex_state_bounds_each_message_and_catches_up() -> None:
    state = PexState()
    sizes = []
    while (msg := state.update(peers(120))) is not None:
        assert len(msg.added) <= PEX_SEND_MAX and len(msg.dropped) <= PEX_SEND_MAX
        sizes.append(len(msg.added))
    assert sizes == [50, 50, 20]
    assert state.sent == peers(120)
    dropped = []
    while (msg := state.update(peers(10, start=500))) is not None:
        assert len(msg.added) <= PEX_SEND_MAX and len(msg.dropped) <= PEX_SEND_MAX
        dropped.append(len(msg.dropped))
    assert dropped == [50, 50, 20]
    assert state.sent == peers(10, start=500)


def test_pex_state_messages_encode_and_parse_back() -> None:
    state = PexState()
    connected = peers(5) | {V6, ("2001:db8::8", 1)}
    msg = state.update(connected)
    assert msg is not None
    parsed = ext.parse_pex(ext.encode_pex(msg))
    assert set(parsed.added) == connected
    assert parsed.added_flags == [0] * len(connected)


address = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(1, 65535)),
    # the swarm's addresses are canonical: an IPv4-mapped IPv6 one is held (and sent) as IPv4
    st.tuples(st.ip_addresses(v=6).filter(lambda ip: ip.ipv4_mapped is None).map(str), st.integers(1, 65535)),
)


@given(st.lists(st.sets(address, max_size=80), min_size=1, max_size=6))
def test_pex_state_messages_keep_the_peer_view_in_step(rounds: list[set[tuple[str, int]]]) -> None:
    state = PexState()
    view: set[tuple[str, int]] = set()  # what the other peer has learnt from our messages
    for connected in rounds:
        for _ in range(4):  # enough messages to catch up with any 80-peer change
            msg = state.update(connected)
            if msg is None:
                break
            assert len(msg.added) <= PEX_SEND_MAX and len(msg.dropped) <= PEX_SEND_MAX
            assert not set(msg.added) & set(msg.dropped)
            assert set(msg.added) <= connected and not set(msg.dropped) & connected
            assert not set(msg.added) & view and set(msg.dropped) <= view
            parsed = ext.parse_pex(ext.encode_pex(msg))
            view |= set(parsed.added)
            view -= set(parsed.dropped)
            assert view == state.sent
        assert view == connected


# -- hostile input: only ExtensionError --------------------------------------------------------------
VALID_PAYLOADS = [
    ext.encode_ext_handshake(
        ExtHandshake({"ut_metadata": 2, "ut_pex": 1}, "x", 6881, 250, len(INFO), bytes(4), upload_only=True)
    ),
    ext.encode_metadata(MetadataRequest(1)),
    ext.encode_metadata(MetadataReject(2)),
    ext.encode_metadata(MetadataData(1, 20_000, b"z" * (20_000 - METADATA_PIECE))),
    ext.encode_pex(PexMessage([V4, V6], [1, 2], [("192.0.2.1", 9)])),
]

PARSERS = [ext.parse_ext_handshake, ext.parse_metadata, ext.parse_pex]


def check_only_extension_error(payload: bytes) -> None:
    for parse in PARSERS:
        try:
            parse(payload)
        except ExtensionError:
            pass


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_extension_error(payload: bytes) -> None:
    check_only_extension_error(payload)


@settings(max_examples=500)
@given(mutated(st.sampled_from(VALID_PAYLOADS)))
def test_mutated_valid_messages_raise_only_extension_error(payload: bytes) -> None:
    check_only_extension_error(payload)


@settings(max_examples=300)
@given(mutated(st.sampled_from(VALID_PAYLOADS)))
def test_whatever_parses_re_encodes_to_the_same_message(payload: bytes) -> None:
    try:
        h = ext.parse_ext_handshake(payload)
    except ExtensionError:
        pass
    else:
        again = ext.parse_ext_handshake(ext.encode_ext_handshake(h))
        assert again.ids == h.ids and again.client == (h.client or None) and again.port == h.port
    try:
        m = ext.parse_metadata(payload)
    except ExtensionError:
        pass
    else:
        assert ext.parse_metadata(ext.encode_metadata(m)) == m
    try:
        p = ext.parse_pex(payload)
    except ExtensionError:
        pass
    else:
        again_pex = ext.parse_pex(ext.encode_pex(p))
        assert set(again_pex.added) == set(p.added) and set(again_pex.dropped) == set(p.dropped)
        assert len(p.added) == len(p.added_flags)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(-2, 5), st.binary(max_size=70)), max_size=12), st.integers(1, 120))
def test_assembler_fed_junk_raises_only_extension_error_and_never_completes(
    pieces: list[tuple[int, bytes]], size: int
) -> None:
    assembler = sized(size, v1=INFO_V1)
    for piece, data in pieces:
        try:
            assert assembler.receive(piece, data) is None  # nothing but INFO can complete it
        except ExtensionError:
            pass
    assert not assembler.done


def test_a_later_ext_handshake_updates_the_earlier_one() -> None:
    """BEP 10: sent again, it holds only changes; id 0 disables an extension, left-out fields keep their value."""
    first = ext.update_ext_handshake(None, ext.parse_ext_handshake(encode({
        b"m": {b"ut_metadata": 3, b"ut_pex": 1, b"lt_donthave": 0}, b"v": b"client 1", b"p": 6881,
        b"metadata_size": 500})))
    assert first == ExtHandshake(ids={"ut_metadata": 3, "ut_pex": 1}, client="client 1", port=6881, metadata_size=500)
    later = ext.update_ext_handshake(first, ext.parse_ext_handshake(encode({
        b"m": {b"ut_pex": 0, b"ut_holepunch": 4, b"ut_metadata": 5}, b"reqq": 300})))
    assert later == ExtHandshake(ids={"ut_metadata": 5, "ut_holepunch": 4}, client="client 1", port=6881, reqq=300,
                                 metadata_size=500)


def test_pex_sends_an_ipv4_mapped_peer_as_ipv4_and_reads_one_from_added6_as_ipv4() -> None:
    sent = ext.encode_pex(PexMessage(added=[("::ffff:192.0.2.7", 6881), V6], added_flags=[0, 0],
                                     dropped=[("::ffff:192.0.2.8", 1)]))
    d = decode(sent)
    assert d[b"added"] == bytes([192, 0, 2, 7]) + b"\x1a\xe1" and d[b"dropped"] == bytes([192, 0, 2, 8]) + b"\x00\x01"
    assert len(d[b"added6"]) == 18 and d[b"dropped6"] == b""
    mapped = bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 9]) + b"\x00\x07"
    assert ext.parse_pex(encode({b"added6": mapped, b"dropped6": mapped})) == PexMessage(
        added=[("192.0.2.9", 7)], added_flags=[0], dropped=[("192.0.2.9", 7)])


def test_ext_handshake_carries_our_ipv6_address() -> None:
    h = ExtHandshake(ids={"ut_pex": 1}, yourip=bytes([192, 0, 2, 7]), ipv6=bytes(15) + b"\x01")
    assert decode(ext.encode_ext_handshake(h))[b"ipv6"] == bytes(15) + b"\x01"
    assert ext.parse_ext_handshake(ext.encode_ext_handshake(h)) == h
    for wrong in (b"\x01" * 4, b"\x01" * 17, 5):  # BEP 10: 16 bytes; anything else is ignored
        assert ext.parse_ext_handshake(encode({b"m": {}, b"ipv6": wrong})).ipv6 is None
    later = ext.update_ext_handshake(h, ExtHandshake(ids={}))
    assert later.ipv6 == h.ipv6  # a later handshake that leaves it out keeps it
