"""What the application reads of pub/sub: messages (`PubsubMessage`) through subscriptions (`Subscription`).

A subscription is a bounded queue the service fills without ever waiting: when the reader falls behind, new messages
are dropped and counted (`dropped`), so a slow application never holds up the router or the other subscribers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from peerloom.apps.pubsub.rpc import Message
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId


class PubSubStopped(PeerloomError):
    """The pub/sub service is not running (not started yet, or stopped)."""


@dataclass(frozen=True)
class PubsubMessage:
    """A message as the application sees it: signed by `from_peer`, relayed to us by `received_from`."""

    topic: str
    data: bytes
    from_peer: PeerId
    seqno: int
    msg_id: bytes
    received_from: PeerId

    @classmethod
    def of(cls, msg_id: bytes, message: Message, source: PeerId) -> PubsubMessage:
        author = PeerId(message.from_peer) if message.from_peer else source
        seqno = int.from_bytes(message.seqno, "big") if message.seqno else 0
        return cls(message.topic, message.data, author, seqno, msg_id, source)


class Subscription:
    """The messages of one topic for one reader: an async iterator over a bounded queue, and an async context
    manager that closes it. The topic is joined when the first subscription opens and left when the last closes."""

    def __init__(self, topic: str, on_close: Callable[[Subscription], None], maxsize: int) -> None:
        self.topic = topic
        self.maxsize = maxsize
        self.dropped = 0  # messages that found the queue full
        self._queue: deque[PubsubMessage] = deque()
        self._ready = asyncio.Event()
        self._on_close = on_close
        self.closed = False

    def offer(self, message: PubsubMessage) -> bool:
        """Queue `message` unless the queue is full (then drop it and count it); never blocks."""
        if self.closed:
            return False
        if len(self._queue) >= self.maxsize:
            self.dropped += 1
            return False
        self._queue.append(message)
        self._ready.set()
        return True

    async def get(self) -> PubsubMessage:
        """The next message; `PubSubStopped` once the subscription is closed and its queue empty."""
        while not self._queue:
            if self.closed:
                raise PubSubStopped(f"the subscription to {self.topic!r} is closed")
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def close(self) -> None:
        """Stop receiving; messages already queued can still be read. Idempotent."""
        if not self.closed:
            self.closed = True
            self._ready.set()
            self._on_close(self)

    def finish(self) -> None:
        """The service stopped: readers get what is queued, then the end (the topic goes with the router)."""
        self.closed = True
        self._ready.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> PubsubMessage:
        try:
            return await self.get()
        except PubSubStopped:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
