"""The secure connection's BufferedProtocol path without sockets: two Connections wired through fake transports,
bytes delivered through get_buffer/buffer_updated in any split (one byte at a time included), payloads lent to
streams from pooled plaintext buffers, the readers' turn when all are lent, the copy after it, and trimming."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from peerloom.identity import Identity
from peerloom.net import connection as connection_module
from peerloom.net.buffers import GRAIN
from peerloom.net.connection import Connection
from peerloom.net.stream import Stream


class FakeTransport:
    """Takes what a Connection writes (copying it, as a socket does once it has sent it) and delivers what the
    other side wrote in pieces of the given sizes, stopping while the connection has paused reading."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.inbound = bytearray()
        self.reading = True
        self.pauses = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed
        self.sent += data

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 4001), "sockname": ("127.0.0.1", 4002)}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def deliver(self, conn: Connection, sizes: itertools.cycle) -> bool:
        """Hand inbound bytes to conn while it reads; True if any moved."""
        moved = False
        while self.inbound and self.reading and not conn.closed:
            room = conn.get_buffer(-1)
            assert len(room) > 0
            n = min(next(sizes), len(room), len(self.inbound))
            room[:n] = self.inbound[:n]
            del room
            del self.inbound[:n]
            conn.buffer_updated(n)
            moved = True
        return moved


class Link:
    """A dialer `a` and a listener `b`, each with its fake transport; `b` keeps the streams `a` opens."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = itertools.cycle(sizes)
        self.accepted: list[Stream] = []
        self.a = Connection(Identity.generate(), initiator=True)
        self.b = Connection(Identity.generate(), initiator=False, on_stream=self.accepted.append)
        self.ta, self.tb = FakeTransport(), FakeTransport()
        self.a.connection_made(self.ta)
        self.b.connection_made(self.tb)

    async def pump(self, *, turns: int = 5000) -> None:
        """Move bytes both ways (letting scheduled flushes and tasks run) until nothing moves for a few turns."""
        quiet = 0
        for _ in range(turns):
            await asyncio.sleep(0)
            self.tb.inbound += self.ta.sent
            self.ta.inbound += self.tb.sent
            self.ta.sent.clear()
            self.tb.sent.clear()
            moved = self.tb.deliver(self.b, self.sizes) | self.ta.deliver(self.a, self.sizes)
            quiet = 0 if moved or self.ta.inbound or self.tb.inbound else quiet + 1
            if quiet > 3:
                return
        raise AssertionError("the connections kept talking")

    async def open(self) -> None:
        await self.pump()
        assert self.a.ready.done() and self.b.ready.done()
        assert self.a.remote_peer == self.b.identity.peer_id

    def close(self) -> None:
        self.a.close()
        self.b.close()


async def read_all(stream: Stream) -> bytes:
    data = bytearray()
    while chunk := await stream.read():
        assert type(chunk) is bytes
        data += chunk
    return bytes(data)


@pytest.mark.parametrize(
    ("sizes", "lengths"),
    [
        ([1], [1, 30, 300]),
        ([2, 3, 1, 18, 7], [0, 1, 12, 700, 5000, 65519, 65520]),
        ([65535, 1, 65537, 4096, 300_000, 17], [0, 1, 12, 65520, 200_000, 3 << 20]),
    ],
)
async def test_the_upgrade_and_streams_work_with_reads_split_anywhere(sizes, lengths):
    """One byte at a time is every split: inside a length prefix, a tag, a yamux header, across frames."""
    link = Link(sizes)
    await link.open()
    rng = random.Random(len(sizes))
    messages = [rng.randbytes(n) for n in lengths]
    stream = link.a.open_stream()

    async def send() -> None:
        for message in messages:
            await stream.write(message)
        await stream.close()

    writer = asyncio.ensure_future(send())
    await stream.write(b"")
    while not link.accepted:
        await link.pump()
    reader = asyncio.ensure_future(read_all(link.accepted[0]))
    while not (writer.done() and reader.done()):
        await link.pump()
    await writer
    assert await reader == b"".join(messages)
    await link.accepted[0].write(b"bye")
    await link.accepted[0].close()
    await link.pump()
    assert await read_all(stream) == b"bye"
    link.close()


async def test_payloads_are_lent_then_copied_when_every_lent_buffer_is_held(monkeypatch):
    """Unread data keeps its plaintext buffer: once all are held, reading pauses for a turn; if the readers did not
    free one, the next payloads are copied, and reading resumes. Everything arrives intact either way."""
    monkeypatch.setattr(connection_module, "LEND_FROM", 1)  # lend whatever the size of the read
    link = Link([1 << 20])
    await link.open()
    count = connection_module.LENT_BUFFERS + 2
    payloads = [random.Random(i).randbytes(100_000) for i in range(count)]
    streams = [link.a.open_stream() for _ in range(count)]
    for stream, payload in zip(streams, payloads, strict=True):
        await stream.write(payload)  # one stream per batch: each batch lands in a plaintext buffer of its own
        await link.pump()
    accepted = {s.id: s for s in link.accepted}
    kinds = [type(accepted[s.id]._chunks[0].obj) for s in streams]
    lent = connection_module.LENT_BUFFERS
    assert kinds[:lent] == [bytearray] * lent  # views of pooled plaintext buffers
    assert kinds[lent:] == [bytes] * 2  # copied: every buffer was held by unread data
    assert link.tb.pauses == 2 and link.tb.reading  # a readers' turn before each copy, then reading went on
    for stream, payload in zip(streams, payloads, strict=True):
        await stream.close()
        await link.pump()
        assert await read_all(accepted[stream.id]) == payload
    assert link.b._lent_buffers.take(1) is not None  # read out: the buffers are free again
    link.close()


async def test_readers_that_keep_up_free_the_lent_buffers_so_nothing_is_copied(monkeypatch):
    """Several reads in one loop turn (libuv reads until the socket is empty) outrun the readers: reading pauses
    for a turn, the readers catch up, and the waiting bytes are lent, not copied."""
    monkeypatch.setattr(connection_module, "LEND_FROM", 1)
    link = Link([1 << 20])
    await link.open()
    stream = link.a.open_stream()
    await stream.write(b"x")
    await link.pump()
    (accepted,) = link.accepted
    reader = asyncio.ensure_future(read_all(accepted))
    await link.pump()  # the reader has taken the "x" and waits
    payload = random.Random(7).randbytes(200_000)  # within the initial window: no window update needed
    for i in range(0, len(payload), 40_000):  # batches read one after the other, before the reader runs again
        await stream.write(payload[i : i + 40_000])  # room in the send queue: this does not wait
        link.a._flush()
        link.tb.inbound += link.ta.sent
        link.ta.sent.clear()
        link.tb.deliver(link.b, link.sizes)
    assert link.tb.pauses == 1 and not link.tb.reading
    await stream.close()
    await link.pump()
    assert await reader == b"x" + payload
    assert link.tb.reading
    assert len(link.b._plaintext) == 0  # no payload was copied
    link.close()


async def test_small_reads_are_copied_out_and_large_ones_lent(monkeypatch):
    monkeypatch.setattr(connection_module, "READ_BUFFER_MIN", 256 * 1024)  # reads as large as a busy link's
    link = Link([1 << 20])
    await link.open()
    stream = link.a.open_stream()
    await stream.write(b"small")
    await link.pump()
    (accepted,) = link.accepted
    assert type(accepted._chunks[0].obj) is bytes  # a read under LEND_FROM: yamux copied the payload
    await stream.write(bytes(200_000))
    await stream.close()
    await link.pump()
    assert type(accepted._chunks[-1].obj) is bytearray  # a view of a lent plaintext buffer
    assert await read_all(accepted) == b"small" + bytes(200_000)
    link.close()


async def test_quiet_connections_give_their_buffers_back():
    link = Link([1 << 20])
    await link.open()
    stream = link.a.open_stream()
    await stream.write(b"go")
    while not link.accepted:
        await link.pump()
    reader = asyncio.ensure_future(read_all(link.accepted[0]))
    writer = asyncio.ensure_future(stream.write(bytes(4 << 20)))
    while not writer.done():
        await link.pump()
    await stream.close()
    await link.pump()
    assert len(await reader) == 2 + (4 << 20)
    assert link.b._received.capacity == connection_module.READ_BUFFER_MAX
    assert len(link.a._send_buffers) > 0 and len(link.b._lent_buffers) > 0
    for _ in range(2):  # the first ping interval saw traffic; the second is quiet
        link.a._ping()
        link.b._ping()
        await link.pump()
    assert link.b._received.capacity == connection_module.READ_BUFFER_MIN
    assert len(link.a._send_buffers) == 0  # the pings' small writes need no pooled buffer
    assert sum(map(len, link.b._lent_buffers._buffers)) <= GRAIN  # one small buffer for the pings' replies
    link.close()


async def test_a_corrupted_frame_closes_the_connection():
    link = Link([1 << 20])
    await link.open()
    stream = link.a.open_stream()
    await stream.write(bytes(100_000))
    await asyncio.sleep(0)
    wire = bytearray(link.ta.sent)
    link.ta.sent.clear()
    wire[5000] ^= 1
    link.tb.inbound += wire
    link.tb.deliver(link.b, link.sizes)
    assert link.b.closed and "authentication" in link.b.close_reason
    link.close()
