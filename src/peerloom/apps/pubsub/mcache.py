"""The message cache of gossipsub v1.0 ("Message Cache"): the messages of the last `mcache_len` heartbeats, served
to IWANT requests, and the ids of the last `mcache_gossip` heartbeats, announced in IHAVE gossip.

Each heartbeat `shift`s the windows; entries of the window that falls off are forgotten. Ids are kept per topic in
each window, so gossip for a topic costs only that topic's ids. The cache also counts how often each peer asked for
each message, to cap retransmissions (v1.1 "Spam Protection Measures": GossipRetransmission).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from peerloom.apps.pubsub.rpc import Message
from peerloom.identity import PeerId


@dataclass(slots=True)
class CachedMessage:
    """A message, its encoding (sent as is to whoever asks) and the IWANT count of each asking peer."""

    message: Message
    encoded: bytes
    asked: dict[PeerId, int] = field(default_factory=dict)


class MessageCache:
    """Messages by id over a sliding window of heartbeats."""

    def __init__(self, history: int, gossip: int) -> None:
        if not 0 < gossip <= history:
            raise ValueError("the message cache needs 0 < gossip <= history")
        self._gossip = gossip
        self._entries: dict[bytes, CachedMessage] = {}
        self._windows: deque[dict[str, list[bytes]]] = deque([{}], maxlen=history)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self._entries

    def put(self, msg_id: bytes, message: Message, encoded: bytes) -> None:
        """Keep a message in the current window (a message already cached stays where it is)."""
        if msg_id in self._entries:
            return
        self._entries[msg_id] = CachedMessage(message, encoded)
        self._windows[0].setdefault(message.topic, []).append(msg_id)

    def get(self, msg_id: bytes) -> CachedMessage | None:
        return self._entries.get(msg_id)

    def ask(self, msg_id: bytes, peer: PeerId) -> tuple[CachedMessage | None, int]:
        """The cached message and how many times peer has now asked for it (this time included)."""
        entry = self._entries.get(msg_id)
        if entry is None:
            return None, 0
        count = entry.asked.get(peer, 0) + 1
        entry.asked[peer] = count
        return entry, count

    def gossip_ids(self, topic: str) -> list[bytes]:
        """The ids of the topic's messages in the gossip windows, newest window first."""
        ids: list[bytes] = []
        for window in list(self._windows)[: self._gossip]:
            ids += window.get(topic, ())
        return ids

    def shift(self) -> None:
        """Open a new window; the oldest one, when the history is full, is forgotten with its messages."""
        if len(self._windows) == self._windows.maxlen:
            for ids in self._windows[-1].values():
                for msg_id in ids:
                    self._entries.pop(msg_id, None)
        self._windows.appendleft({})
