"""multistream-select 1.0: spec bytes, dialer/listener negotiation back to back, bounds, splits and fuzzing."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerloom.codec.varint import encode_frame
from peerloom.errors import ProtocolError
from peerloom.net.multistream import (
    LS,
    MAX_ATTEMPTS,
    MAX_MESSAGE,
    NA,
    PROTOCOL_ID,
    Dialer,
    DialerState,
    Listener,
    ListenerState,
    MultistreamError,
    NegotiationFailed,
    encode_list,
    encode_message,
)

HEADER = b"\x13/multistream/1.0.0\n"
NOISE = "/noise"
YAMUX = "/yamux/1.0.0"


def _finished(side) -> bool:
    return side.state in (DialerState.DONE, DialerState.LISTED, ListenerState.DONE)


def _feed(side, data: bytes, split) -> tuple[bytes, bytes]:
    """(answer, bytes that came after the negotiation ended) for data fed in pieces."""
    answer, rest = b"", b""
    for chunk in split(data) if split else [data]:
        if _finished(side):
            rest += chunk
        else:
            answer += side.receive(chunk)
    return answer, rest


def negotiate(dialer: Dialer, listener: Listener, *, dialer_data=b"", listener_data=b"", split=None):
    """Run both sides back to back; each side's data follows its last negotiation message.

    Returns the bytes each side holds for the next layer: (dialer's leftover, listener's leftover).
    """
    to_listener, to_dialer = dialer.initiate(), b""
    left = {id(dialer): b"", id(listener): b""}
    for _ in range(2 * MAX_ATTEMPTS + 4):
        for side, data in ((listener, to_listener), (dialer, to_dialer)):
            if not data:
                continue
            was_finished = _finished(side)
            answer, rest = _feed(side, data, split)
            if _finished(side) and not was_finished:
                rest = side.leftover() + rest
                answer += listener_data if side is listener else dialer_data
            left[id(side)] += rest
            if side is listener:
                to_listener, to_dialer = b"", to_dialer + answer
            else:
                to_dialer, to_listener = b"", to_listener + answer
        if _finished(dialer) and not to_listener and not to_dialer:
            return left[id(dialer)], left[id(listener)]
    raise AssertionError("negotiation did not finish")


def one_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# --- spec bytes -----------------------------------------------------------------------------------------------------


def test_messages_match_the_spec_bytes():
    assert encode_message(PROTOCOL_ID) == HEADER
    assert encode_message(NA) == bytes.fromhex("036e610a")  # connections spec: "na" is 0x036e610a
    assert encode_message(LS) == bytes.fromhex("036c730a")  # multistream-select README, "Listing"
    assert encode_message("/echo/1.0") == bytes.fromhex("0a2f6563686f2f312e300a")  # README "The header" hexdump


def test_ls_response_is_one_message_of_length_prefixed_lines():
    # go-multistream Ls / rust-libp2p Message::Protocols: outer length, then each protocol as its own line, then "\n"
    assert encode_list(["/a", "/b/1"]) == b"\x0b" + b"\x03/a\n" + b"\x05/b/1\n" + b"\n"
    assert encode_list([]) == b"\x01\n"


def test_dialer_pipelines_header_and_first_proposal():
    assert Dialer([YAMUX]).initiate() == HEADER + b"\x0d/yamux/1.0.0\n"
    assert Dialer([YAMUX], pipeline=False).initiate() == HEADER
    assert Dialer([], list_first=True).initiate() == HEADER + encode_message(LS)


def test_listener_answers_header_then_echo_exactly():
    listener = Listener({YAMUX})
    assert listener.receive(HEADER) == HEADER
    assert listener.receive(b"\x07/mplex\n") == b"\x03na\n"
    assert listener.receive(b"\x0d/yamux/1.0.0\n") == b"\x0d/yamux/1.0.0\n"
    assert listener.protocol == YAMUX


def test_listener_may_send_its_header_first_and_only_once():
    listener = Listener({YAMUX})
    assert listener.initiate() == HEADER
    assert listener.receive(HEADER + encode_message(YAMUX)) == encode_message(YAMUX)


# --- negotiation ----------------------------------------------------------------------------------------------------


def test_first_supported_protocol_is_agreed_and_both_sides_keep_the_leftover():
    dialer, listener = Dialer(["/tls/1.0.0", NOISE]), Listener({NOISE, YAMUX})
    leftovers = negotiate(dialer, listener, dialer_data=b"noise msg 1", listener_data=b"noise msg 2")
    assert dialer.state is DialerState.DONE and listener.state is ListenerState.DONE
    assert dialer.protocol == listener.protocol == NOISE
    assert leftovers == (b"noise msg 2", b"noise msg 1")
    assert dialer.leftover() == b""  # handed over once


def test_data_pipelined_right_behind_the_proposal_stays_for_the_next_layer():
    dialer, listener = Dialer([YAMUX]), Listener({YAMUX})
    answer = listener.receive(dialer.initiate() + b"\x00\x01\x00\x01yamux bytes")
    assert listener.leftover() == b"\x00\x01\x00\x01yamux bytes"
    assert dialer.receive(answer + b"more") == b""
    assert dialer.leftover() == b"more"


def test_na_for_every_protocol_fails_the_dialer():
    dialer, listener = Dialer(["/a", "/b", "/c"]), Listener({NOISE})
    with pytest.raises(NegotiationFailed):
        negotiate(dialer, listener)
    assert dialer.state is DialerState.FAILED
    assert isinstance(NegotiationFailed("x"), ProtocolError)
    with pytest.raises(MultistreamError):
        dialer.receive(b"")


def test_without_pipelining_the_proposal_waits_for_the_header():
    dialer, listener = Dialer([NOISE], pipeline=False), Listener({NOISE})
    assert dialer.initiate() == HEADER
    assert dialer.state is DialerState.AWAIT_HEADER
    assert dialer.receive(listener.receive(HEADER)) == encode_message(NOISE)
    negotiate_rest = listener.receive(encode_message(NOISE))
    dialer.receive(negotiate_rest)
    assert dialer.protocol == NOISE


def test_ls_lists_the_listener_protocols():
    dialer, listener = Dialer([], list_first=True), Listener([NOISE, YAMUX])
    negotiate(dialer, listener)
    assert dialer.state is DialerState.LISTED
    assert dialer.remote_protocols == [NOISE, YAMUX]
    assert listener.state is ListenerState.AWAIT_REQUEST


def test_list_first_skips_protocols_the_listener_did_not_list():
    dialer, listener = Dialer(["/a", YAMUX, NOISE], list_first=True), Listener([NOISE, YAMUX])
    negotiate(dialer, listener)
    assert dialer.protocol == listener.protocol == YAMUX
    dialer = Dialer(["/a"], list_first=True)
    with pytest.raises(NegotiationFailed):
        negotiate(dialer, Listener([NOISE]))


def test_listener_with_a_predicate_and_an_empty_list():
    listener = Listener(lambda protocol: protocol.startswith("/ipfs/"))
    dialer = Dialer(["/x", "/ipfs/kad/1.0.0"])
    negotiate(dialer, listener)
    assert dialer.protocol == "/ipfs/kad/1.0.0"
    assert Listener(lambda p: True).receive(HEADER + encode_message(LS)) == HEADER + encode_list([])


def test_lazy_dialer_may_send_data_at_once_and_fails_on_na():
    dialer = Dialer([YAMUX], lazy=True)
    assert not dialer.ready_to_send
    first = dialer.initiate() + b"app data"
    assert dialer.ready_to_send
    listener = Listener({YAMUX})
    answer = listener.receive(first)
    assert listener.leftover() == b"app data"
    dialer.receive(answer)
    assert dialer.state is DialerState.DONE
    refused = Dialer([YAMUX], lazy=True)
    refused.initiate()
    with pytest.raises(NegotiationFailed):
        refused.receive(HEADER + encode_message(NA))
    with pytest.raises(ValueError):
        Dialer([YAMUX, NOISE], lazy=True)


def test_one_byte_at_a_time_gives_the_same_outcome():
    dialer, listener = Dialer(["/a", "/b", NOISE]), Listener({NOISE})
    leftovers = negotiate(dialer, listener, dialer_data=b"D1", listener_data=b"L1", split=one_at_a_time)
    assert dialer.protocol == listener.protocol == NOISE
    assert leftovers == (b"L1", b"D1")


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), offered=st.lists(st.sampled_from(["/a", "/b/1", NOISE, YAMUX]), min_size=1))
def test_random_splits_give_the_same_outcome(seed, offered):
    rng = random.Random(seed)

    def split(data: bytes) -> list[bytes]:
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 6))))
        bounds = [0, *cuts, len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds)]

    outcomes = []
    for splitter in (None, split):
        dialer, listener = Dialer(offered), Listener({NOISE, YAMUX})
        try:
            leftovers = negotiate(dialer, listener, dialer_data=b"after", listener_data=b"reply", split=splitter)
            outcomes.append((dialer.protocol, listener.protocol, leftovers))
        except NegotiationFailed:
            outcomes.append("failed")
    assert outcomes[0] == outcomes[1]


# --- malformed input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        encode_message("/multistream/2.0.0"),  # wrong header
        b"\x12/multistream/1.0.0",  # no trailing newline (length counts one byte less)
        b"\x00",  # empty message: no newline
        b"\x80\x00",  # varint not minimally encoded
        b"\x81\x08",  # 1025 > MAX_MESSAGE
        b"\xff\xff\xff",  # huge length, refused from the prefix alone
        b"\x03\xff\xfe\n",  # not UTF-8
    ],
)
def test_listener_rejects_bad_messages(data):
    listener = Listener({NOISE})
    with pytest.raises(MultistreamError):
        listener.receive(data)
    assert listener.state is ListenerState.FAILED


def test_message_bound_is_1024_bytes():
    listener = Listener({NOISE})
    listener.receive(HEADER)
    longest = "/" + "x" * (MAX_MESSAGE - 2)
    assert listener.receive(encode_message(longest)) == encode_message(NA)
    with pytest.raises(MultistreamError):
        listener.receive(encode_message(longest + "x"))


def test_listener_requires_slash_ids_and_bounds_attempts():
    listener = Listener({NOISE})
    listener.receive(HEADER)
    with pytest.raises(MultistreamError):
        listener.receive(encode_message("noise"))
    listener = Listener({NOISE}, max_attempts=3)
    listener.receive(HEADER + encode_message(LS) + encode_message("/a") + encode_message("/b"))
    with pytest.raises(MultistreamError):
        listener.receive(encode_message("/c"))


def test_dialer_rejects_unexpected_answers():
    for answer in (encode_message("/other"), encode_message("ls"), encode_message("/multistream/1.0.0")):
        dialer = Dialer([NOISE])
        dialer.initiate()
        with pytest.raises(MultistreamError):
            dialer.receive(HEADER + answer)
    dialer = Dialer([NOISE])
    dialer.initiate()
    with pytest.raises(MultistreamError):
        dialer.receive(encode_message(NA))  # the header must come first


def test_dialer_rejects_bad_ls_responses():
    # truncated line, line without its newline, line not UTF-8, outer message without its newline
    for response in (b"\x05/a\n", b"\x04/ab", b"\x03\xff\xfe\n"):
        dialer = Dialer([], list_first=True)
        dialer.initiate()
        with pytest.raises(MultistreamError):
            dialer.receive(HEADER + encode_frame(response + b"\n"))
    dialer = Dialer([], list_first=True)
    dialer.initiate()
    with pytest.raises(MultistreamError):
        dialer.receive(HEADER + encode_frame(b"\x03/a\n"))


def test_own_protocol_ids_are_validated():
    for bad in ("noise", "/a\nb", "/" + "x" * MAX_MESSAGE):
        with pytest.raises(ValueError):
            Dialer([bad])
        with pytest.raises(ValueError):
            Listener([bad])
    with pytest.raises(ValueError):
        Dialer([])


def test_misuse_raises_runtime_errors():
    dialer = Dialer([NOISE])
    with pytest.raises(RuntimeError):
        dialer.receive(b"")
    with pytest.raises(RuntimeError):
        dialer.leftover()
    dialer.initiate()
    with pytest.raises(RuntimeError):
        dialer.initiate()
    listener = Listener({NOISE})
    listener.receive(HEADER + encode_message(NOISE))
    with pytest.raises(RuntimeError):
        listener.receive(b"x")


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300), role=st.integers(0, 3))
def test_random_bytes_raise_only_multistream_errors(data, role):
    side = [Listener({NOISE}), Dialer([NOISE, YAMUX]), Dialer([], list_first=True), Dialer([NOISE], lazy=True)][role]
    if isinstance(side, Dialer):
        side.initiate()
    for prefix in (b"", HEADER):
        try:
            side.receive(prefix + data)
        except MultistreamError:
            return
        except RuntimeError:  # finished negotiating on a valid prefix: nothing more to feed
            return
