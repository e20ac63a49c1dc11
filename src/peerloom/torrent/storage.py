"""Where a torrent's pieces live on disk, and how they are verified.

`PieceMap` is the geometry (pure): which bytes of which files make up each piece. A v1 or hybrid
torrent's pieces cut the concatenation of its files (BEP 47 pad files included, as zeros); a v2-only
torrent's pieces cut each file separately, every file starting on a piece boundary (BEP 52), so the
last piece of a file is short. Either way piece `i` starts at `i * piece_length` of its stream.

`Storage` does the file I/O (blocking: call it from an executor), and `PieceVerifier` checks a
piece against the SHA-1 hash (v1), the SHA-256 merkle piece layer (v2), or both (hybrid).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from peerloom.errors import PeerloomError
from peerloom.torrent.merkle import HASH_SIZE, piece_hash
from peerloom.torrent.metainfo import FileInfo, Metainfo

# Descriptors a torrent keeps open (libtorrent's whole session keeps 40): a many-file torrent must not run the
# process out of descriptors, and reopening a file costs ~10 µs, little next to its I/O.
OPEN_FILES = 32


class StorageError(PeerloomError):
    """The files of a torrent cannot be read or written (disk full, permissions, a file in the way)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """Part of a piece that lives in one file: `length` bytes at `file_offset` of file `file_index`.

    `file_index` is -1 for bytes that are not stored (pad files): they read as zeros.
    """

    file_index: int
    file_offset: int
    length: int


class PieceMap:
    """The geometry of a torrent's pieces over its files."""

    def __init__(self, meta: Metainfo) -> None:
        self.piece_length = meta.piece_length
        self.files = meta.files
        self.num_pieces = meta.num_pieces
        self.aligned = meta.pieces_v1 is None  # v2-only: files padded to pieces with nothing
        self._starts = [f.offset for f in self.files]
        if self.aligned:
            self._sizes = [0] * self.num_pieces
            self._piece_file = [0] * self.num_pieces
            for index, f in enumerate(self.files):
                first = f.offset // self.piece_length
                for p in range(first, first + -(-f.length // self.piece_length)):
                    self._piece_file[p] = index
                    self._sizes[p] = min(self.piece_length, f.offset + f.length - p * self.piece_length)
        else:
            self.stream_length = sum(f.length for f in self.files)

    def piece_size(self, index: int) -> int:
        if self.aligned:
            return self._sizes[index]
        return min(self.piece_length, self.stream_length - index * self.piece_length)

    def piece_file(self, index: int) -> FileInfo:
        """The file a piece belongs to, for v2 verification (v2 pieces never straddle files)."""
        if self.aligned:
            return self.files[self._piece_file[index]]
        pos = index * self.piece_length
        i = bisect.bisect_right(self._starts, pos) - 1
        while self.files[i].length == 0 or self.files[i].is_pad:
            i += 1
        return self.files[i]

    def segments(self, index: int, begin: int = 0, length: int | None = None) -> Iterator[Segment]:
        """The file ranges holding `length` bytes at `begin` of piece `index`."""
        if length is None:
            length = self.piece_size(index) - begin
        pos = index * self.piece_length + begin
        end = pos + length
        i = bisect.bisect_right(self._starts, pos) - 1
        while pos < end:
            f = self.files[i]
            f_end = f.offset + f.length
            if pos >= f_end:
                i += 1
                continue
            n = min(end, f_end) - pos
            yield Segment(-1 if f.is_pad else i, pos - f.offset, n)
            pos += n
            i += 1

    def pieces_of_file(self, file_index: int) -> range:
        """Pieces holding any byte of a file (empty for an empty file)."""
        f = self.files[file_index]
        if f.length == 0:
            return range(0)
        return range(f.offset // self.piece_length, (f.offset + f.length - 1) // self.piece_length + 1)

    def file_mask(self, selected: Iterable[int] | None) -> list[bool]:
        """Which of `files` (pad files included, never chosen) the selection of data files (indexes into
        `data_files` order; None: all) chooses."""
        chosen = None if selected is None else set(selected)
        mask = [False] * len(self.files)
        data_index = 0
        for index, f in enumerate(self.files):
            if f.is_pad:
                continue
            mask[index] = chosen is None or data_index in chosen
            data_index += 1
        return mask

    def wanted_pieces(self, selected: Iterable[int] | None) -> list[bool]:
        """Which pieces hold bytes of the selected files (indexes into `data_files` order)."""
        if selected is None:
            return [True] * self.num_pieces
        wanted = [False] * self.num_pieces
        for index, chosen in enumerate(self.file_mask(selected)):
            if chosen:
                for p in self.pieces_of_file(index):
                    wanted[p] = True
        return wanted


class PieceVerifier:
    """Checks a whole piece against the torrent's hashes; `verify` is CPU work (run it off the loop)."""

    def __init__(self, meta: Metainfo, pieces: PieceMap) -> None:
        self.meta = meta
        self.pieces = pieces
        self.layers = dict(meta.piece_layers)

    def verify(self, index: int, data: bytes | bytearray | memoryview) -> bool:
        """True when `data` is piece `index`: SHA-1 for v1, the merkle piece hash for v2, both for hybrid
        (so a hybrid torrent whose two descriptions disagree can never pass off bad data)."""
        meta = self.meta
        if meta.pieces_v1 is not None:
            expected = meta.pieces_v1[index * 20 : index * 20 + 20]
            if hashlib.sha1(data).digest() != expected:
                return False
        if meta.info_hash_v2 is None:
            return True
        f = self.pieces.piece_file(index)
        start = index * meta.piece_length - f.offset
        real = min(len(data), f.length - start)  # hybrid: the tail of a last piece is a pad file
        got = piece_hash(memoryview(data)[:real], meta.piece_length, f.length)
        if f.length <= meta.piece_length:
            return got == f.pieces_root
        layer = self.layers.get(f.pieces_root or b"")
        if layer is None:
            return meta.pieces_v1 is not None  # hybrid fetched by magnet: SHA-1 has vouched for it
        j = start // meta.piece_length
        return got == layer[j * HASH_SIZE : (j + 1) * HASH_SIZE]


class _Handle:
    """An open file of the cache and how many threads are using it right now."""

    __slots__ = ("cached", "fd", "users")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 1
        self.cached = True  # False once evicted or closed: the last user closes the descriptor


class Storage:
    """The files of one torrent under `save_path`. Blocking I/O: call from an executor thread.

    Several worker threads use one storage at once, so its descriptor cache (at most `max_open_files` kept open,
    least recently used closed first) is guarded by a lock, held only to look up or change the cache, never
    during the I/O. Each use takes a reference: a descriptor is closed only when no thread is using it (a
    descriptor closed under a thread's pread could be reused by the next open, and the pread would read another
    file), and two threads missing the cache for the same file at once keep one descriptor and close the other.

    A `writable=False` storage only reads (a folder the user shares: it is opened read-only, so read-only files
    and media can be seeded, and nothing can ever write to them)."""

    def __init__(self, meta: Metainfo, save_path: Path, pieces: PieceMap | None = None, *,
                 writable: bool = True, max_open_files: int = OPEN_FILES) -> None:
        self.meta = meta
        self.save_path = Path(save_path)
        self.pieces = pieces or PieceMap(meta)
        self.writable = writable
        self.max_open_files = max(1, max_open_files)
        self._handles: OrderedDict[int, _Handle] = OrderedDict()  # file index -> handle, least recently used first
        self._lock = threading.Lock()
        self._root: Path | None = None  # the save folder's real path, resolved at the first open

    def path_of(self, file_index: int) -> Path:
        return self.save_path.joinpath(*self.meta.files[file_index].path)

    def _acquire(self, file_index: int, create: bool) -> _Handle | None:
        """The file's open handle, referenced for the caller (pair with `_release`); None when the file is
        missing and `create` is false."""
        with self._lock:
            handle = self._handles.get(file_index)
            if handle is not None:
                handle.users += 1
                self._handles.move_to_end(file_index)
                return handle
        fd = self._open(file_index, create)  # outside the lock: an open may wait on the disk
        if fd is None:
            return None
        evicted = []
        with self._lock:
            handle = self._handles.get(file_index)
            if handle is not None:  # another thread opened it meanwhile: use that one
                handle.users += 1
                self._handles.move_to_end(file_index)
                evicted.append(fd)
            else:
                handle = self._handles[file_index] = _Handle(fd)
                if len(self._handles) > self.max_open_files:
                    for index, old in list(self._handles.items()):
                        if old.users == 0:
                            del self._handles[index]
                            old.cached = False
                            evicted.append(old.fd)
                            if len(self._handles) <= self.max_open_files:
                                break
        for old_fd in evicted:
            os.close(old_fd)
        return handle

    def _release(self, handle: _Handle) -> None:
        with self._lock:
            handle.users -= 1
            last = handle.users == 0 and not handle.cached
        if last:
            os.close(handle.fd)

    def _open(self, file_index: int, create: bool) -> int | None:
        path = self.path_of(file_index)
        if create and not self.writable:
            raise StorageError(f"{path}: not written (these are the user's own files, only seeded)")
        self._check_inside(path)
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            else:
                fd = os.open(path, os.O_RDWR if self.writable else os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror}") from exc
        return fd

    def _check_inside(self, path: Path) -> None:
        """Refuse a file whose real path leaves the save folder. The metainfo parser already refuses `..` and
        absolute names, so only a symbolic link can lead out: one placed in the save folder (by someone else on
        this machine, or by the user for other reasons) would otherwise let a torrent's file names write, cut
        or seed files anywhere the node may. Checked at each open (descriptors are cached, so opens are rare);
        before any folder is made, so nothing is created through such a link."""
        root = self._root
        if root is None:
            root = self._root = self.save_path.resolve()
        try:
            real = path.resolve()
        except (OSError, RuntimeError) as exc:  # a link loop
            raise StorageError(f"cannot open {path}: {exc}") from exc
        if not real.is_relative_to(root):
            raise StorageError(f"{path} leads out of {self.save_path} through a symbolic link (to {real}): "
                               "not opened")

    def fit_files(self, files: Iterable[int], *, grow: bool = True) -> None:
        """Give each of these files exactly its length in the torrent: bytes past it are cut (they are not the
        torrent's, and a finished file must be exactly its bytes); with `grow`, a missing file is created and a
        short one extended, sparse (existing data is left alone)."""
        for index in files:
            f = self.meta.files[index]
            if f.is_pad:
                continue
            handle = self._acquire(index, create=grow)
            if handle is None:
                continue
            try:
                size = os.fstat(handle.fd).st_size
                if size > f.length or (grow and size < f.length):
                    os.ftruncate(handle.fd, f.length)
            except OSError as exc:
                raise StorageError(f"cannot size {self.path_of(index)}: {exc.strerror}") from exc
            finally:
                self._release(handle)

    def holds_data(self, file_index: int) -> bool:
        """Whether the file holds a byte that is not zero (a preallocated file, sparse or zero-filled, holds none).
        The holes of a sparse file are skipped unread (SEEK_DATA); data is compared a megabyte at a time."""
        path = self.path_of(file_index)
        self._check_inside(path)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror}") from exc
        try:
            size = os.fstat(fd).st_size
            pos = 0
            while pos < size:
                try:
                    pos = os.lseek(fd, pos, os.SEEK_DATA)
                    end = os.lseek(fd, pos, os.SEEK_HOLE)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # no data after pos: only a hole is left
                        return False
                    end = size  # the file system cannot tell holes: read it all
                while pos < end:
                    chunk = os.pread(fd, min(1 << 20, end - pos), pos)
                    if not chunk:
                        return False
                    if chunk.count(0) != len(chunk):
                        return True
                    pos += len(chunk)
            return False
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def write_piece(self, index: int, data: bytes | bytearray | memoryview, begin: int = 0) -> None:
        view = memoryview(data)
        pos = 0
        for seg in self.pieces.segments(index, begin, len(view)):
            if seg.file_index >= 0:
                handle = self._acquire(seg.file_index, create=True)
                assert handle is not None
                chunk = view[pos : pos + seg.length]
                try:
                    written = os.pwrite(handle.fd, chunk, seg.file_offset)
                    while written < seg.length:
                        written += os.pwrite(handle.fd, chunk[written:], seg.file_offset + written)
                except OSError as exc:
                    raise StorageError(f"cannot write {self.path_of(seg.file_index)}: {exc.strerror}") from exc
                finally:
                    self._release(handle)
            pos += seg.length

    def read(self, index: int, begin: int = 0, length: int | None = None) -> bytes | None:
        """Bytes of a piece (zeros for pad files), or None when a file is missing or short."""
        if length is None:
            length = self.pieces.piece_size(index) - begin
        segments = list(self.pieces.segments(index, begin, length))
        if len(segments) == 1 and segments[0].file_index >= 0:  # the common case: one read, no copy
            seg = segments[0]
            handle = self._acquire(seg.file_index, create=False)
            if handle is None:
                return None
            try:
                data = os.pread(handle.fd, length, seg.file_offset)
            except OSError as exc:
                raise StorageError(f"cannot read {self.path_of(seg.file_index)}: {exc.strerror}") from exc
            finally:
                self._release(handle)
            return data if len(data) == length else None
        out = bytearray(length)
        view = memoryview(out)
        pos = 0
        for seg in segments:
            if seg.file_index >= 0:
                handle = self._acquire(seg.file_index, create=False)
                if handle is None:
                    return None
                try:
                    n = os.preadv(handle.fd, [view[pos : pos + seg.length]], seg.file_offset)
                except OSError as exc:
                    raise StorageError(f"cannot read {self.path_of(seg.file_index)}: {exc.strerror}") from exc
                finally:
                    self._release(handle)
                if n < seg.length:
                    return None
            pos += seg.length
        return bytes(out)

    def file_state(self) -> list[tuple[int, int]]:
        """(size, mtime_ns) of each file (-1, -1 when missing): resume data is trusted only if unchanged."""
        state = []
        for index, f in enumerate(self.meta.files):
            if f.is_pad:
                state.append((0, 0))
                continue
            try:
                st = os.stat(self.path_of(index))
                state.append((st.st_size, st.st_mtime_ns))
            except OSError:
                state.append((-1, -1))
        return state

    def sync(self) -> None:
        """Flush every written file to the disk: a write-back failure (disk full, I/O error) is an error here.
        (A file evicted from the cache was flushed by its close; a write-back error there is lost, as with
        libtorrent's file pool: data is verified before it counts, so such a piece is fetched again.)"""
        with self._lock:
            held = list(self._handles.items())
            for _, handle in held:
                handle.users += 1
        try:
            for index, handle in held:
                try:
                    os.fsync(handle.fd)
                except OSError as exc:
                    raise StorageError(f"cannot write {self.path_of(index)}: {exc.strerror}") from exc
        finally:
            for _, handle in held:
                self._release(handle)

    def delete_files(self) -> None:
        """Delete the torrent's files, then the folders they leave empty (never the save path itself, nor a
        folder still holding something that is not ours)."""
        self.close()
        folders: set[Path] = set()
        for index, f in enumerate(self.meta.files):
            if not f.is_pad:
                path = self.path_of(index)
                try:
                    self._check_inside(path.parent)  # a link to a folder elsewhere: what it holds is not ours
                except StorageError:
                    continue
                path.unlink(missing_ok=True)  # (a link in the file's own place is removed, not what it points to)
                folders.update(p for p in path.parents if self.save_path in p.parents)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty, or already gone
                folder.rmdir()

    def close(self) -> None:
        """Close every cached descriptor; one a thread is using right now is closed when that thread is done."""
        with self._lock:
            handles = list(self._handles.values())
            self._handles.clear()
            idle = []
            for handle in handles:
                handle.cached = False
                if handle.users == 0:
                    idle.append(handle.fd)
        for fd in idle:
            os.close(fd)
