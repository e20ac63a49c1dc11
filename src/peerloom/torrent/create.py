"""Making torrents: v1, v2 or hybrid, of a file or a directory.

Hashing is the cost, so it streams: files are read in chunks of whole pieces into a few reused
buffers, and worker threads hash them (hashlib releases the GIL), so memory stays bounded and both
cores work. Files are ordered as BEP 52's file tree orders them (sorted by name at each level), and
for hybrid torrents of several files each file is aligned to a piece boundary by BEP 47 pad files,
as libtorrent does; the info dictionary is byte for byte the one libtorrent 2.x makes of the same
input.

Symbolic links inside a folder are never followed, neither to files nor to folders: a link could
publish a file from outside the folder (`ln -s ~/.ssh/id_ed25519`) or loop. `scan` lists the links
and special files it left out so that the caller can say so. The path given itself may be a link:
the user named it, so it is resolved, and the torrent takes the name of what it points to.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerloom.codec.bencode import encode
from peerloom.errors import PeerloomError
from peerloom.torrent.merkle import BLOCK_SIZE, merkle_root, pad_hash, piece_hash
from peerloom.torrent.metainfo import MAX_PATH_DEPTH, Metainfo, Version
from peerloom.version import __version__

CHUNK_SIZE = 4 * 1024 * 1024
"""Bytes read and handed to a hashing thread at once (rounded to whole pieces)."""
BUFFER_BUDGET = 64 * 1024 * 1024
"""Bytes of read buffers when pieces are large (a chunk is at least one piece): at least two buffers."""

MIN_PIECE_LENGTH = BLOCK_SIZE
MAX_PIECE_LENGTH = 128 * 1024 * 1024
"""libtorrent refuses to create larger pieces ("some clients don't support pieces this large")."""
MAX_AUTO_PIECE_LENGTH = 16 * 1024 * 1024
TARGET_MAX_PIECES = 2000
_ZEROS = memoryview(bytes(1024 * 1024))


class CreateError(PeerloomError):
    """The input cannot be made into a torrent (missing, unreadable, changed while hashing)."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file to put in a torrent: its path inside the torrent and where it is on disk."""

    path: tuple[str, ...]
    disk_path: Path
    length: int
    executable: bool = False


@dataclass(frozen=True, slots=True)
class Source:
    """What `scan` found: the files to hash, and what it left out (paths relative to `root`)."""

    root: Path
    files: list[SourceFile]
    symlinks: list[str]
    special: list[str]  # FIFOs, sockets, devices

    @property
    def total_length(self) -> int:
        return sum(f.length for f in self.files)


def scan(path: str | os.PathLike[str]) -> Source:
    """The regular files under `path` (or `path` itself), in BEP 52 file-tree order.

    `path` is resolved (a link given here is followed); inside a folder, links are skipped, never followed.
    """
    root = Path(path).resolve()
    try:
        info = root.stat()
    except FileNotFoundError:
        raise CreateError(f"{path}: no such file or directory") from None
    except OSError as exc:
        raise CreateError(f"{path}: {exc.strerror}") from exc
    if stat.S_ISREG(info.st_mode):
        return Source(root, [SourceFile((root.name,), root, info.st_size, _executable(info.st_mode))], [], [])
    if not stat.S_ISDIR(info.st_mode):
        raise CreateError(f"{path}: not a regular file or directory")
    source = Source(root, [], [], [])
    _walk(root, (), source)
    if not source.files:
        raise CreateError(f"{path}: directory holds no files")
    source.files.sort(key=lambda f: [part.encode("utf-8", errors="surrogateescape") for part in f.path])
    source.symlinks.sort()
    source.special.sort()
    return source


def _walk(directory: Path, relative: tuple[str, ...], source: Source) -> None:
    if len(relative) >= MAX_PATH_DEPTH:  # no torrent reader would take deeper paths
        raise CreateError(f"{directory}: folders nested more than {MAX_PATH_DEPTH} deep")
    try:
        with os.scandir(directory) as entries:
            listed = list(entries)
    except OSError as exc:
        raise CreateError(f"{directory}: {exc.strerror}") from exc
    for entry in listed:
        path = (*relative, entry.name)
        try:
            if entry.is_symlink():
                source.symlinks.append("/".join(path))
            elif entry.is_dir(follow_symlinks=False):
                _walk(Path(entry.path), path, source)
            elif entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                source.files.append(SourceFile(path, Path(entry.path), info.st_size, _executable(info.st_mode)))
            else:
                source.special.append("/".join(path))
        except OSError as exc:
            raise CreateError(f"{entry.path}: {exc.strerror}") from exc


def _executable(mode: int) -> bool:
    """Marked executable in the torrent (BEP 47 attr "x") when its owner may run it, as libtorrent does."""
    return bool(mode & stat.S_IXUSR)


def check_piece_length(piece_length: int) -> None:
    """Refuse a piece length a torrent should not have, before anything is read or allocated."""
    if not MIN_PIECE_LENGTH <= piece_length <= MAX_PIECE_LENGTH or piece_length & (piece_length - 1):
        raise CreateError(f"piece length must be a power of two from 16 KiB to 128 MiB, not {_size(piece_length)}")


def _size(n: int) -> str:
    """`n` bytes in the largest binary unit that divides it (a piece length as the user likely typed it)."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


def seed_directory(path: str | os.PathLike[str], meta: Metainfo) -> Path:
    """The folder a torrent made of `path` is seeded from: the one holding `path`, except for a folder
    holding one file made into a v2-only torrent. Its file tree is that one file (BEP 52 has no way to
    say "in a folder"; libtorrent reads it so), which is then found inside the folder itself."""
    root = Path(path).resolve()
    return root if meta.single_file and root.is_dir() else root.parent


def auto_piece_length(total_length: int) -> int:
    """A power of two from 16 KiB to 16 MiB giving at most ~2000 pieces (1000-2000 for large inputs)."""
    length = MIN_PIECE_LENGTH
    while total_length > length * TARGET_MAX_PIECES and length < MAX_AUTO_PIECE_LENGTH:
        length *= 2
    return length


@dataclass(frozen=True, slots=True)
class _Job:
    """A chunk of one file (v2, hybrid) or of the v1 stream, with how to hash it."""

    file_index: int
    data_length: int
    pad_to_piece: bool  # hybrid: the file's last piece is filled up by a pad file (zeros)


def create(
    path: str | os.PathLike[str] | Source,
    *,
    version: Version = "hybrid",
    piece_length: int | None = None,
    trackers: Sequence[str | Sequence[str]] = (),
    web_seeds: Sequence[str] = (),
    comment: str | None = None,
    private: bool = False,
    created_by: str | None = f"peerloom {__version__}",
    creation_date: int | None = None,
    progress: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> Metainfo:
    """Hash `path` (or what a `scan` found) and return its torrent.

    `trackers` holds URLs or tiers of URLs (BEP 12). `progress` is called with each count of bytes
    hashed. `creation_date` defaults to now.
    """
    if piece_length is not None:
        check_piece_length(piece_length)
    source = path if isinstance(path, Source) else scan(path)
    files = source.files
    if piece_length is None:
        piece_length = auto_piece_length(source.total_length)
    single = source.root.is_file()
    # libtorrent pads only torrents of several files (create_torrent.cpp, canonicalize): a lone file,
    # alone or in a folder, has nothing after it to align.
    pads = version == "hybrid" and len(files) > 1
    hasher = _Hasher(files, piece_length, version, pads, threads or min(2, os.cpu_count() or 1))
    hasher.run(progress)

    info: dict[str, Any] = {"name": source.root.name, "piece length": piece_length}
    if private:
        info["private"] = 1
    if version in ("v1", "hybrid"):
        info["pieces"] = b"".join(hasher.v1_pieces)
        if single:
            info["length"] = files[0].length
        else:
            info["files"] = _v1_file_list(files, piece_length, pads)
    if version in ("v2", "hybrid"):
        info["meta version"] = 2
        info["file tree"] = _file_tree(files, hasher.roots)
    tiers = tuple(tuple([t] if isinstance(t, str) else t) for t in trackers)
    return Metainfo.from_info(
        encode(info),
        piece_layers=hasher.layers,
        trackers=tiers,
        web_seeds=tuple(web_seeds),
        comment=comment,
        created_by=created_by,
        creation_date=int(time.time()) if creation_date is None else creation_date,
    )


def _v1_file_list(files: Sequence[SourceFile], piece_length: int, pads: bool) -> list[dict[str, Any]]:
    """The v1 `files` list; with `pads`, each file that ends inside a piece is followed by a pad file
    filling that piece (the last file too), the layout libtorrent writes for hybrid torrents."""
    entries: list[dict[str, Any]] = []
    for f in files:
        entries.append({"length": f.length, "path": list(f.path), **_attr(f)})
        tail = f.length % piece_length
        if pads and tail:
            pad = piece_length - tail
            entries.append({"attr": "p", "length": pad, "path": [".pad", str(pad)]})
    return entries


def _attr(f: SourceFile) -> dict[str, str]:
    return {"attr": "x"} if f.executable else {}


def _file_tree(files: Sequence[SourceFile], roots: Sequence[bytes | None]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for f, root in zip(files, roots, strict=True):
        node = tree
        for part in f.path[:-1]:
            node = node.setdefault(part, {})
        leaf: dict[str, Any] = {"length": f.length, **_attr(f)}
        if root is not None:
            leaf["pieces root"] = root
        node[f.path[-1]] = {"": leaf}
    return tree


class _Hasher:
    """Reads the files once and computes v1 piece hashes and/or v2 merkle trees in worker threads."""

    def __init__(
        self, files: Sequence[SourceFile], piece_length: int, version: Version, pads: bool, threads: int
    ) -> None:
        self.files = files
        self.pads = pads
        self.piece_length = piece_length
        self.v1 = version in ("v1", "hybrid")
        self.v2 = version in ("v2", "hybrid")
        self.threads = max(1, threads)
        self.chunk = max(1, CHUNK_SIZE // piece_length) * piece_length
        self.v1_pieces: list[bytes] = []
        self.roots: list[bytes | None] = [None] * len(files)
        self.layers: dict[bytes, bytes] = {}
        self._file_pieces: list[list[bytes]] = [[] for _ in files]

    def run(self, progress: Callable[[int], None] | None) -> None:
        count = max(2, min(2 * self.threads + 1, BUFFER_BUDGET // self.chunk))
        buffers = [bytearray(self.chunk) for _ in range(count)]
        pending: deque[tuple[_Job, Future[Any], bytearray]] = deque()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="peerloom-hash") as pool:
            jobs = self._jobs_by_file() if self.v2 else self._jobs_v1_stream()
            for job, fill in jobs:
                if len(pending) == len(buffers) - 1:
                    self._collect(*pending.popleft(), buffers, progress)
                buffer = buffers.pop()
                fill(buffer)
                view = memoryview(buffer)[: job.data_length]
                pending.append((job, pool.submit(self._hash, job, view), buffer))
            while pending:
                self._collect(*pending.popleft(), buffers, progress)
        if self.v2:
            self._finish_v2()

    def _collect(
        self,
        job: _Job,
        future: Future[Any],
        buffer: bytearray,
        buffers: list[bytearray],
        progress: Callable[[int], None] | None,
    ) -> None:
        sha1s, v2_nodes = future.result()
        buffers.append(buffer)
        self.v1_pieces.extend(sha1s)
        self._file_pieces[job.file_index].extend(v2_nodes)
        if progress:
            progress(job.data_length)

    def _hash(self, job: _Job, data: memoryview) -> tuple[list[bytes], list[bytes]]:
        step = self.piece_length
        sha1s = []
        if self.v1:
            sha1s = [hashlib.sha1(data[i : i + step]).digest() for i in range(0, len(data), step)]
            tail = len(data) % step
            if job.pad_to_piece and tail:
                last = hashlib.sha1(data[len(data) - tail :])
                for done in range(tail, step, len(_ZEROS)):  # the pad file's zeros
                    last.update(_ZEROS[: min(len(_ZEROS), step - done)])
                sha1s[-1] = last.digest()
        nodes = []
        if self.v2:
            length = self.files[job.file_index].length
            nodes = [piece_hash(data[i : i + step], step, length) for i in range(0, len(data), step)]
        return sha1s, nodes

    def _jobs_by_file(self) -> Iterator[tuple[_Job, Callable[[bytearray], None]]]:
        """Per-file chunks: v2 hashes each file on its own, hybrid pads each file to a piece."""
        for index, f in enumerate(self.files):
            if not f.length:
                continue
            with _open(f) as stream:
                for start in range(0, f.length, self.chunk):
                    size = min(self.chunk, f.length - start)
                    yield _Job(index, size, self.pads), _reader(stream, f, size)

    def _jobs_v1_stream(self) -> Iterator[tuple[_Job, Callable[[bytearray], None]]]:
        """v1: pieces run across file boundaries, so chunks are cut from the files' concatenation."""
        total = sum(f.length for f in self.files)
        with _ConcatReader(self.files) as reader:
            for start in range(0, total, self.chunk):
                size = min(self.chunk, total - start)
                yield _Job(0, size, False), lambda buffer, size=size: reader.fill(memoryview(buffer)[:size])

    def _finish_v2(self) -> None:
        height = (self.piece_length // BLOCK_SIZE).bit_length() - 1
        for index, f in enumerate(self.files):
            nodes = self._file_pieces[index]
            if not f.length:
                continue
            if f.length <= self.piece_length:
                self.roots[index] = nodes[0]
                continue
            root = merkle_root(nodes, pad=pad_hash(height))
            self.roots[index] = root
            self.layers[root] = b"".join(nodes)


def _open(f: SourceFile) -> Any:
    try:
        return open(f.disk_path, "rb", buffering=0)
    except OSError as exc:
        raise CreateError(f"{f.disk_path}: {exc.strerror}") from exc


def _read_exact(stream: Any, f: SourceFile, view: memoryview) -> None:
    done = 0
    while done < len(view):
        try:
            got = stream.readinto(view[done:])
        except OSError as exc:
            raise CreateError(f"{f.disk_path}: {exc.strerror}") from exc
        if not got:
            raise CreateError(f"{f.disk_path}: file shrank while it was being hashed")
        done += got


def _reader(stream: Any, f: SourceFile, size: int) -> Callable[[bytearray], None]:
    def fill(buffer: bytearray) -> None:
        _read_exact(stream, f, memoryview(buffer)[:size])

    return fill


class _ConcatReader:
    """Reads the files one after another as a single stream (the v1 piece stream, unpadded)."""

    def __init__(self, files: Sequence[SourceFile]) -> None:
        self._files = iter([f for f in files if f.length])
        self._stream: Any = None
        self._current: SourceFile | None = None
        self._left = 0

    def fill(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            if not self._left:
                self.close()
                self._current = next(self._files)
                self._stream = _open(self._current)
                self._left = self._current.length
            take = min(self._left, len(view) - done)
            assert self._current is not None
            _read_exact(self._stream, self._current, view[done : done + take])
            done += take
            self._left -= take

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self) -> _ConcatReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
