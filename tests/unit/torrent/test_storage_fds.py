"""Storage's file-descriptor cache under the worker threads: several threads reading and writing the same torrent at
once (the disk pool) must never leak a descriptor, close one another thread is using, nor read another file's bytes
through a reused descriptor number."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

from peerloom.torrent.create import create
from peerloom.torrent.storage import Storage

PIECE = 16384
FILES = 12
THREADS = 8


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def one_piece_files(tmp_path: Path, files: int = FILES) -> tuple[Storage, dict[int, bytes]]:
    """A v2 torrent of one-piece files, each of its own byte: piece i is file i, so a read through the wrong
    descriptor shows."""
    top = tmp_path / "set"
    top.mkdir()
    for i in range(files):
        (top / f"f{i:02}").write_bytes(bytes([i + 1]) * PIECE)
    meta = create(top, version="v2", piece_length=PIECE)
    storage = Storage(meta, tmp_path)
    expected = {i: storage.path_of(i).read_bytes() for i in range(files)}
    storage.close()
    return storage, expected


def run_threads(target, count: int = THREADS) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:  # collected and reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_threads_opening_the_same_files_at_once_leak_no_descriptor(tmp_path: Path) -> None:
    storage, expected = one_piece_files(tmp_path)
    before = open_fds()
    for _ in range(30):
        fresh = Storage(storage.meta, tmp_path)
        barrier = threading.Barrier(THREADS)

        def read_all(n: int, fresh: Storage = fresh, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()  # every thread misses the cache for the same file at the same moment
            for i in range(FILES):
                assert fresh.read(i) == expected[i]

        assert run_threads(read_all) == []
        fresh.close()
    assert open_fds() == before


def test_close_while_other_threads_read_breaks_no_read(tmp_path: Path) -> None:
    """Stopping a torrent closes its storage while a disk thread may still be serving a request: that read must
    finish on its own descriptor (not fail with EBADF, nor read a file opened meanwhile under the same number)."""
    storage, expected = one_piece_files(tmp_path)
    shared = Storage(storage.meta, tmp_path)
    before = open_fds()
    stop = threading.Event()

    def work(n: int) -> None:
        rng = random.Random(n)
        if n == 0:
            while not stop.is_set():
                shared.close()
            return
        try:
            for _ in range(1500):
                i = rng.randrange(FILES)
                assert shared.read(i) == expected[i]
        finally:
            if n == 1:
                stop.set()

    assert run_threads(work) == []
    shared.close()
    assert open_fds() <= before


def test_a_small_cache_keeps_few_files_open_and_reads_the_right_bytes(tmp_path: Path) -> None:
    files = 48
    storage, expected = one_piece_files(tmp_path, files)
    small = Storage(storage.meta, tmp_path, max_open_files=3)
    before = open_fds()
    most = 0
    stop = threading.Event()

    def work(n: int) -> None:
        nonlocal most
        if n == 0:  # samples how many descriptors are open while the others work
            while not stop.is_set():
                most = max(most, open_fds() - before)
            return
        rng = random.Random(n)
        try:
            for _ in range(1500):
                i = rng.randrange(files)
                if rng.random() < 0.2:
                    small.write_piece(i, expected[i])
                else:
                    assert small.read(i) == expected[i]
            small.sync()
        finally:
            if n == 1:
                stop.set()

    assert run_threads(work) == []
    # Descriptors in use are never closed under their user, so the bound is soft: each worker may hold one in use
    # beyond the cache's three, one it has just opened (outside the lock) and not yet cached, and one it evicted and
    # is about to close (after the lock); the sampler's own listing of /proc/self/fd holds one. Far below the 48
    # files the workers touch. (CI under load saw 20 open at once, over a bound that forgot the evicted ones.)
    workers = THREADS - 1
    assert most <= 3 + 3 * workers + 1
    small.close()
    assert open_fds() == before
    assert [small.read(i) for i in range(files)] == [expected[i] for i in range(files)]
    small.close()
