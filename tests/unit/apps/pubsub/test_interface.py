"""What the pub/sub CLI and API share (apps/pubsub/interface.py): the bounds on a topic and a message, the JSON of a
received message, and waiting for a topic's peers while asking the DHT again."""

from __future__ import annotations

import asyncio
import base64

import pytest

from peerloom.apps.pubsub import interface
from peerloom.apps.pubsub.interface import check_message, check_topic, message_json, wait_for_peers
from peerloom.apps.pubsub.service import PubsubMessage
from peerloom.errors import PeerloomError
from peerloom.identity import Identity


@pytest.mark.parametrize("topic", ["t", "t" * interface.MAX_TOPIC, "é" * (interface.MAX_TOPIC // 2), "a/b ✓"])
def test_topics_within_the_bound_are_taken(topic: str) -> None:
    assert check_topic(topic) == topic


@pytest.mark.parametrize(("topic", "says"), [
    ("", "empty"),
    ("t" * (interface.MAX_TOPIC + 1), "at most 1024"),
    ("é" * (interface.MAX_TOPIC // 2 + 1), "1026 bytes"),  # the bound is in bytes of UTF-8, not characters
    ("a\ud800", "not valid Unicode"),
])
def test_topics_out_of_bounds_are_refused(topic: str, says: str) -> None:
    with pytest.raises(PeerloomError, match=says):
        check_topic(topic)


def test_messages_are_bounded() -> None:
    assert check_message(b"x" * interface.MAX_MESSAGE)
    with pytest.raises(PeerloomError, match="at most"):
        check_message(b"x" * (interface.MAX_MESSAGE + 1))


@pytest.mark.parametrize(("data", "shown", "is_b64"), [
    ("hé\n".encode(), "hé\n", False),
    (b"\xff\x00", base64.b64encode(b"\xff\x00").decode(), True),
    (b"", "", False),
])
def test_message_json_gives_text_or_flagged_base64(data: bytes, shown: str, is_b64: bool) -> None:
    author, relay = Identity.generate().peer_id, Identity.generate().peer_id
    msg = PubsubMessage("t", data, author, 7, b"\x01\xab", relay)
    assert message_json(msg) == {"topic": "t", "from": str(author), "seqno": 7, "msg_id": "01ab", "data": shown,
                                 "base64": is_b64, "received_from": str(relay)}


class Topic:
    """The part of the pub/sub API `wait_for_peers` uses: the topic's peers appear after `finds_needed` lookups."""

    def __init__(self, finds_needed: int) -> None:
        self.finds = 0
        self.finds_needed = finds_needed

    def peers(self, topic: str) -> list[str]:
        return ["peer"] if self.finds >= self.finds_needed else []

    async def find_topic_peers(self, topic: str) -> int:
        self.finds += 1
        return 0


async def test_waiting_asks_the_dht_again_until_the_topic_has_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interface, "FIND_EVERY", 0.05)
    topic = Topic(finds_needed=3)
    assert await wait_for_peers(topic, "t", 5, rendezvous=True) == 1  # type: ignore[arg-type]
    assert topic.finds == 3


async def test_waiting_gives_up_at_the_deadline_and_asks_no_dht_without_rendezvous() -> None:
    topic = Topic(finds_needed=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await wait_for_peers(topic, "t", 0.2, rendezvous=False) == 0  # type: ignore[arg-type]
    assert topic.finds == 0 and 0.2 <= loop.time() - started < 2.0
