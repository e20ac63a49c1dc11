"""atheris fuzz target for the torrent metainfo parser: .torrent files, bare info dictionaries (as a magnet
download receives them from peers), and structure-aware edits of real torrents of every shape.

Run: `python tests/fuzz/fuzz_metainfo.py [corpus dir] [-max_total_time=N]`. The first input byte picks the
target, the rest is its input. Only MetainfoError may escape. Whatever is accepted is checked against the
bounds the rest of peerloom relies on (piece length, piece count, name lengths, path depth, distinct paths,
hybrid agreement, piece layer sizes) and must survive a round trip, so a wrong acceptance fails like a crash.
The edit target decodes a real torrent, lets the input replace, delete or copy values anywhere in it with
values that matter (sizes at every bound, hash-sized strings, empty containers), and parses the result: byte
mutations rarely get past bencode into the semantic checks, edits do.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
from pathlib import Path
from typing import Any

import harness

from peerloom.codec.bencode import BencodeError, decode, decode_with_span, encode
from peerloom.torrent.merkle import HASH_SIZE
from peerloom.torrent.metainfo import (
    MAX_COMPONENT_BYTES,
    MAX_PATH_DEPTH,
    MAX_PIECE_LENGTH,
    MAX_PIECES,
    Metainfo,
    MetainfoError,
)

_DATA = Path(__file__).resolve().parent.parent / "data"
_REAL = tuple(path.read_bytes() for path in sorted((_DATA / "libtorrent_torrents").glob("*.torrent")))

_INTS = (0, 1, -1, 2, 3, 5, 16383, 16384, 16385, 32768, 40000, 65536, 100_000, 1 << 21, (1 << 21) + 1, 1 << 27,
         1 << 28, (1 << 28) + 1, 1 << 40, 1 << 50, 1 << 53, (1 << 63) - 1, 1 << 64)
_MAX_EDITS = 32
_KEYS = (b"info", b"piece layers", b"name", b"name.utf-8", b"piece length", b"pieces", b"length", b"files", b"path",
         b"path.utf-8", b"attr", b"file tree", b"", b"meta version", b"pieces root", b"private", b"announce",
         b"announce-list", b"url-list", b"comment", b"creation date", b".pad", b"..", b"f", b"p", b"x")


def _check(meta: Metainfo) -> None:
    """What every accepted torrent must hold: its consumers size tables and open paths from it."""
    if meta.info_hash_v1 is not None:
        assert meta.info_hash_v1 == hashlib.sha1(meta.info_bytes).digest()
    if meta.info_hash_v2 is not None:
        assert meta.info_hash_v2 == hashlib.sha256(meta.info_bytes).digest()
    assert meta.info_hash_v1 or meta.info_hash_v2
    assert 0 < meta.piece_length <= MAX_PIECE_LENGTH
    assert meta.files and 0 <= meta.num_pieces <= MAX_PIECES
    pl = meta.piece_length
    if meta.pieces_v1 is not None:
        assert len(meta.pieces_v1) == 20 * meta.num_pieces
        assert meta.num_pieces == math.ceil(sum(f.length for f in meta.files) / pl)
    else:
        assert meta.num_pieces == sum(math.ceil(f.length / pl) for f in meta.files)
    offset = 0
    for f in meta.files:
        assert f.length >= 0 and 1 <= len(f.path) <= MAX_PATH_DEPTH + 1
        for part in f.path:
            assert part not in ("", ".", "..") and not {"/", "\\", "\x00"} & set(part)
            assert len(part.encode("utf-8", "surrogatepass")) <= MAX_COMPONENT_BYTES
        if meta.pieces_v1 is not None:
            assert f.offset == offset
            offset += f.length
        if meta.version != "v1" and not f.is_pad and f.length:
            assert f.offset % pl == 0 and f.pieces_root is not None and len(f.pieces_root) == HASH_SIZE
    paths = sorted(f.path for f in meta.data_files)
    for before, after in itertools.pairwise(paths):  # no two files at one path, no file over a folder
        assert after[: len(before)] != before
    sizes = {f.pieces_root: f.length for f in meta.data_files if f.pieces_root}
    for root, layer in meta.piece_layers.items():
        assert len(layer) == math.ceil(sizes[root] / pl) * HASH_SIZE and sizes[root] > pl


def _torrent(data: bytes) -> None:
    meta = Metainfo.parse(data)
    _check(meta)
    assert Metainfo.parse(meta.to_bytes()).info_bytes == meta.info_bytes


def _info(data: bytes) -> None:
    meta = Metainfo.from_info(data)
    _check(meta)
    assert meta.info_bytes == data and Metainfo.parse(meta.to_bytes()) == meta


class _Reader:
    """The fuzz input as a stream of choices; zeros once it runs out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1] if self.pos <= len(self.data) else 0

    def take(self, n: int) -> bytes:
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def left(self) -> bool:
        return self.pos < len(self.data)


def _value(r: _Reader, original: Any) -> Any:
    kind = r.byte() % 8
    if kind == 0:
        return _INTS[r.byte() % len(_INTS)]
    if kind == 1:
        return r.take(r.byte() % 40)
    if kind == 2:
        return bytes([r.byte()]) * HASH_SIZE  # a pieces root or a piece layer of one hash
    if kind == 3:
        return {}
    if kind == 4:
        return []
    if kind == 5:
        return {_KEYS[r.byte() % len(_KEYS)]: _value(r, original)}
    if kind == 6:
        return [_value(r, original)]
    return copy.deepcopy(_pick(r, original))  # a part of the unedited torrent: sizes grow linearly at most


def _pick(r: _Reader, node: Any) -> Any:
    """A container reached by following the input's choices from `node`."""
    while True:
        children = [v for v in (node.values() if isinstance(node, dict) else node) if isinstance(v, dict | list)]
        if not children or r.byte() % 3 == 0:
            return node
        node = children[r.byte() % len(children)]


def _edit(r: _Reader, tree: dict[bytes, Any], original: dict[bytes, Any]) -> None:
    node = _pick(r, tree)
    op = r.byte() % 4
    if isinstance(node, dict):
        keys = sorted(node)
        key = keys[r.byte() % len(keys)] if keys and op < 2 else _KEYS[r.byte() % len(_KEYS)]
        if op == 0:
            node.pop(key, None)
        else:
            node[key] = _value(r, original)
    elif node and op == 0:
        del node[r.byte() % len(node)]
    elif node and op == 1:
        node[r.byte() % len(node)] = _value(r, original)
    else:
        node.insert(r.byte() % (len(node) + 1), _value(r, original))


def _edited(data: bytes) -> None:
    if not _REAL:
        return
    r = _Reader(data)
    original = decode(_REAL[r.byte() % len(_REAL)])
    tree = copy.deepcopy(original)
    for _ in range(_MAX_EDITS):
        if not r.left():
            break
        _edit(r, tree, original)
    try:
        torrent = encode(tree)
        _, span = decode_with_span(torrent, b"info", strict=False)
    except (ValueError, BencodeError):  # copies nested past bencode's depth: not a torrent anyone can send
        return
    cases = [(_torrent, torrent)] + ([(_info, torrent[span[0] : span[1]])] if span is not None else [])
    for target, payload in cases:
        try:
            target(payload)
        except MetainfoError:
            pass


TestOneInput = harness.Pick(_torrent, _info, _edited, allowed=MetainfoError)


def seeds() -> list[bytes]:
    """Real torrents of every shape (libtorrent's, tests/data/libtorrent_torrents), their info dictionaries,
    the hostile corpus (tests/data/bad_torrents, the large ones left out), and an edit of each real one."""
    real = list(_REAL)
    bad = [path.read_bytes() for path in sorted((_DATA / "bad_torrents").glob("*.torrent"))]
    infos = []
    for torrent in real:
        try:
            _, span = decode_with_span(torrent, b"info", strict=False)
        except BencodeError:
            continue
        if span is not None:
            infos.append(torrent[span[0] : span[1]])
    edits = [bytes([i, 1, 0, 1, 1, i]) for i in range(len(real))]  # set some key of the top dict to an integer
    return (
        [b"\x00" + t for t in real + [b for b in bad if len(b) < 100_000]]
        + [b"\x01" + info for info in infos]
        + [b"\x02" + e for e in edits]
    )


if __name__ == "__main__":
    harness.main(TestOneInput)
