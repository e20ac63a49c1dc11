"""The reused buffers of the secure connection: a BufferedProtocol's receive buffer (growth, compaction, trimming)
and the pool that hands a buffer out again only once nothing else refers to it."""

from __future__ import annotations

import gc

import pytest

from peerloom.net.buffers import GRAIN, BufferPool, ReceiveBuffer


def read(buffer: ReceiveBuffer, data: bytes) -> int:
    """One socket read of up to len(data) bytes into the buffer; how many were taken."""
    room = buffer.get_buffer()
    assert len(room) > 0
    n = min(len(room), len(data))
    room[:n] = data[:n]
    buffer.buffer_updated(n)
    return n


def test_bytes_stay_until_consumed_and_the_buffer_is_reused():
    buffer = ReceiveBuffer(min_size=64, max_size=256)
    assert read(buffer, b"hello world") == 11
    assert buffer.unread() == b"hello world"
    buffer.consume(6)
    assert buffer.unread() == b"world" and len(buffer) == 5
    buffer.consume(5)
    assert len(buffer) == 0 and buffer.capacity == 64  # nothing grew: no read filled what it was offered
    read(buffer, b"again")
    assert buffer.unread() == b"again"
    with pytest.raises(ValueError):
        buffer.consume(6)
    buffer.get_buffer()
    with pytest.raises(ValueError):
        buffer.buffer_updated(10_000)


def test_a_read_that_fills_the_buffer_doubles_it_up_to_the_maximum():
    buffer = ReceiveBuffer(min_size=64, max_size=256)
    capacities = []
    for _ in range(5):
        taken = read(buffer, bytes(1000))
        capacities.append(buffer.capacity)
        buffer.consume(taken)
    assert capacities == [64, 128, 256, 256, 256]


def test_unread_bytes_move_to_the_front_when_they_leave_too_little_room():
    buffer = ReceiveBuffer(min_size=100, max_size=100)
    data = bytes(range(100))
    read(buffer, data[:60])
    buffer.consume(50)  # 10 unread bytes at offset 50; 40 free: less than half
    room = buffer.get_buffer()
    assert len(room) == 90 and buffer.unread() == data[50:60]
    room[:5] = b"ABCDE"
    buffer.buffer_updated(5)
    assert buffer.unread() == data[50:60] + b"ABCDE"


def test_a_message_longer_than_the_buffer_makes_room_for_itself():
    """A partial message fills every read until the buffer has doubled enough to hold it; beyond max_size too."""
    buffer = ReceiveBuffer(min_size=16, max_size=64)
    message = bytes(range(200))
    pos = 0
    while pos < len(message):
        pos += read(buffer, message[pos:])
    assert buffer.unread() == message and buffer.capacity >= 200


def test_trim_shrinks_a_buffer_no_read_filled_since_the_last_trim():
    buffer = ReceiveBuffer(min_size=64, max_size=1024)
    for _ in range(5):
        buffer.consume(read(buffer, bytes(1000)))
    assert buffer.capacity == 1024
    buffer.trim()  # reads filled it since the buffer was made: it stays
    assert buffer.capacity == 1024
    read(buffer, b"partial message")  # a small read, which does not fill the buffer
    buffer.trim()
    assert buffer.capacity == 64 and buffer.unread() == b"partial message"


def test_append_puts_bytes_after_those_unread_and_grows_if_needed():
    buffer = ReceiveBuffer(min_size=16, max_size=16)
    read(buffer, b"0123456789")
    buffer.append(b"abcdefghij")
    assert buffer.unread() == b"0123456789abcdefghij"
    buffer.clear()
    assert len(buffer) == 0
    with pytest.raises(ValueError):
        ReceiveBuffer(min_size=0)


def test_a_pooled_buffer_is_handed_out_again_only_once_nothing_refers_to_it():
    pool = BufferPool(max_buffers=2)
    first = pool.take(1000)
    assert first is not None and len(first) == 1000  # small requests get what they ask for
    first_id = id(first)
    del first
    again = pool.take(1000)
    assert id(again) == first_id  # free again: the same buffer
    held = memoryview(again)[:10]  # what a transport or a stream keeps: a view
    del again
    second = pool.take(1000)
    assert second is not None and id(second) != first_id
    del second
    assert pool.take(1000) is not None  # the second one is free again; the first is still held
    assert len(pool) == 2
    sliced = held[2:]  # views of views hold the buffer too
    del held
    third = pool.take(1000)
    assert third is not None and id(third) != first_id
    other = pool.take(1000)
    assert other is None  # both pooled buffers are in use (one by `sliced`, one by `third`) and the pool is full
    fresh = pool.get(GRAIN + 1)
    assert len(fresh) == 2 * GRAIN and len(pool) == 2  # a buffer of its own (in whole GRAINs), not pooled
    del sliced
    gc.collect()
    assert id(pool.take(1000)) == first_id


def test_a_free_buffer_too_small_for_a_request_is_replaced_by_a_larger_one():
    pool = BufferPool(max_buffers=1)
    small = pool.take(10)
    assert small is not None
    del small
    large = pool.take(GRAIN + 1)
    assert large is not None and len(large) == 2 * GRAIN and len(pool) == 1
    del large
    assert len(pool.take(10)) == 2 * GRAIN  # the larger one serves small requests too


def test_trim_lets_go_of_buffers_larger_than_the_recent_requests():
    pool = BufferPool(max_buffers=4)
    big, small = pool.get(5 * GRAIN - 1), pool.get(100)
    assert (len(big), len(small)) == (5 * GRAIN, 100)
    del big, small
    pool.trim()  # both were needed since the pool began: kept
    assert len(pool) == 2
    pool.get(100)
    pool.trim()  # only small requests lately: the large buffer goes
    assert len(pool) == 1
    pool.get(GRAIN)
    pool.trim(needed=0)  # what the owner knows it will need from now on
    assert len(pool) == 0
    pool.trim()  # no requests at all
    assert len(pool) == 0
