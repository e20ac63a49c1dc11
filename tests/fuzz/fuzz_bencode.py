"""atheris fuzz target for bencode, torrent metainfo and magnet links.

Run: `python tests/fuzz/fuzz_bencode.py [corpus dir] [-max_total_time=N]`. The first input byte picks the
target, the rest is its input. Only BencodeError, MetainfoError and MagnetError may escape; whatever is
accepted must survive a round trip (re-encoding, `to_bytes`, `str`) unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import harness

from peerloom.codec.bencode import BencodeError, decode, decode_prefix, decode_with_span, encode
from peerloom.torrent.magnet import Magnet, MagnetError
from peerloom.torrent.metainfo import MAX_TOTAL_LENGTH, Metainfo, MetainfoError


def _strict(data: bytes) -> None:
    value = decode(data)
    assert encode(value) == data  # strict bencode is canonical


def _lenient(data: bytes) -> None:
    try:
        value, span = decode_with_span(data, b"info", strict=False)
    except BencodeError:
        value, end = decode_prefix(data)  # may still hold a value followed by other bytes
        assert end < len(data) or not data
        assert decode(data[:end], strict=False) == value
        return
    assert decode_prefix(data) == (value, len(data))
    assert decode(encode(value)) == value
    if span is not None:
        assert isinstance(value, dict)
        assert decode(data[span[0] : span[1]], strict=False) == value[b"info"]


def _check_metainfo(meta: Metainfo) -> None:
    if meta.info_hash_v1 is not None:
        assert meta.info_hash_v1 == hashlib.sha1(meta.info_bytes).digest()
    if meta.info_hash_v2 is not None:
        assert meta.info_hash_v2 == hashlib.sha256(meta.info_bytes).digest()
    assert meta.info_hash_v1 or meta.info_hash_v2
    assert meta.files and meta.piece_length > 0
    assert 0 <= meta.total_length <= MAX_TOTAL_LENGTH
    for f in meta.files:
        assert f.length >= 0 and f.path
        assert all(part not in ("", ".", "..") and "/" not in part and "\\" not in part for part in f.path)


def _metainfo(data: bytes) -> None:
    meta = Metainfo.parse(data)
    _check_metainfo(meta)
    again = Metainfo.parse(meta.to_bytes())
    assert again == replace(meta, comment=meta.comment or None, created_by=meta.created_by or None)


def _info(data: bytes) -> None:
    meta = Metainfo.from_info(data)
    _check_metainfo(meta)
    assert meta.info_bytes == data
    assert Metainfo.parse(meta.to_bytes()) == meta


def _magnet(data: bytes) -> None:
    link = data.decode("utf-8", "surrogateescape")  # how a link given on a command line arrives
    magnet = Magnet.parse("magnet:?" + link)
    assert magnet.info_hash_v1 is None or len(magnet.info_hash_v1) == 20
    assert magnet.info_hash_v2 is None or len(magnet.info_hash_v2) == 32
    assert all(0 < port < 65536 for _, port in magnet.peers)
    assert Magnet.parse(str(magnet)) == replace(magnet, name=magnet.name or None)


TestOneInput = harness.Pick(
    _strict, _lenient, _metainfo, _info, _magnet, allowed=(BencodeError, MetainfoError, MagnetError)
)


def seeds() -> list[bytes]:
    """Valid inputs for every target, to start a corpus from."""
    from hashlib import sha256

    value = encode({b"a": [1, -2, b"xyz", {b"k": b""}], b"b": 10**30, b"info": {b"n": 0}})
    single = {b"name": b"a.txt", b"piece length": 16384, b"length": 20_000, b"pieces": bytes(40)}
    multi = {
        b"name": b"dir",
        b"piece length": 32768,
        b"files": [{b"length": 5, b"path": [b"x", b"y.bin"]}, {b"length": 0, b"path": [b"empty"]}],
        b"pieces": bytes(20),
    }
    leaf = {b"length": 40_000, b"pieces root": sha256(b"root").digest()}
    v2 = {b"name": b"v2", b"piece length": 16384, b"meta version": 2, b"file tree": {b"f": {b"": leaf}}}
    hybrid = {
        b"name": b"h",
        b"piece length": 16384,
        b"meta version": 2,
        b"file tree": {b"a": {b"": {b"length": 3, b"pieces root": bytes(32)}}, b"b": {b"": leaf}},
        b"files": [
            {b"length": 3, b"path": [b"a"]},
            {b"length": 16381, b"path": [b".pad", b"16381"], b"attr": b"p"},
            {b"length": 40_000, b"path": [b"b"]},
        ],
        b"pieces": bytes(20 * 4),
    }
    outer = {
        b"announce": b"http://t.example/announce",
        b"announce-list": [[b"http://t.example/announce", b"udp://u.example:80"], [b"http://b.example/a"]],
        b"comment": b"c",
        b"created by": b"peerloom",
        b"creation date": 1_700_000_000,
        b"url-list": [b"http://seed.example/"],
    }
    torrents = [encode({**outer, b"info": info}) for info in (single, multi, v2, hybrid)]
    magnets = [
        "xt=urn:btih:" + bytes(range(20)).hex() + "&dn=n%C3%A9&tr=http%3A%2F%2Ft%2Fa&x.pe=10.0.0.1:6881&so=0,2-3",
        "xt=urn:btmh:1220" + bytes(range(32)).hex() + "&x.pe=[::1]:7&x.pe=h%2Bo%26st:1&ws=http://s/",
        "xt=urn:btih:AAAQEAYEAUDAOCAJBIFQYDIOB4IBCEQT&xt=urn:btmh:1220" + "ab" * 32,
    ]
    return (
        [b"\x00" + value, b"\x01" + value + b"trailing"]
        + [b"\x02" + t for t in torrents]
        + [b"\x03" + encode(info) for info in (single, multi, v2, hybrid)]
        + [b"\x04" + m.encode() for m in magnets]
    )


if __name__ == "__main__":
    harness.main(TestOneInput)
