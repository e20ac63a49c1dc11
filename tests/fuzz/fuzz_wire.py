"""atheris fuzz target for the peer wire protocol: the handshake, `WireParser` fed in pieces, and the BEP 52
hash exchange (answering hash requests, assembling a piece layer from `hashes` replies).

Run: `python tests/fuzz/fuzz_wire.py [corpus dir] [-max_total_time=N]`. The first input byte picks the
target, the rest is its input. Only WireError may escape (LayerFetch's documented ValueError is expected
inside its target); whatever the parsers accept is checked against invariants, so a wrong answer fails
like a crash does.
"""

from __future__ import annotations

from hashlib import sha256

import harness

from peerloom.torrent import wire
from peerloom.torrent.hashes import LayerFetch, answer_hash_request, piece_layer_height
from peerloom.torrent.merkle import HASH_SIZE, root_from_piece_layer
from peerloom.torrent.wire import WireError

_PIECE_LENGTH = 32768
_BASE = piece_layer_height(_PIECE_LENGTH)
_LAYER = b"".join(sha256(i.to_bytes(2, "big")).digest() for i in range(520))  # two chunks: 512 and 8 hashes
_ROOT = root_from_piece_layer(_LAYER, _PIECE_LENGTH)
_SMALL = _LAYER[: 37 * HASH_SIZE]
_SMALL_ROOT = root_from_piece_layer(_SMALL, _PIECE_LENGTH)


def _handshake(data: bytes) -> None:
    h = wire.parse_handshake(data)
    assert wire.encode_handshake(h) == data


def _feed_in_pieces(parser: wire.WireParser, stream: bytes, sizes: bytes) -> list[wire.Message]:
    got: list[wire.Message] = []
    pos = 0
    turn = 0
    while pos < len(stream):
        step = 1 + (sizes[turn % len(sizes)] if sizes else 0)
        got += parser.feed(stream[pos : pos + step])
        pos += step
        turn += 1
    return got


def _stream(data: bytes, small: bool) -> None:
    """The stream parsed in one call and in pieces must agree, and what parses must re-encode to itself."""
    if not data:
        return
    sizes, stream = data[1 : 1 + data[0] % 8], data[1 + data[0] % 8 :]
    limits = {"max_bitfield": 64, "max_extended": 300} if small else {}
    whole = wire.WireParser(**limits)
    try:
        expected = whole.feed(stream)
    except WireError:
        expected = None
    pieces = wire.WireParser(**limits)
    try:
        got = _feed_in_pieces(pieces, stream, sizes)
    except WireError:
        if expected is not None:
            raise AssertionError("fed in pieces, the stream is refused; fed whole, it is not") from None
        raise
    if expected is None:
        raise AssertionError("fed whole, the stream is refused; fed in pieces, it is not")
    assert got == expected
    assert pieces.buffered == whole.buffered
    consumed = len(stream) - whole.buffered
    assert b"".join(wire.encode(m) for m in expected) == stream[:consumed]


def _hash_request(data: bytes) -> None:
    """A hash request frame from the input; our answer must be whole, verifiable and acceptable to us."""
    frame = b"\x00\x00\x00\x31\x15" + (_SMALL_ROOT + data)[:48].ljust(48, b"\x00")
    (req,) = wire.WireParser().feed(frame)
    assert isinstance(req, wire.HashRequest)
    reply = answer_hash_request(req, _SMALL, _PIECE_LENGTH)
    if reply is None:
        return
    hashes = [reply.hashes[i : i + HASH_SIZE] for i in range(0, len(reply.hashes), HASH_SIZE)]
    layer = [_SMALL[i : i + HASH_SIZE] for i in range(0, len(_SMALL), HASH_SIZE)]
    assert reply.length == req.length and len(hashes) >= req.length
    real = hashes[: max(0, min(req.length, len(layer) - req.index))]
    assert real == layer[req.index : req.index + len(real)]
    assert wire.WireParser().feed(wire.encode(reply)) == [reply]


def _layer_fetch(data: bytes) -> None:
    """Replies built from the input, some true, some damaged; the fetch must never accept a wrong layer."""
    fetch = LayerFetch(_ROOT, len(_LAYER) // HASH_SIZE, _PIECE_LENGTH)
    peers = ("a", "b")
    for i in range(0, len(data) - 2, 3):
        op, arg, arg2 = data[i], data[i + 1], data[i + 2]
        peer = peers[op & 1]
        action = (op >> 1) % 5
        if action == 0:
            fetch.request_for(peer)
            continue
        if action == 1:
            fetch.release(peer, None if arg & 1 else (arg >> 1) % 2 * 512)
            continue
        start = (arg % 2) * 512
        count = min(512, len(_LAYER) // HASH_SIZE - start)
        hashes = bytearray(_LAYER[start * HASH_SIZE : (start + count) * HASH_SIZE])
        if action == 3:
            hashes[arg2 * 7 % len(hashes)] ^= 1 + (op >> 4)
        elif action == 4:
            del hashes[(arg2 % count) * HASH_SIZE :]
        msg = wire.Hashes(_ROOT, _BASE, start, 512, 0, bytes(hashes))
        try:
            layer = fetch.receive(peer, msg)
        except ValueError:
            continue
        assert layer is None or layer == _LAYER


TestOneInput = harness.Pick(
    _handshake,
    lambda data: _stream(data, small=False),
    lambda data: _stream(data, small=True),
    _hash_request,
    _layer_fetch,
    allowed=(WireError,),
)


def seeds() -> list[bytes]:
    """Valid inputs for every target, to start a corpus from."""
    handshake = wire.encode_handshake(wire.Handshake(b"i" * 20, b"-PL0001-" + b"p" * 12, wire.make_reserved(v2=True)))
    messages = [
        wire.KeepAlive(), wire.Choke(), wire.Unchoke(), wire.Interested(), wire.NotInterested(), wire.Have(7),
        wire.Bitfield(b"\xff\x80"), wire.Request(1, 16384, 16384), wire.Piece(2, 0, b"x" * 100),
        wire.Cancel(1, 0, 100), wire.Port(6881), wire.SuggestPiece(3), wire.HaveAll(), wire.HaveNone(),
        wire.RejectRequest(4, 0, 16384), wire.AllowedFast(5), wire.Extended(0, b"d1:md6:ut_pexi1eee"),
        wire.HashRequest(_ROOT, 1, 0, 4, 3), wire.Hashes(_ROOT, 1, 0, 2, 1, b"h" * 96),
        wire.HashReject(_ROOT, 1, 0, 4, 3),
    ]
    stream = b"".join(wire.encode(m) for m in messages)
    request = _BASE.to_bytes(4, "big") + (32).to_bytes(4, "big") + (16).to_bytes(4, "big") + (3).to_bytes(4, "big")
    ask_all = bytes([0, 0, 0] * 2)  # peer "a" is asked for both chunks
    true_replies = bytes([4, 0, 0, 4, 1, 0])
    one_damaged = bytes([6, 0, 9, 4, 1, 0])
    return [
        b"\x00" + handshake,
        b"\x01\x03\x05\x40\x07" + stream,
        b"\x02\x00" + stream,
        b"\x03" + request,
        b"\x04" + ask_all + true_replies,
        b"\x04" + ask_all + one_damaged + ask_all + true_replies,
    ]


if __name__ == "__main__":
    harness.main(TestOneInput)
