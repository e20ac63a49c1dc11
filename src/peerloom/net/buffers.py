"""Reused buffers for the bulk path of a secure connection: the one a BufferedProtocol reads into, and the ones
encrypted output is written from.

A fresh buffer of more than 128 KiB is a fresh mmap for glibc's allocator: filling it costs a page fault per
4 KiB page, and at a megabyte per write or read that is a quarter of the CPU time of a transfer. Reusing a few
buffers per connection avoids it; both kinds grow with the traffic and shrink back when it stops, so an idle
connection holds little.
"""

from __future__ import annotations

import sys

GRAIN = 64 * 1024  # pooled send buffers are sized in multiples of this


class ReceiveBuffer:
    """One reused bytearray that a BufferedProtocol reads into (`get_buffer`, then `buffer_updated`). Received
    bytes stay until the parser `consume`s them, so a message split across reads is parsed in place once whole.

    Before a read, unread bytes are moved to the front when they leave less than half of the buffer free. After a
    read that filled all it was offered, the buffer doubles (up to max_size): a busy connection reads in large
    pieces, and a message longer than the buffer makes room for itself the same way. `trim()`, called now and
    then, shrinks it back to min_size when no read filled it since the last call.
    """

    def __init__(self, min_size: int = 16 * 1024, max_size: int = 1024 * 1024) -> None:
        if not 0 < min_size <= max_size:
            raise ValueError("ReceiveBuffer needs 0 < min_size <= max_size")
        self._min = min_size
        self._max = max_size
        self._buffer = bytearray(min_size)
        self._view = memoryview(self._buffer)
        self._start = self._end = 0
        self._offered = 0
        self._filled = False  # the last read filled its offer: grow before the next one
        self._busy = False  # some read filled its offer since the last trim()

    def __len__(self) -> int:
        """Bytes received and not yet consumed."""
        return self._end - self._start

    @property
    def capacity(self) -> int:
        return len(self._buffer)

    def get_buffer(self) -> memoryview:
        """Room for the next read, never empty; write into it, then call `buffer_updated`."""
        size = len(self._buffer)
        if self._filled and size < self._max:
            self._resize(min(2 * size, self._max))
        elif self._start and size - self._end < size // 2:
            self._resize(size)
        if self._end == len(self._buffer):  # one unfinished message fills even max_size
            self._resize(2 * len(self._buffer))
        self._filled = False
        self._offered = len(self._buffer) - self._end
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        """`nbytes` were written at the start of the last `get_buffer` view."""
        if not 0 <= nbytes <= self._offered:
            raise ValueError(f"{nbytes} bytes read into a buffer of {self._offered}")
        self._end += nbytes
        self._offered = 0
        if nbytes and self._end == len(self._buffer):
            self._filled = self._busy = True

    def unread(self) -> memoryview:
        """A view of the bytes not yet consumed (valid until the next `get_buffer`, `append` or `trim`)."""
        return self._view[self._start : self._end]

    def consume(self, nbytes: int) -> None:
        """The first `nbytes` unread bytes are used up."""
        if not 0 <= nbytes <= len(self):
            raise ValueError(f"consuming {nbytes} of {len(self)} unread bytes")
        self._start += nbytes
        if self._start == self._end:
            self._start = self._end = 0

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes that arrived by another way (before the reads), after those unread."""
        size = memoryview(data).nbytes
        if len(self._buffer) - self._end < size:
            self._resize(max(len(self._buffer), len(self) + size))
        self._buffer[self._end : self._end + size] = data
        self._end += size

    def clear(self) -> None:
        self._start = self._end = 0

    def trim(self) -> None:
        """Shrink back to min_size (keeping the unread bytes) unless a read filled the buffer since the last call."""
        if not self._busy and len(self._buffer) > self._min:
            self._resize(max(self._min, len(self)))
        self._busy = False

    def _resize(self, size: int) -> None:
        """Move the unread bytes to the front of a buffer of `size` bytes (the same one when the size stays)."""
        unread = len(self)
        if size == len(self._buffer):
            self._buffer[:unread] = bytes(self._view[self._start : self._end])  # the ranges may overlap
        else:
            buffer = bytearray(size)
            buffer[:unread] = self._view[self._start : self._end]
            self._buffer = buffer
            self._view = memoryview(buffer)
        self._start, self._end = 0, unread


def _refcount(buffers: list[bytearray], index: int) -> int:
    return sys.getrefcount(buffers[index])


# The count of a buffer that nothing but its list holds, measured through the very call BufferPool makes, so
# what the interpreter adds for the call itself cancels out.
_UNSHARED = _refcount([bytearray()], 0)


class BufferPool:
    """Buffers reused once nothing but the pool refers to them any more.

    Output handed to `transport.write` may be kept until the socket takes it (uvloop holds a view of it), and
    received plaintext may be lent to streams as views until the application reads it: a pooled buffer is
    handed out again only when no such view (and no other reference) is left. Buffers beyond 64 KiB are sized in
    multiples of it, and replaced by larger ones as requests grow; at most `max_buffers` are pooled, and `trim()`
    lets go of those larger than any request since the last call.
    """

    def __init__(self, max_buffers: int) -> None:
        self._buffers: list[bytearray] = []
        self._max = max_buffers
        self._peak = 0  # the largest request since the last trim()

    def __len__(self) -> int:
        return len(self._buffers)

    def take(self, size: int) -> bytearray | None:
        """A pooled buffer of at least `size` bytes that nothing else refers to; None if all are in use."""
        self._peak = max(self._peak, size)
        buffers = self._buffers
        too_small = None
        for index in range(len(buffers)):
            if _refcount(buffers, index) == _UNSHARED:
                if len(buffers[index]) >= size:
                    return buffers[index]
                too_small = index
        if too_small is None and len(buffers) >= self._max:
            return None
        fresh = bytearray(_rounded(size))
        if too_small is not None:
            buffers[too_small] = fresh
        else:
            buffers.append(fresh)
        return fresh

    def get(self, size: int) -> bytearray:
        """What `take` gives, or a fresh buffer of the pool's sizing when all pooled ones are in use."""
        buffer = self.take(size)
        return buffer if buffer is not None else bytearray(_rounded(size))

    def trim(self, needed: int | None = None) -> None:
        """Let go of the buffers larger than `needed` bytes, by default the largest request since the last call
        (all of them, if there was none); a buffer still referred to elsewhere lives on until released."""
        keep = _rounded(self._peak if needed is None else needed)
        self._buffers = [buffer for buffer in self._buffers if len(buffer) <= keep]
        self._peak = 0


def _rounded(size: int) -> int:
    """Sizes of a GRAIN or more in whole GRAINs (so sizes that vary a little share buffers); smaller ones as asked."""
    return -(-size // GRAIN) * GRAIN if size > GRAIN else size
