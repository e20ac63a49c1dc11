"""Torrent metainfo: BitTorrent v1 (BEP 3), v2 (BEP 52) and hybrid torrents, parsed from untrusted bytes.

`Metainfo.parse` reads a .torrent file; `Metainfo.from_info` builds one from a bare info dictionary
(as fetched from peers for a magnet link). Both check every field's type and bound, refuse file
names that would escape the download directory, and, for hybrid torrents, check that the v1 and v2
descriptions agree on the data, so the two info-hashes can never name different content.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from peerloom.codec.bencode import BencodeError, decode_with_span, encode
from peerloom.errors import ProtocolError
from peerloom.torrent.merkle import BLOCK_SIZE, HASH_SIZE, root_from_piece_layer

MAX_TORRENT_SIZE = 100 * 1024 * 1024
"""Largest .torrent accepted (piece layers of a multi-terabyte v2 torrent fit well within it)."""

MAX_FILES = 1_000_000
MAX_PATH_DEPTH = 64
MAX_COMPONENT_BYTES = 255
"""Longest file or folder name (UTF-8 bytes): what Linux, macOS and Windows file systems store."""
MAX_PIECE_LENGTH = 1 << 28
"""256 MiB, the largest piece mktorrent makes; libtorrent loads up to ~512 MiB but creates at most 128 MiB."""
MAX_PIECES = 1 << 21
"""libtorrent's default `max_pieces` when it loads a torrent: a claimed length can never make us size a
bitfield or a per-piece table beyond this (a v2 torrent carries no hash list that would give a lie away)."""
MAX_TOTAL_LENGTH = 1 << 53  # 8 PiB

Version = Literal["v1", "v2", "hybrid"]


class MetainfoError(ProtocolError):
    """A torrent (or info dictionary) that is malformed, inconsistent or unsafe."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One file of a torrent.

    `path` is relative to the directory the torrent is saved in (it starts with the torrent's name
    for multi-file torrents). `offset` is where the file starts in the v1 piece stream, or, for a
    v2-only torrent, in the stream where every file starts on a piece boundary.
    """

    path: tuple[str, ...]
    length: int
    offset: int
    pieces_root: bytes | None = None
    attr: str = ""

    @property
    def is_pad(self) -> bool:
        """A BEP 47 padding file: zeros that align the next file to a piece; never written to disk."""
        return "p" in self.attr


@dataclass(frozen=True, slots=True)
class Metainfo:
    """A parsed torrent: the info dictionary's content plus the optional outer fields."""

    name: str
    piece_length: int
    files: tuple[FileInfo, ...]
    info_bytes: bytes
    info_hash_v1: bytes | None
    info_hash_v2: bytes | None
    pieces_v1: bytes | None = None
    piece_layers: Mapping[bytes, bytes] = field(default_factory=dict)
    trackers: tuple[tuple[str, ...], ...] = ()
    web_seeds: tuple[str, ...] = ()
    comment: str | None = None
    created_by: str | None = None
    creation_date: int | None = None
    private: bool = False
    single_file: bool = True

    @classmethod
    def parse(cls, data: bytes) -> Metainfo:
        """Parse the bytes of a .torrent file."""
        if len(data) > MAX_TORRENT_SIZE:
            raise MetainfoError(f"torrent is larger than {MAX_TORRENT_SIZE} bytes")
        try:
            top, span = decode_with_span(data, b"info", strict=False)
        except BencodeError as exc:
            raise MetainfoError(f"not a valid torrent file: {exc}") from exc
        if not isinstance(top, dict):
            raise MetainfoError("not a valid torrent file: top level is not a dictionary")
        if span is None:
            raise MetainfoError("torrent has no info dictionary")
        layers = _piece_layers(top.get(b"piece layers"))
        return cls.from_info(
            data[span[0] : span[1]],
            piece_layers=layers,
            trackers=_trackers(top),
            web_seeds=_web_seeds(top.get(b"url-list")),
            comment=_optional_text(top, b"comment"),
            created_by=_optional_text(top, b"created by"),
            creation_date=top.get(b"creation date") if type(top.get(b"creation date")) is int else None,
        )

    @classmethod
    def from_info(
        cls, info_bytes: bytes, *, piece_layers: Mapping[bytes, bytes] | None = None, **outer: Any
    ) -> Metainfo:
        """Build from a raw bencoded info dictionary (hashed as given) and optional outer fields."""
        try:
            info, _ = decode_with_span(info_bytes, None, strict=False)
        except BencodeError as exc:
            raise MetainfoError(f"invalid info dictionary: {exc}") from exc
        if not isinstance(info, dict):
            raise MetainfoError("info is not a dictionary")
        name = _text(info, b"name", required=True)
        _check_component(name)
        piece_length = info.get(b"piece length")
        if type(piece_length) is not int or not 0 < piece_length <= MAX_PIECE_LENGTH:
            raise MetainfoError("piece length missing or out of range")
        meta_version = info.get(b"meta version")
        if meta_version is not None and meta_version != 2:
            raise MetainfoError(f"unsupported meta version {meta_version!r}")
        has_v1 = b"pieces" in info
        has_v2 = meta_version == 2
        if not has_v1 and not has_v2:
            raise MetainfoError("info dictionary has neither v1 pieces nor a v2 file tree")
        private = info.get(b"private") == 1

        files_v2: list[FileInfo] | None = None
        single = True
        count_v1 = count_v2 = 0
        if has_v2:
            if piece_length < BLOCK_SIZE or piece_length & (piece_length - 1):
                raise MetainfoError("v2 piece length must be a power of two of at least 16 KiB")
            # A hybrid's v1 half says whether the files sit in a folder (a `files` list) or the torrent is
            # one file (`length`); a v2 tree alone cannot tell a folder holding one file from a single file.
            multi = b"files" in info if has_v1 else None
            files_v2, single = _v2_files(info.get(b"file tree"), name, piece_length, multi)
            count_v2 = _check_piece_count(sum(math.ceil(f.length / piece_length) for f in files_v2))
        pieces_v1 = None
        files_v1: list[FileInfo] | None = None
        if has_v1:
            files_v1, single = _v1_files(info, name)
            pieces_v1 = info[b"pieces"]
            if not isinstance(pieces_v1, bytes) or len(pieces_v1) % 20:
                raise MetainfoError("pieces is not a whole number of SHA-1 hashes")
            count_v1 = _check_piece_count(math.ceil(sum(f.length for f in files_v1) / piece_length))
            if len(pieces_v1) // 20 != count_v1:
                raise MetainfoError(f"{len(pieces_v1) // 20} piece hashes for {count_v1} pieces")
        if files_v1 is not None and files_v2 is not None:
            _check_hybrid(files_v1, files_v2)
            if count_v1 != count_v2:
                raise MetainfoError(f"hybrid torrent: {count_v1} pieces in v1, {count_v2} in v2")
            roots = iter(f.pieces_root for f in files_v2)
            files_v1 = [f if f.is_pad else replace(f, pieces_root=next(roots)) for f in files_v1]
        files = files_v1 if files_v1 is not None else files_v2
        assert files is not None
        _check_distinct_paths(files)
        layers = _check_piece_layers(files_v2 or [], piece_layers or {}, piece_length)
        return cls(
            name=name,
            piece_length=piece_length,
            files=tuple(files),
            info_bytes=bytes(info_bytes),
            info_hash_v1=hashlib.sha1(info_bytes).digest() if has_v1 else None,
            info_hash_v2=hashlib.sha256(info_bytes).digest() if has_v2 else None,
            pieces_v1=pieces_v1,
            piece_layers=layers,
            private=private,
            single_file=single,
            **outer,
        )

    @property
    def version(self) -> Version:
        if self.info_hash_v1 and self.info_hash_v2:
            return "hybrid"
        return "v2" if self.info_hash_v2 else "v1"

    @property
    def data_files(self) -> tuple[FileInfo, ...]:
        """The files a user sees: every file but the padding."""
        return tuple(f for f in self.files if not f.is_pad)

    @property
    def total_length(self) -> int:
        """Bytes of real data (padding excluded)."""
        return sum(f.length for f in self.data_files)

    @property
    def num_pieces(self) -> int:
        if self.pieces_v1 is not None:
            return len(self.pieces_v1) // 20
        return sum(math.ceil(f.length / self.piece_length) for f in self.files)

    def to_bytes(self) -> bytes:
        """The .torrent file: outer fields around the info dictionary's original bytes."""
        outer: dict[bytes, Any] = {}
        if self.trackers:
            outer[b"announce"] = self.trackers[0][0]
            if len(self.trackers) > 1 or len(self.trackers[0]) > 1:
                outer[b"announce-list"] = [list(tier) for tier in self.trackers]
        if self.comment:
            outer[b"comment"] = self.comment
        if self.created_by:
            outer[b"created by"] = self.created_by
        if self.creation_date is not None:
            outer[b"creation date"] = self.creation_date
        if self.piece_layers:
            outer[b"piece layers"] = dict(self.piece_layers)
        if self.web_seeds:
            outer[b"url-list"] = list(self.web_seeds)
        # Splice the info dict in as its original bytes (keys sort: "info" after "creation date").
        before = {k: v for k, v in outer.items() if k < b"info"}
        after = {k: v for k, v in outer.items() if k > b"info"}
        return encode(before)[:-1] + b"4:info" + self.info_bytes + encode(after)[1:]


def _text(d: dict[bytes, Any], key: bytes, *, required: bool = False) -> str:
    """A UTF-8 text field, preferring its `.utf-8` variant (older clients wrote local encodings)."""
    raw = d.get(key + b".utf-8", d.get(key))
    if raw is None and not required:
        return ""
    if not isinstance(raw, bytes):
        raise MetainfoError(f"{key.decode()} is missing or not a string")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace")


def _optional_text(d: dict[bytes, Any], key: bytes) -> str | None:
    value = d.get(key)
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else None


def _check_piece_count(count: int) -> int:
    if count > MAX_PIECES:
        raise MetainfoError(f"{count} pieces: more than {MAX_PIECES}")
    return count


def _check_component(name: str) -> None:
    """Refuse a path component that could leave the download directory or is not a plain name."""
    if len(name.encode("utf-8", errors="surrogatepass")) > MAX_COMPONENT_BYTES:
        raise MetainfoError(f"file name {name[:40]!r}... is too long (over {MAX_COMPONENT_BYTES} bytes)")
    if name in ("", ".", ".."):
        raise MetainfoError(f"unsafe path component {name!r}")
    if "/" in name or "\\" in name or "\x00" in name:
        raise MetainfoError(f"unsafe path component {name!r}")
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        raise MetainfoError(f"unsafe path component {name!r} (drive letter)")


def _v1_files(info: dict[bytes, Any], name: str) -> tuple[list[FileInfo], bool]:
    if b"files" not in info:
        length = info.get(b"length")
        if type(length) is not int or not 0 <= length <= MAX_TOTAL_LENGTH:
            raise MetainfoError("length missing or out of range")
        return [FileInfo((name,), length, 0)], True
    entries = info[b"files"]
    if not isinstance(entries, list) or not entries:
        raise MetainfoError("files must be a non-empty list")
    if len(entries) > MAX_FILES:
        raise MetainfoError(f"more than {MAX_FILES} files")
    files = []
    offset = 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise MetainfoError("a files entry is not a dictionary")
        length = entry.get(b"length")
        if type(length) is not int or not 0 <= length <= MAX_TOTAL_LENGTH:
            raise MetainfoError("a file length is missing or out of range")
        parts = entry.get(b"path.utf-8", entry.get(b"path"))
        if not isinstance(parts, list) or not parts or len(parts) > MAX_PATH_DEPTH:
            raise MetainfoError("a file path is missing, empty or too deep")
        if not all(isinstance(p, bytes) for p in parts):
            raise MetainfoError("a file path component is not a string")
        path = tuple(p.decode("utf-8", errors="replace") for p in parts)
        for component in path:
            _check_component(component)
        attr = entry.get(b"attr", b"")
        if not isinstance(attr, bytes):
            raise MetainfoError("file attr is not a string")
        files.append(FileInfo((name, *path), length, offset, attr=attr.decode("ascii", errors="replace")))
        offset += length
        if offset > MAX_TOTAL_LENGTH:
            raise MetainfoError("total length out of range")
    return files, False


def _v2_files(tree: Any, name: str, piece_length: int, multi: bool | None) -> tuple[list[FileInfo], bool]:
    """The files of a v2 file tree. `multi` is what a hybrid's v1 half says (None for v2 only)."""
    if not isinstance(tree, dict) or not tree:
        raise MetainfoError("file tree missing or empty")
    found: list[tuple[tuple[str, ...], int, bytes | None, str]] = []
    _walk_tree(tree, (), found)
    # Without a v1 half, a tree holding one file at its top is a single-file torrent saved by the file's
    # key, as libtorrent reads it (torrent_info.cpp, extract_files2).
    single = not multi if multi is not None else len(found) == 1 and len(found[0][0]) == 1
    files = []
    offset = 0
    for path, length, root, attr in found:
        files.append(FileInfo(path if single else (name, *path), length, offset, root, attr))
        offset += math.ceil(length / piece_length) * piece_length
    return files, single


def _walk_tree(node: dict[bytes, Any], prefix: tuple[str, ...], found: list[Any]) -> None:
    """Collect the files under `node` in sorted key order, the file order BEP 52 defines."""
    if len(prefix) >= MAX_PATH_DEPTH:
        raise MetainfoError("file tree too deep")
    for key in sorted(node):
        child = node[key]
        if not isinstance(child, dict):
            raise MetainfoError("file tree node is not a dictionary")
        component = key.decode("utf-8", errors="replace")
        _check_component(component)
        path = (*prefix, component)
        if b"" in child:
            if len(child) != 1:
                raise MetainfoError(f"{'/'.join(path)!r} is both a file and a directory")
            found.append(_v2_leaf(path, child[b""]))
            if len(found) > MAX_FILES:
                raise MetainfoError(f"more than {MAX_FILES} files")
        elif child:
            _walk_tree(child, path, found)
        else:
            raise MetainfoError(f"empty directory {'/'.join(path)!r} in file tree")


def _v2_leaf(path: tuple[str, ...], leaf: Any) -> tuple[tuple[str, ...], int, bytes | None, str]:
    if not isinstance(leaf, dict):
        raise MetainfoError("file entry is not a dictionary")
    length = leaf.get(b"length")
    if type(length) is not int or not 0 <= length <= MAX_TOTAL_LENGTH:
        raise MetainfoError(f"length of {'/'.join(path)!r} missing or out of range")
    root = leaf.get(b"pieces root")
    if length > 0:
        if not isinstance(root, bytes) or len(root) != HASH_SIZE:
            raise MetainfoError(f"pieces root of {'/'.join(path)!r} missing or not 32 bytes")
    else:
        root = None
    attr = leaf.get(b"attr", b"")
    if not isinstance(attr, bytes):
        raise MetainfoError("file attr is not a string")
    return path, length, root, attr.decode("ascii", errors="replace")


def _check_distinct_paths(files: list[FileInfo]) -> None:
    """No two files at one path, and no file where another needs a folder: one would overwrite the other,
    or could not be created. Names are compared as decoded (two undecodable names can become one). Pads
    are never written, and libtorrent names them by size (.pad/N), so equal pads are fine. Sorted, a path
    that collides with another is next to it, so this takes one sort and no set of every folder."""
    paths = sorted(f.path for f in files if not f.is_pad)
    for before, after in itertools.pairwise(paths):
        if after == before:
            raise MetainfoError(f"two files at {'/'.join(after)!r}")
        if after[: len(before)] == before:
            raise MetainfoError(f"{'/'.join(before)!r} is both a file and a folder")


def _check_hybrid(files_v1: list[FileInfo], files_v2: list[FileInfo]) -> None:
    """A hybrid's v1 file list must be its v2 file tree in order, each file at the same offset of the piece
    stream (BEP 47 pads align them), so piece i is the same bytes under both info-hashes. The pad after the
    last file may be missing, as older libtorrent versions wrote hybrids; that changes no piece count."""
    data_v1 = [f for f in files_v1 if not f.is_pad]
    if [(f.path, f.length) for f in data_v1] != [(f.path, f.length) for f in files_v2]:
        raise MetainfoError("hybrid torrent: v1 file list and v2 file tree describe different files")
    for one, two in zip(data_v1, files_v2, strict=True):
        if one.length and one.offset != two.offset:
            raise MetainfoError(
                f"hybrid torrent: {'/'.join(one.path)!r} is at offset {one.offset} in v1, {two.offset} in v2"
            )


def _check_piece_layers(
    files_v2: list[FileInfo], layers: Mapping[bytes, bytes], piece_length: int
) -> dict[bytes, bytes]:
    """Keep the piece layers of this torrent's files, each checked against its file's pieces root.

    Files of one piece need no layer (their root is the piece hash). A missing layer is allowed:
    it can be fetched from peers (BEP 52 hash requests) and is verified then.
    """
    kept = {}
    for f in files_v2:
        if f.pieces_root is None or f.length <= piece_length or f.pieces_root not in layers:
            continue
        layer = layers[f.pieces_root]
        if len(layer) != math.ceil(f.length / piece_length) * HASH_SIZE:
            raise MetainfoError(f"piece layer of {'/'.join(f.path)!r} has the wrong length")
        if root_from_piece_layer(layer, piece_length) != f.pieces_root:
            raise MetainfoError(f"piece layer of {'/'.join(f.path)!r} does not match its pieces root")
        kept[f.pieces_root] = layer
    return kept


def _piece_layers(value: Any) -> dict[bytes, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        len(k) == HASH_SIZE and isinstance(v, bytes) and len(v) % HASH_SIZE == 0 for k, v in value.items()
    ):
        raise MetainfoError("piece layers must map 32-byte roots to whole numbers of hashes")
    return value


def _trackers(top: dict[bytes, Any]) -> tuple[tuple[str, ...], ...]:
    """Tracker tiers (BEP 12), falling back to the single `announce` URL; junk entries are skipped."""
    tiers = []
    announce_list = top.get(b"announce-list")
    if isinstance(announce_list, list):
        for tier in announce_list:
            if isinstance(tier, list):
                urls = tuple(u.decode("utf-8", errors="replace") for u in tier if isinstance(u, bytes) and u)
                if urls:
                    tiers.append(urls)
    announce = top.get(b"announce")
    if not tiers and isinstance(announce, bytes) and announce:
        tiers.append((announce.decode("utf-8", errors="replace"),))
    return tuple(tiers)


def _web_seeds(value: Any) -> tuple[str, ...]:
    if isinstance(value, bytes):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(u.decode("utf-8", errors="replace") for u in value if isinstance(u, bytes) and u)
