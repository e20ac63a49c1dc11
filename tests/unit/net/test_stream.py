"""Stream.read: received chunks of bytes are returned without a copy, lent views are copied out at most 64 KiB at a
time, small chunks are joined, and every byte read is credited back exactly once."""

from __future__ import annotations

from peerloom.net.stream import COPY_LIMIT, Stream


class Credits:
    """What Stream needs of its connection for reading: the credit calls."""

    remote_peer = None

    def __init__(self) -> None:
        self.credited = 0

    def consumed(self, stream_id: int, size: int) -> None:
        self.credited += size


def stream() -> tuple[Stream, Credits]:
    connection = Credits()
    return Stream(connection, 1), connection  # type: ignore[arg-type]


async def test_a_whole_chunk_of_bytes_is_returned_as_it_is():
    s, credits = stream()
    first, second = bytes(65524), b"y" * 65524
    s.feed(first)
    s.feed(second)
    assert await s.read() is first
    assert await s.read() is second
    assert credits.credited == 2 * 65524


async def test_lent_views_are_copied_out_at_most_64_kib_at_a_time():
    s, credits = stream()
    lent = bytearray(b"abc" * 100_000)
    s.feed(memoryview(lent)[:150_000])
    s.feed(memoryview(lent)[150_000:])
    pieces = []
    while sum(map(len, pieces)) < len(lent):
        pieces.append(await s.read())
    assert all(type(p) is bytes and len(p) <= COPY_LIMIT for p in pieces)
    lent[:] = bytes(len(lent))  # the connection reuses its buffer: what was read must not change
    assert b"".join(pieces) == b"abc" * 100_000
    assert credits.credited == 300_000


async def test_small_chunks_are_joined_and_sizes_are_respected():
    s, credits = stream()
    for i in range(100):
        s.feed(bytes([i]) * 1000)
    expected = b"".join(bytes([i]) * 1000 for i in range(100))
    first = await s.read()
    assert first == expected[:COPY_LIMIT]  # joined, the last chunk cut where 64 KiB are reached
    assert await s.read(1500) == expected[COPY_LIMIT : COPY_LIMIT + 1500]
    assert await s.read() == expected[COPY_LIMIT + 1500 :]
    assert credits.credited == 100_000
    s.feed_eof()
    assert await s.read() == b""


async def test_pushed_back_bytes_come_first_and_are_not_credited_twice():
    s, credits = stream()
    s.feed(b"payload")
    s.unread(b"negotiation rest:")
    assert await s.readexactly(24) == b"negotiation rest:payload"
    assert credits.credited == len(b"payload")


def test_the_connection_offers_every_member_a_stream_needs_of_its_owner():
    """The seam is public both ways: Connection implements StreamOwner with the same signatures."""
    import inspect

    from peerloom.net.connection import Connection
    from peerloom.net.stream import StreamOwner

    for name, member in vars(StreamOwner).items():
        if name.startswith("_"):
            continue
        assert callable(member)
        ours = getattr(Connection, name)
        assert inspect.signature(ours).parameters.keys() == inspect.signature(member).parameters.keys(), name
    for name in StreamOwner.__annotations__:
        assert name in Connection.__init__.__code__.co_names, name  # set in the constructor
