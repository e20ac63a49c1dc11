"""Batched sends for uTP, sans-I/O: which datagrams can leave in one UDP GSO send (Linux's UDP_SEGMENT).

With generic segmentation offload a single `sendmsg` carries up to 64 datagrams laid end to end, and the kernel
cuts them apart again (in software on loopback, or in the NIC): one system call instead of one per datagram, the
main cost of sending full-size packets from Python. Every segment but the last must have the same size, and the
whole must fit one maximum UDP payload. A datagram that may travel in fragments (`Oversize`) always goes alone,
with the don't-fragment bit lifted for it. `gso_runs` says how to cut a connection's datagrams into such runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from peerloom.torrent.utp import Oversize

GSO_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS
GSO_BYTES = 65507  # the largest UDP payload over IPv4 (65535 less the IP and UDP headers): the whole of one send


def gso_runs(datagrams: Sequence[bytes], max_segments: int = GSO_SEGMENTS,
             max_bytes: int = GSO_BYTES) -> Iterator[tuple[int, int, int]]:
    """(start, end, segment size) for consecutive runs of `datagrams` that can go in one GSO send: runs of one
    datagram go alone (segment size 0). A run is datagrams of one size, optionally closed by one shorter datagram,
    at most `max_segments` of them and `max_bytes` in all; an `Oversize` datagram is always a run of its own."""
    n = len(datagrams)
    i = 0
    while i < n:
        first = datagrams[i]
        size = len(first)
        j = i + 1
        if type(first) is not Oversize and 0 < size <= max_bytes:
            limit = min(n, i + max_segments, i + max_bytes // size)
            while j < limit and type(datagrams[j]) is not Oversize and len(datagrams[j]) == size:
                j += 1
            if j < limit and type(datagrams[j]) is not Oversize and 0 < len(datagrams[j]) < size:
                j += 1  # a shorter datagram may close the run: the kernel's last segment
        yield i, j, size if j - i > 1 else 0
        i = j
