"""Pub/sub between real nodes on loopback: delivery exactly once, validation, a misbehaving harness peer (bad
signature, oversized frame, a reader that never reads), bounded subscription queues, and topic rendezvous through a
loopback DHT."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from support.swarm import node

from peerloom.apps.pubsub.message import sign_message
from peerloom.apps.pubsub.router import Validation
from peerloom.apps.pubsub.rpc import RPC, Message, SubOpts, encode_rpc
from peerloom.apps.pubsub.service import PubsubMessage, PubSubService, Subscription
from peerloom.codec.varint import encode_frame, encode_varint
from peerloom.identity import Identity, PeerId
from peerloom.net.host import Host
from peerloom.net.stream import Stream, StreamError
from peerloom.node import Node

pytestmark = pytest.mark.timeout(30)
TOPIC = "peerloom-test/news"
MESHSUB_11 = "/meshsub/1.1.0"


def ps(n: Node) -> PubSubService:
    assert n.pubsub is not None
    return n.pubsub


async def until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def link(a: Node, b: Node) -> None:
    """Connect a to b (as `--peer` does) and wait until each has the other in its mesh of the topic (a message
    forwarded before that reaches only the mesh: gossip goes to peers outside it, so a peer grafted in between
    would not hear of it)."""
    await a.secure_host.connect(b.secure_addrs[0])
    pa, pb = a.identity.peer_id, b.identity.peer_id
    await until(lambda: pb in ps(a).mesh(TOPIC) and pa in ps(b).mesh(TOPIC), what="the mesh")


async def drain(sub: Subscription, quiet: float = 0.3) -> list[PubsubMessage]:
    """What the subscription holds now and receives until `quiet` seconds pass without a message."""
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(sub.get(), quiet))
        except TimeoutError:
            return got


async def receive(sub: Subscription, count: int, timeout: float = 5.0) -> list[PubsubMessage]:
    async with asyncio.timeout(timeout):
        return [await sub.get() for _ in range(count)]


async def test_two_nodes_exchange_messages_exactly_once_and_leave_the_topic_with_the_last_subscription(
    tmp_path: Path,
) -> None:
    async with node(tmp_path, "a") as a, node(tmp_path, "b") as b:
        async with ps(a).subscribe(TOPIC) as sub_a, ps(b).subscribe(TOPIC) as sub_b:
            assert ps(a).topics() == [TOPIC]
            await link(a, b)
            for i in range(5):
                result = await ps(a).publish(TOPIC, b"from a %d" % i)
                assert result.peers == 1
                await ps(b).publish(TOPIC, b"from b %d" % i)
            got_b = await receive(sub_b, 5) + await drain(sub_b)
            got_a = await receive(sub_a, 5) + await drain(sub_a)
            assert [m.data for m in got_b] == [b"from a %d" % i for i in range(5)]  # each once, none of its own
            assert [m.data for m in got_a] == [b"from b %d" % i for i in range(5)]
            first = got_b[0]
            assert first.topic == TOPIC and first.from_peer == a.identity.peer_id
            assert first.received_from == a.identity.peer_id and first.seqno > 0 and first.msg_id
            second = ps(b).subscribe(TOPIC)  # a second reader of the topic gets the same messages
            await ps(a).publish(TOPIC, b"to both")
            assert [m.data for m in await receive(second, 1)] == [b"to both"]
            assert [m.data for m in await receive(sub_b, 1)] == [b"to both"]
            second.close()
            assert ps(b).topics() == [TOPIC]  # one subscription is still open
        assert ps(a).topics() == [] and ps(b).topics() == []
        await until(lambda: not ps(a).peers(TOPIC), what="b left the topic")
        assert await ps(a).find_topic_peers(TOPIC) == 0  # no DHT: nobody to find


async def test_a_peer_that_leaves_is_forgotten_and_hears_again_after_it_restarts_with_the_same_key(
    tmp_path: Path,
) -> None:
    async with node(tmp_path, "a") as a:
        sub_a = ps(a).subscribe(TOPIC)
        b = node(tmp_path, "b")
        async with b:
            ps(b).subscribe(TOPIC)
            await link(b, a)
            await ps(b).publish(TOPIC, b"first life")
            assert [m.data for m in await receive(sub_a, 1)] == [b"first life"]
        await until(lambda: not ps(a).peers(TOPIC), what="a forgets b")
        again = node(tmp_path, "b")  # the same home: the same key
        async with again:
            assert again.identity.peer_id == b.identity.peer_id
            sub_b = ps(again).subscribe(TOPIC)
            await link(again, a)
            await ps(again).publish(TOPIC, b"second life")  # seqnos go on from the clock: no id repeats
            await ps(a).publish(TOPIC, b"welcome back")
            assert [m.data for m in await receive(sub_a, 1)] == [b"second life"]
            assert [m.data for m in await receive(sub_b, 1)] == [b"welcome back"]


@pytest.mark.parametrize("shape", ["line", "triangle"])
async def test_three_nodes_deliver_every_message_once_to_every_other_subscriber(tmp_path: Path, shape: str) -> None:
    async with node(tmp_path, "a") as a, node(tmp_path, "b") as b, node(tmp_path, "c") as c:
        nodes = [a, b, c]
        subs = [ps(n).subscribe(TOPIC) for n in nodes]
        await link(a, b)
        await link(b, c)
        if shape == "triangle":
            await link(a, c)
        for i, n in enumerate(nodes):
            for j in range(3):
                await ps(n).publish(TOPIC, b"%d:%d" % (i, j))
        for i, sub in enumerate(subs):
            got = await receive(sub, 6) + await drain(sub)
            expected = sorted(b"%d:%d" % (k, j) for k in range(3) if k != i for j in range(3))
            assert sorted(m.data for m in got) == expected  # every other node's messages, each once
        for sub in subs:
            sub.close()


async def test_a_rejected_message_is_not_delivered_nor_forwarded_and_lowers_the_senders_score(tmp_path: Path) -> None:
    async with node(tmp_path, "a") as a, node(tmp_path, "b") as b, node(tmp_path, "c") as c:
        seen: list[bytes] = []

        async def refuse_bad(msg: PubsubMessage) -> Validation:  # an async validator, as apps may write
            seen.append(msg.data)
            return Validation.REJECT if msg.data.startswith(b"bad") else Validation.ACCEPT

        ps(b).add_validator(TOPIC, refuse_bad)
        ps(c).add_validator(TOPIC, lambda msg: Validation.ACCEPT)  # a sync one
        sub_b, sub_c = ps(b).subscribe(TOPIC), ps(c).subscribe(TOPIC)
        ps(a).subscribe(TOPIC)
        await link(a, b)
        await link(b, c)  # a line: c hears of a's messages only through b
        assert ps(b).score(a.identity.peer_id) >= 0
        await ps(a).publish(TOPIC, b"bad one")
        await ps(a).publish(TOPIC, b"good one")
        assert [m.data for m in await receive(sub_b, 1) + await drain(sub_b)] == [b"good one"]
        assert [m.data for m in await receive(sub_c, 1) + await drain(sub_c)] == [b"good one"]
        assert seen == [b"bad one", b"good one"]
        assert ps(b).score(a.identity.peer_id) < 0


async def test_a_slow_async_validator_counts_as_ignore(tmp_path: Path) -> None:
    async with node(tmp_path, "a") as a, node(tmp_path, "b") as b:
        ps(b).validation_timeout = 0.2

        async def never(msg: PubsubMessage) -> Validation:
            await asyncio.sleep(60)
            return Validation.ACCEPT

        ps(b).add_validator(TOPIC, never)
        sub_b = ps(b).subscribe(TOPIC)
        ps(a).subscribe(TOPIC)
        await link(a, b)
        await ps(a).publish(TOPIC, b"too slow to check")
        await asyncio.sleep(0.5)
        assert await drain(sub_b, 0.1) == []
        assert ps(b).stats()["validation_timeouts"] == 1


# -- a harness peer: a bare host speaking meshsub by hand -----------------------------------------------------------


class Harness:
    """A bare host that serves meshsub by reading (or not reading) what the node sends, and writes hand-built RPCs."""

    def __init__(self, read: bool = True) -> None:
        self.identity = Identity.generate()
        self.host = Host(self.identity)
        self.read = read
        self.received = 0
        self.host.set_handler(MESHSUB_11, self._serve)

    @property
    def peer_id(self) -> PeerId:
        return self.identity.peer_id

    async def _serve(self, stream: Stream) -> None:
        if not self.read:
            await asyncio.sleep(3600)
        while chunk := await stream.read():
            self.received += len(chunk)

    async def open(self, target: Node) -> Stream:
        return await self.host.new_stream(target.secure_addrs[0], [MESHSUB_11])

    def message(self, data: bytes, seqno: int) -> Message:
        return sign_message(self.identity, TOPIC, data, seqno.to_bytes(8, "big"))


def rpc_frame(*messages: Message, subscribe: bool = True) -> bytes:
    subs = (SubOpts(subscribe=True, topic=TOPIC),) if subscribe else ()
    return encode_frame(encode_rpc(RPC(subscriptions=subs, publish=messages)))


async def test_a_message_with_a_corrupted_signature_is_rejected_and_its_sender_scored_down(tmp_path: Path) -> None:
    harness = Harness()
    async with node(tmp_path, "a") as a, harness.host:
        sub = ps(a).subscribe(TOPIC)
        stream = await harness.open(a)
        good = harness.message(b"signed well", 1)
        await stream.write(rpc_frame(good))
        assert [m.data for m in await receive(sub, 1)] == [b"signed well"]  # the harness path works
        assert ps(a).score(harness.peer_id) >= 0
        forged = harness.message(b"tampered", 2)
        assert forged.signature is not None
        broken = bytes([forged.signature[0] ^ 0x01]) + forged.signature[1:]
        await stream.write(rpc_frame(Message(forged.topic, forged.data, forged.from_peer, forged.seqno, broken)))
        await until(lambda: ps(a).score(harness.peer_id) < 0, what="the score falls")
        assert await drain(sub, 0.2) == []


async def test_an_oversized_length_prefix_closes_only_that_stream(tmp_path: Path) -> None:
    harness = Harness()
    async with node(tmp_path, "a") as a, node(tmp_path, "b") as b, harness.host:
        sub_a = ps(a).subscribe(TOPIC)
        ps(b).subscribe(TOPIC)
        await link(a, b)
        stream = await harness.open(a)
        limit = ps(a).params.rpc_limits.max_rpc_size
        await stream.write(encode_varint(limit + 1) + b"\0" * 16)  # the body never comes: the prefix is enough
        with pytest.raises(StreamError):
            async with asyncio.timeout(5):
                while await stream.read():
                    pass
        assert ps(a).stats()["oversized_frames"] == 1
        assert await harness.host.ping(a.identity.peer_id)  # the connection lives on...
        again = await harness.open(a)  # ...and a new stream of the same peer is read
        await again.write(rpc_frame(harness.message(b"after the reset", 1)))
        assert [m.data for m in await receive(sub_a, 1)] == [b"after the reset"]
        await ps(b).publish(TOPIC, b"other peers unaffected")
        assert [m.data for m in await receive(sub_a, 1)] == [b"other peers unaffected"]


async def test_a_peer_that_does_not_read_is_dropped_when_its_send_queue_is_full(tmp_path: Path) -> None:
    harness = Harness(read=False)
    async with node(tmp_path, "a") as a, harness.host:
        ps(a).send_queue_bytes = 64 * 1024
        ps(a).subscribe(TOPIC)
        stream = await harness.open(a)
        await stream.write(rpc_frame())  # joins the topic: a sends it every message
        await until(lambda: harness.peer_id in ps(a).peers(TOPIC), what="harness in the topic")
        payload = os.urandom(20 * 1024)
        for _ in range(100):  # 2 MiB: past the stream's window (256 KiB), yamux's send buffer (1 MiB) and our bound
            await ps(a).publish(TOPIC, payload)
            await asyncio.sleep(0.002)
        await until(lambda: harness.peer_id not in ps(a).peers(TOPIC), what="the slow peer dropped")
        assert ps(a).stats()["slow_peers_dropped"] == 1


async def test_a_full_subscription_drops_new_messages_and_counts_them(tmp_path: Path) -> None:
    async with node(tmp_path, "a") as a, node(tmp_path, "b") as b:
        ps(b).subscription_queue = 2
        sub_b = ps(b).subscribe(TOPIC)
        ps(a).subscribe(TOPIC)
        await link(a, b)
        for i in range(5):
            await ps(a).publish(TOPIC, b"%d" % i)
        await until(lambda: ps(b).stats()["dropped_deliveries"] == 3, what="three dropped")
        assert [m.data for m in await drain(sub_b, 0.1)] == [b"0", b"1"]
        assert sub_b.dropped == 3


# -- rendezvous through the DHT ---------------------------------------------------------------------------------------

DHT = dict(dht=True, public_bootstrap=False)


async def test_two_nodes_that_share_only_a_dht_bootstrap_node_meet_by_topic(tmp_path: Path) -> None:
    async with node(tmp_path, "boot", pubsub=False, **DHT) as boot:
        assert boot.dht is not None and boot.pubsub is None
        bootstrap = [("127.0.0.1", boot.dht.port)]
        async with node(tmp_path, "a", bootstrap=bootstrap, **DHT) as a, \
                node(tmp_path, "b", bootstrap=bootstrap, **DHT) as b:
            rendezvous = ps(a).rendezvous
            assert rendezvous is not None
            rendezvous.interval = 0.2  # re-announced this often while subscribed
            sub_a = ps(a).subscribe(TOPIC)
            await until(lambda: rendezvous.announced.get(TOPIC, 0) >= 2, 8, "a announced the topic twice")
            assert b.identity.peer_id not in a.secure_host.connections
            sub_b = ps(b).subscribe(TOPIC)
            assert await ps(b).find_topic_peers(TOPIC) >= 1
            await until(lambda: a.identity.peer_id in ps(b).peers(TOPIC), what="a in b's topic peers")
            await until(lambda: b.identity.peer_id in ps(a).peers(TOPIC), what="b in a's topic peers")
            await ps(b).publish(TOPIC, b"found you")
            await ps(a).publish(TOPIC, b"found you too")
            assert [m.data for m in await receive(sub_a, 1)] == [b"found you"]
            assert [m.data for m in await receive(sub_b, 1)] == [b"found you too"]
            sub_a.close()  # the last subscription: a stops announcing the topic
            announced = rendezvous.announced[TOPIC]
            await asyncio.sleep(0.5)
            assert rendezvous.announced[TOPIC] == announced

