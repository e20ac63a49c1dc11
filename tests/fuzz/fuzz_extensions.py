"""atheris fuzz target for the extension protocol: the BEP 10 handshake, BEP 9 metadata messages and the
metadata assembler, BEP 11 peer exchange messages and PEX diffing.

Run: `python tests/fuzz/fuzz_extensions.py [corpus dir] [-max_total_time=N]`. The first input byte picks
the target, the rest is its input. Only ExtensionError may escape; whatever the parsers accept must
re-encode to the same message, and the assembler must return exactly the metadata the info-hash names.
"""

from __future__ import annotations

import hashlib
import ipaddress

import harness

from peerloom.codec.bencode import encode
from peerloom.torrent import extensions as ext
from peerloom.torrent.extensions import METADATA_PIECE, PEX_SEND_MAX, ExtensionError

_INFO = encode({b"name": b"fuzz", b"piece length": 16384, b"length": 3, b"pieces": bytes(20), b"x": b"y" * 33_000})
_INFO_V1 = hashlib.sha1(_INFO).digest()
_INFO_V2 = hashlib.sha256(_INFO).digest()
_UNIVERSE = [(f"10.0.0.{i + 1}", 1000 + i) for i in range(40)]  # the peers PexState cases draw from
_UNIVERSE += [(str(ipaddress.IPv6Address(f"2001:db8::{i:x}")), 2000 + i) for i in range(40)]


def _ext_handshake(data: bytes) -> None:
    h = ext.parse_ext_handshake(data)
    assert len(h.ids) <= 64 and all(0 < v < 256 for v in h.ids.values())
    assert h.client is None or len(h.client) <= 100
    assert h.yourip is None or len(h.yourip) in (4, 16)
    again = ext.parse_ext_handshake(ext.encode_ext_handshake(h))
    assert again.ids == h.ids and again.client == (h.client or None)
    assert (again.port, again.reqq, again.metadata_size, again.yourip, again.upload_only) == (
        h.port, h.reqq, h.metadata_size, h.yourip, h.upload_only,
    )


def _metadata(data: bytes) -> None:
    msg = ext.parse_metadata(data)
    assert 0 <= msg.piece < ext.MAX_METADATA_SIZE // METADATA_PIECE
    if isinstance(msg, ext.MetadataData):
        assert 0 < msg.total_size <= ext.MAX_METADATA_SIZE and len(msg.data) <= METADATA_PIECE
    assert ext.parse_metadata(ext.encode_metadata(msg)) == msg


def _pex(data: bytes) -> None:
    msg = ext.parse_pex(data)
    assert len(msg.added) == len(msg.added_flags) <= 2 * ext.MAX_PEX_PEERS
    assert len(msg.dropped) <= 2 * ext.MAX_PEX_PEERS
    assert all(0 < port < 65536 and ipaddress.ip_address(host) for host, port in msg.added + msg.dropped)
    assert all(0 <= f < 256 for f in msg.added_flags)
    again = ext.parse_pex(ext.encode_pex(msg))
    assert set(again.added) == set(msg.added) and again.dropped == msg.dropped
    if len(set(msg.added)) == len(msg.added):  # with repeats, one flag per peer survives
        assert again == msg


def _assembler_messages(data: bytes) -> None:
    """Metadata messages from the input (each after a byte giving its length in 4-byte units) fed to an
    assembler the way the swarm feeds it."""
    assembler = ext.MetadataAssembler(info_hash_v1=_INFO_V1, info_hash_v2=None)
    pos = 0
    while pos < len(data):
        size = data[pos] * 4
        chunk = data[pos + 1 : pos + 1 + size]
        pos += 1 + size
        if size == 0:
            piece = assembler.next_request()
            assert piece is None or 0 <= piece < assembler.num_pieces
            continue
        try:
            msg = ext.parse_metadata(chunk)
            if isinstance(msg, ext.MetadataReject):
                assembler.release(msg.piece)
            elif isinstance(msg, ext.MetadataData):
                assembler.set_size(msg.total_size)
                assert assembler.receive(msg.piece, msg.data) is None  # only _INFO's pieces complete it
        except ExtensionError:
            continue
    assert not assembler.done


def _assembler_exchange(data: bytes) -> None:
    """A metadata exchange with damage chosen by the input: the assembler must return exactly _INFO, refuse
    pieces of the wrong length, refuse a damaged whole, and finish once honest pieces arrive."""
    if not data:
        return
    hashes = ((_INFO_V1, None), (None, _INFO_V2), (_INFO_V1, _INFO_V2))[data[0] % 3]
    assembler = ext.MetadataAssembler(info_hash_v1=hashes[0], info_hash_v2=hashes[1])
    assembler.set_size(len(_INFO))
    pieces = [_INFO[i : i + METADATA_PIECE] for i in range(0, len(_INFO), METADATA_PIECE)]
    held: dict[int, bytes] = {}  # what the assembler should be holding
    for op in data[1:33]:
        piece, kind = op % len(pieces), (op >> 2) % 8
        if kind == 7:
            assembler.release(piece)
            continue
        part = pieces[piece]
        if kind == 5:
            part = part[:-1]
        elif kind == 6:
            damaged = bytearray(part)
            damaged[op * 131 % len(damaged)] ^= op | 1
            part = bytes(damaged)
        msg = ext.parse_metadata(ext.encode_metadata(ext.MetadataData(piece, len(_INFO), part)))
        assert isinstance(msg, ext.MetadataData) and msg.data == part
        trial = {**held, piece: part}
        complete = len(trial) == len(pieces)
        if len(part) != len(pieces[piece]) or (complete and any(trial[i] != pieces[i] for i in trial)):
            try:
                assembler.receive(msg.piece, msg.data)
            except ExtensionError:
                if len(part) == len(pieces[piece]):
                    held = {}  # a whole that does not match: everything is dropped
                continue
            raise AssertionError("the assembler accepted a wrong piece or wrong metadata")
        result = assembler.receive(msg.piece, msg.data)
        held = trial
        if complete:
            assert result == _INFO and assembler.done
            return
        assert result is None and not assembler.done
    for piece in [*held, *(i for i in range(len(pieces)) if i not in held)]:  # honest peers finish the job
        result = assembler.receive(piece, pieces[piece])
    assert result == _INFO and assembler.done


def _pex_state(data: bytes) -> None:
    """Connected sets from the input; the peer's view built from our messages must follow them."""
    state = ext.PexState()
    view: set[tuple[str, int]] = set()
    checked_wire_form = False
    for pos in range(0, min(len(data), 12) - 1, 2):  # six rounds are plenty, and keep a case fast
        count, seed = data[pos] % (len(_UNIVERSE) + 1), data[pos + 1]
        connected = {_UNIVERSE[(seed * 7 + i * (seed | 1)) % len(_UNIVERSE)] for i in range(count)}
        for _ in range(1 + 2 * len(_UNIVERSE) // PEX_SEND_MAX):
            msg = state.update(connected)
            if msg is None:
                break
            assert len(msg.added) <= PEX_SEND_MAX and len(msg.dropped) <= PEX_SEND_MAX
            assert set(msg.added) <= connected and not set(msg.dropped) & connected
            assert not set(msg.added) & view and set(msg.dropped) <= view
            if not checked_wire_form:  # once per case: ipaddress makes the wire form the slow part
                parsed = ext.parse_pex(ext.encode_pex(msg))
                assert set(parsed.added) == set(msg.added) and set(parsed.dropped) == set(msg.dropped)
                checked_wire_form = True
            view |= set(msg.added)
            view -= set(msg.dropped)
        assert view == connected == state.sent


TestOneInput = harness.Pick(
    _ext_handshake, _metadata, _pex, _assembler_messages, _assembler_exchange, _pex_state,
    allowed=ExtensionError,
)


def seeds() -> list[bytes]:
    """Valid inputs for every target, to start a corpus from."""
    handshake = ext.encode_ext_handshake(
        ext.ExtHandshake({"ut_metadata": 2, "ut_pex": 1}, "peerloom", 6881, 250, len(_INFO), bytes(4), True)
    )
    data_msg = ext.encode_metadata(ext.MetadataData(0, 20, b"x" * 20))
    pex = ext.encode_pex(ext.PexMessage([("10.0.0.1", 6881), ("2001:db8::1", 1)], [2, 16], [("10.0.0.2", 7)]))
    request = ext.encode_metadata(ext.MetadataRequest(1))
    reject = ext.encode_metadata(ext.MetadataReject(1))

    def framed(msg: bytes) -> bytes:  # _assembler_messages counts lengths in units of 4 bytes
        msg += b"\x00" * (-len(msg) % 4)
        return bytes([len(msg) // 4]) + msg

    return [
        b"\x00" + handshake,
        b"\x01" + request,
        b"\x01" + data_msg,
        b"\x02" + pex,
        b"\x03" + framed(request) + framed(reject) + framed(data_msg) + b"\x00",
        b"\x04\x00" + bytes([0, 1, 2]),
        b"\x04\x02" + bytes([2, 24, 0, 1, 20, 0, 1, 2]),
        b"\x05" + bytes([10, 3, 60, 5, 0, 0, 200, 9]),
    ]


if __name__ == "__main__":
    harness.main(TestOneInput)
