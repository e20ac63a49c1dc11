"""UDP tracker protocol (BEP 15): packet layouts, hostile responses, connection-id expiry, retransmits."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerloom.torrent.tracker import AnnounceRequest, ScrapeStats, TrackerError, TrackerProtocolError
from peerloom.torrent.udp_tracker import (
    CONNECTION_ID_LIFETIME,
    MAX_SCRAPE_HASHES,
    PROTOCOL_ID,
    AnnounceQuery,
    ConnectionId,
    ConnectionIds,
    Phase,
    ScrapeQuery,
    UdpTrackerExchange,
    encode_announce,
    encode_connect,
    encode_scrape,
    parse_announce,
    parse_connect,
    parse_scrape,
    parse_udp_url,
    retransmit_timeout,
    transaction_id,
)

REQ = AnnounceRequest(b"i" * 20, b"-PL0100-" + b"p" * 12, 6881, uploaded=3, downloaded=2, left=1, event="started",
                      numwant=50, key=0xDEADBEEF)
TXID = 0x01020304


def header(action: int, txid: int = TXID) -> bytes:
    return struct.pack(">II", action, txid)


def counter(start: int = 100) -> itertools.count[int]:
    return itertools.count(start)


# -- URLs -------------------------------------------------------------------------------------------
def test_udp_url_gives_host_port_and_bep41_url_data() -> None:
    url = parse_udp_url("udp://Tracker.Example:1337/announce?passkey=abc")
    assert (url.host, url.port, url.url_data) == ("tracker.example", 1337, b"/announce?passkey=abc")
    assert parse_udp_url("udp://[::1]:80").host == "::1"
    assert parse_udp_url("udp://127.0.0.1:80").url_data == b""


@pytest.mark.parametrize("url", ["udp://host/announce", "udp://:80/announce", "http://host:80/announce",
                                 "udp://host:99999/announce", "udp://[::1:80/", "udp://h:1/" + "x" * 2000])
def test_bad_udp_urls_are_tracker_errors(url: str) -> None:
    with pytest.raises(TrackerError):
        parse_udp_url(url)


# -- requests ---------------------------------------------------------------------------------------
def test_connect_request_is_magic_action_txid() -> None:
    assert encode_connect(TXID) == struct.pack(">QII", 0x41727101980, 0, TXID)
    assert PROTOCOL_ID == 0x41727101980 and len(encode_connect(0)) == 16


def test_announce_request_layout() -> None:
    packet = encode_announce(0x1122334455667788, TXID, REQ)
    assert len(packet) == 98
    fields = struct.unpack(">QII20s20sqqqiIIiH", packet)
    assert fields == (0x1122334455667788, 1, TXID, REQ.info_hash, REQ.peer_id, 2, 1, 3, 2, 0, 0xDEADBEEF, 50, 6881)


@pytest.mark.parametrize(("event", "code"), [("", 0), ("completed", 1), ("started", 2), ("stopped", 3)])
def test_announce_events_are_numbered_per_bep15(event: str, code: int) -> None:
    packet = encode_announce(1, 2, AnnounceRequest(b"i" * 20, b"p" * 20, 1, 0, 0, 0, event=event))
    assert struct.unpack_from(">i", packet, 80)[0] == code


def test_announce_clamps_numbers_and_rejects_bad_fields() -> None:
    wild = AnnounceRequest(b"i" * 20, b"p" * 20, 1, uploaded=2**70, downloaded=-5, left=0, numwant=-7, key=2**40 + 9)
    fields = struct.unpack(">QII20s20sqqqiIIiH", encode_announce(1, 2, wild))
    assert fields[5:8] == (0, 0, 2**63 - 1) and fields[10] == 9 and fields[11] == -1
    with pytest.raises(ValueError):
        encode_announce(1, 2, AnnounceRequest(b"short", b"p" * 20, 1, 0, 0, 0))
    with pytest.raises(ValueError):
        encode_announce(1, 2, AnnounceRequest(b"i" * 20, b"p" * 20, 1, 0, 0, 0, event="paused"))


def test_announce_carries_url_data_as_bep41_options() -> None:
    path = b"/announce?" + b"k" * 300
    options = encode_announce(1, 2, REQ, path)[98:]
    assert options[:2] == bytes((2, 255)) and options[2:257] == path[:255]
    assert options[257:259] == bytes((2, len(path) - 255)) and options[259:] == path[255:]


def test_scrape_request_layout_and_limits() -> None:
    hashes = [bytes([i]) * 20 for i in range(MAX_SCRAPE_HASHES)]
    packet = encode_scrape(7, TXID, hashes)
    assert packet[:16] == struct.pack(">QII", 7, 2, TXID) and packet[16:] == b"".join(hashes)
    assert MAX_SCRAPE_HASHES == 74
    for bad in ([], [*hashes, b"x" * 20], [b"short"]):
        with pytest.raises(ValueError):
            encode_scrape(7, TXID, bad)


# -- responses --------------------------------------------------------------------------------------
def test_connect_response() -> None:
    assert parse_connect(header(0) + struct.pack(">Q", 0xABCDEF), TXID) == 0xABCDEF


def test_announce_response_ipv4_peers() -> None:
    body = struct.pack(">iii", 1800, 4, 7) + bytes([127, 0, 0, 1, 0x1A, 0xE1, 10, 0, 0, 2, 0, 0])
    resp = parse_announce(header(1) + body, TXID, v6=False)
    assert resp.interval == 1800 and resp.incomplete == 4 and resp.complete == 7 and resp.min_interval is None
    assert resp.peers == [("127.0.0.1", 6881)]  # port 0 is not a peer


def test_announce_response_over_ipv6_has_18_byte_peers() -> None:
    peer = b"\x00" * 15 + b"\x01" + struct.pack(">H", 51413)
    resp = parse_announce(header(1) + struct.pack(">iii", 60, 0, 1) + peer, TXID, v6=True)
    assert resp.peers == [("::1", 51413)]
    with pytest.raises(TrackerProtocolError):  # 12 bytes are two IPv4 entries, but no whole IPv6 one
        parse_announce(header(1) + struct.pack(">iii", 60, 0, 1) + peer[:12], TXID, v6=True)
    # over IPv4 the same 18 bytes are three 6-byte entries (two with port 0, so dropped)
    assert parse_announce(header(1) + struct.pack(">iii", 60, 0, 1) + peer, TXID, v6=False).peers == [
        ("0.0.0.1", 51413)]


def test_announce_peer_list_is_bounded() -> None:
    peers = bytes([10, 0, 0, 1, 0, 1]) * 6000
    assert len(parse_announce(header(1) + struct.pack(">iii", 60, 0, 0) + peers, TXID, v6=False).peers) == 5000


def test_scrape_response_in_request_order() -> None:
    hashes = [b"a" * 20, b"b" * 20]
    data = header(2) + struct.pack(">iiiiii", 5, 9, 2, 0, 0, 0)
    assert parse_scrape(data, TXID, hashes) == {
        b"a" * 20: ScrapeStats(complete=5, downloaded=9, incomplete=2),
        b"b" * 20: ScrapeStats(0, 0, 0),
    }


def test_error_response_is_a_refusal_with_the_message() -> None:
    error = header(3) + b"torrent not registered\x00"
    for parse in (lambda d: parse_connect(d, TXID), lambda d: parse_announce(d, TXID, v6=False),
                  lambda d: parse_scrape(d, TXID, [b"a" * 20])):
        with pytest.raises(TrackerError, match=r"torrent not registered$") as info:
            parse(error)
        assert not isinstance(info.value, TrackerProtocolError)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty", b""),
        ("shorter than the common header", b"\x00\x00\x00\x00\x01\x02\x03"),
        ("connect without its id", header(0) + b"\x00" * 7),
        ("announce without its counts", header(1) + b"\x00" * 11),
        ("wrong action", header(2) + b"\x00" * 12),
        ("unknown action", header(9) + b"\x00" * 12),
        ("wrong transaction id", header(0, TXID + 1) + b"\x00" * 12),
        ("error for another transaction", header(3, 5) + b"go away"),
        ("larger than a datagram", header(0) + b"\x00" * 70_000),
    ],
)
def test_connect_rejects_malformed_responses(name: str, data: bytes) -> None:
    with pytest.raises(TrackerProtocolError):
        parse_connect(data, TXID)


@pytest.mark.parametrize(
    "data",
    [
        header(1) + struct.pack(">iii", 60, 0, 0) + b"\x01\x02\x03",  # a peer list of the wrong length
        header(1) + struct.pack(">iii", 0, 0, 0),  # no interval
        header(1) + struct.pack(">iii", -60, 0, 0),
        header(0) + struct.pack(">iii", 60, 0, 0),  # connect answer to an announce
        header(1, 0) + struct.pack(">iii", 60, 0, 0),
    ],
)
def test_announce_rejects_malformed_responses(data: bytes) -> None:
    with pytest.raises(TrackerProtocolError):
        parse_announce(data, TXID, v6=False)


@pytest.mark.parametrize(
    "data",
    [header(2) + struct.pack(">iii", 1, 1, 1), header(2), header(1) + b"\x00" * 24, header(2, 0) + b"\x00" * 24],
)
def test_scrape_rejects_malformed_responses(data: bytes) -> None:
    with pytest.raises(TrackerProtocolError):
        parse_scrape(data, TXID, [b"a" * 20, b"b" * 20])


def test_transaction_id_peek() -> None:
    assert transaction_id(header(1, 77) + b"rest") == 77
    assert transaction_id(b"\x00" * 7) is None


def _well_formed_error(data: bytes, txid: int) -> bool:
    return len(data) >= 8 and struct.unpack_from(">II", data) == (3, txid)


@given(st.binary(max_size=200), st.integers(0, 2**32 - 1), st.sampled_from([b"", b"\x00\x00\x00\x00",
       b"\x00\x00\x00\x01", b"\x00\x00\x00\x02", b"\x00\x00\x00\x03"]), st.booleans())
def test_random_bytes_raise_only_protocol_errors(tail: bytes, txid: int, action: bytes, use_txid: bool) -> None:
    # With use_txid the bytes start with a valid header, so the body parsers are reached too.
    data = action + struct.pack(">I", txid) + tail if action and use_txid else action + tail
    parsers = [lambda: parse_connect(data, txid), lambda: parse_announce(data, txid, v6=False),
               lambda: parse_announce(data, txid, v6=True), lambda: parse_scrape(data, txid, [b"h" * 20] * 3)]
    for parse in parsers:
        try:
            parse()
        except TrackerProtocolError:
            pass
        except TrackerError:
            assert _well_formed_error(data, txid)  # only a real error packet is a refusal


# -- timing and connection ids ----------------------------------------------------------------------
def test_retransmit_schedule_is_15_times_2_to_the_n_up_to_n_8() -> None:
    assert [retransmit_timeout(n) for n in range(10)] == [15 * 2**n for n in range(9)] + [3840]
    assert [retransmit_timeout(n, base=0.1) for n in range(3)] == [0.1, 0.2, 0.4]


def test_connection_id_is_valid_for_60_seconds_from_receipt() -> None:
    assert CONNECTION_ID_LIFETIME == 60.0
    cid = ConnectionId.received(5, now=1000.0)
    assert cid.valid_at(1059.9) and not cid.valid_at(1060.0)
    cache = ConnectionIds()
    cache.put(("t", 1), cid, 1000.0)
    assert cache.get(("t", 1), 1030.0) == cid
    assert cache.get(("t", 1), 1060.0) is None and len(cache) == 0  # expired ids are dropped
    cache.put(("t", 1), cid, 1000.0)
    cache.forget(("t", 1))
    assert cache.get(("t", 1), 1000.0) is None


def test_connection_cache_is_bounded() -> None:
    cache = ConnectionIds(limit=3)
    for i in range(3):
        cache.put(i, ConnectionId(i, 1000.0 + i), now=0.0)
    cache.put(9, ConnectionId(9, 2000.0), now=1000.5)  # id 0 has expired: it goes, the others stay
    assert len(cache) == 3 and cache.get(0, 0.0) is None and cache.get(1, 0.0) is not None
    cache.put(10, ConnectionId(10, 2000.0), now=0.0)  # none expired: the oldest goes
    assert len(cache) == 3 and cache.get(1, 0.0) is None


# -- the exchange state machine ---------------------------------------------------------------------
def announce_reply(txid: int, peers: bytes = b"") -> bytes:
    return header(1, txid) + struct.pack(">iii", 30, 1, 2) + peers


def connect_reply(txid: int, cid: int = 0xC1D) -> bytes:
    return header(0, txid) + struct.pack(">Q", cid)


def test_exchange_connects_then_announces() -> None:
    ex = UdpTrackerExchange(AnnounceQuery(REQ), new_txid=counter().__next__)
    first = ex.start(now=10.0)
    assert first == encode_connect(100) and ex.phase is Phase.CONNECTING and ex.deadline == 25.0
    second = ex.receive(connect_reply(100), now=11.0)
    assert second == encode_announce(0xC1D, 101, REQ) and ex.phase is Phase.REQUESTING
    assert ex.connection == ConnectionId(0xC1D, 71.0) and ex.deadline == 26.0
    assert ex.receive(announce_reply(101, bytes([1, 2, 3, 4, 0, 80])), now=12.0) is None
    assert ex.phase is Phase.DONE and ex.result is not None and ex.result.peers == [("1.2.3.4", 80)]


def test_exchange_reuses_a_valid_connection_id_and_renews_an_expired_one() -> None:
    cid = ConnectionId.received(0xAB, now=0.0)
    fresh = UdpTrackerExchange(AnnounceQuery(REQ), connection=cid, new_txid=counter().__next__)
    assert fresh.start(now=59.0) == encode_announce(0xAB, 100, REQ)
    stale = UdpTrackerExchange(AnnounceQuery(REQ), connection=cid, new_txid=counter().__next__)
    assert stale.start(now=60.0) == encode_connect(100) and stale.phase is Phase.CONNECTING


def test_exchange_retransmits_on_the_doubling_schedule_then_gives_up() -> None:
    ex = UdpTrackerExchange(ScrapeQuery((b"h" * 20,)), retransmit_base=1.0, new_txid=counter().__next__)
    now = 0.0
    sent = [ex.start(now)]
    waits = []
    for _ in range(8):
        waits.append(ex.deadline - now)
        now = ex.deadline
        sent.append(ex.timed_out(now))
    waits.append(ex.deadline - now)
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert set(sent) == {encode_connect(100)}  # the same datagram, the same transaction id
    with pytest.raises(TrackerError, match="did not answer 9 sends"):
        ex.timed_out(ex.deadline)
    assert ex.phase is Phase.FAILED


def test_exchange_reconnects_when_the_id_expires_during_retransmits() -> None:
    ex = UdpTrackerExchange(AnnounceQuery(REQ), new_txid=counter().__next__)
    ex.start(0.0)
    ex.receive(connect_reply(100), now=1.0)  # id valid until 61
    assert ex.timed_out(16.0) == encode_announce(0xC1D, 101, REQ)  # still valid: a plain retransmit
    assert ex.timed_out(46.0) == encode_announce(0xC1D, 101, REQ)
    assert ex.timed_out(106.0) == encode_connect(102) and ex.phase is Phase.CONNECTING
    assert ex.deadline == 106.0 + 15 * 2**3  # the retransmit count runs on across the reconnect
    assert ex.receive(connect_reply(102, cid=0xD2), now=107.0) == encode_announce(0xD2, 103, REQ)


def test_exchange_fails_on_a_refusal_or_a_bad_answer() -> None:
    ex = UdpTrackerExchange(AnnounceQuery(REQ), new_txid=counter().__next__)
    ex.start(0.0)
    with pytest.raises(TrackerError, match="banned"):
        ex.receive(header(3, 100) + b"banned", 1.0)
    assert ex.phase is Phase.FAILED
    ex = UdpTrackerExchange(AnnounceQuery(REQ), new_txid=counter().__next__)
    ex.start(0.0)
    ex.receive(connect_reply(100), 1.0)
    with pytest.raises(TrackerProtocolError):
        ex.receive(announce_reply(101)[:15], 2.0)
    assert ex.phase is Phase.FAILED
    with pytest.raises(RuntimeError):
        ex.timed_out(3.0)


def test_scrape_query_holds_at_most_74_hashes() -> None:
    with pytest.raises(ValueError):
        ScrapeQuery(tuple(bytes([i]) * 20 for i in range(75)))
    with pytest.raises(ValueError):
        ScrapeQuery(())


def test_scrape_exchange_result() -> None:
    cid = ConnectionId.received(1, 0.0)
    ex = UdpTrackerExchange(ScrapeQuery((b"a" * 20,)), connection=cid, new_txid=counter().__next__)
    assert ex.start(1.0) == encode_scrape(1, 100, [b"a" * 20])
    ex.receive(header(2, 100) + struct.pack(">iii", 3, 4, 5), 2.0)
    assert ex.result == {b"a" * 20: ScrapeStats(3, 4, 5)}
