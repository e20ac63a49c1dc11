"""peerloom's GossipSub against js-libp2p's (@libp2p/gossipsub 17.1.1, tests/interop/js/gossip.mjs).

The js peers run with the library's defaults (D=6, heartbeat 1 s, floodPublish on, StrictSign,
IDONTWANT for data of 512 bytes or more) except allowPublishToZeroTopicPeers; peerloom nodes with
theirs (the spec's). With trace=True a js peer reports every RPC its router receives and sends,
with js's own message ids: the checks on IHAVE/IWANT/IDONTWANT below read that trace and
peerloom's router stats, not assumptions.

- the harness js-to-js (delivery, trace, IDONTWANT, `inject`, js dropping a forged signature);
- 3 js + 3 peerloom nodes in one mesh: every message once at every subscriber, same message ids;
- IHAVE/IWANT each way: a node kept outside the other side's mesh gets a message by gossip only;
- IDONTWANT each way: a message announced unwanted is not sent, a small control message is;
- a bad signature relayed by js: peerloom drops it and scores the relaying js peer below zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.jsgossip import JsGossipPeer, js_gossip_peers, wait_until
from support.jslibp2p import ensure_installed
from support.swarm import node

from peerloom.apps.pubsub.message import message_id, sign_message
from peerloom.apps.pubsub.router import Validation
from peerloom.apps.pubsub.rpc import Message
from peerloom.apps.pubsub.service import PubsubMessage, PubSubService, Subscription
from peerloom.codec.multiaddr import Multiaddr
from peerloom.identity import Identity, PeerId
from peerloom.node import Node

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]  # the first run may `npm ci`

TOPIC = "peerloom-interop"
IDONTWANT_MIN = 512  # js's idontwantMinDataSize default (constants.GossipsubIdontwantMinDataSize)


@pytest.fixture(scope="module")
def js_ready() -> None:
    res = ensure_installed()
    if not res:
        pytest.skip(res.reason)


# -- helpers for the mixed tests ---------------------------------------------------------------------------------


def ps(n: Node) -> PubSubService:
    assert n.pubsub is not None
    return n.pubsub


def pid(n: Node) -> str:
    return str(n.identity.peer_id)


async def receive(sub: Subscription, count: int, timeout: float = 10.0) -> list[PubsubMessage]:
    async with asyncio.timeout(timeout):
        return [await sub.get() for _ in range(count)]


async def drain(sub: Subscription, quiet: float = 0.3) -> list[PubsubMessage]:
    """What the subscription holds now and receives until `quiet` seconds pass without a message."""
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(sub.get(), quiet))
        except TimeoutError:
            return got


async def link_js_to_pl(js: JsGossipPeer, n: Node) -> None:
    """js dials the peerloom node."""
    assert await js.connect(str(n.secure_addrs[0])) == pid(n)


async def link_pl_to_js(n: Node, js: JsGossipPeer) -> None:
    """The peerloom node dials js."""
    conn = await n.secure_host.connect(Multiaddr(js.addr))
    assert str(conn.remote_peer) == js.peer_id


def pl_sees(n: Node, peers: list[str], *, mesh: bool = False) -> bool:
    have = {str(p) for p in (ps(n).mesh(TOPIC) if mesh else ps(n).peers(TOPIC))}
    return set(peers) <= have


async def js_sees(js: JsGossipPeer, peers: list[str], *, mesh: bool = False) -> bool:
    view = await js.view(TOPIC)
    return set(peers) <= set(view["mesh" if mesh else "subscribers"])


def raw_fields(msg: Message) -> dict[str, str | None]:
    """A peerloom Message as gossip.mjs's `inject` takes it."""
    return {
        "topic": msg.topic,
        "from": msg.from_peer.hex() if msg.from_peer else None,
        "data": msg.data.hex(),
        "seqno": msg.seqno.hex() if msg.seqno else None,
        "signature": msg.signature.hex() if msg.signature else None,
        "key": msg.key.hex() if msg.key else None,
    }


def forged(msg: Message) -> Message:
    """The same message with one bit of its signature flipped."""
    assert msg.signature is not None
    bad = bytes([msg.signature[0] ^ 0x01]) + msg.signature[1:]
    return Message(msg.topic, msg.data, msg.from_peer, msg.seqno, bad)


# -- the harness against itself -----------------------------------------------------------------------------------


async def test_selfcheck_js_to_js(js_ready: None) -> None:
    """The harness against itself. a - b - c in a line, a publishes: b gets it from a once, forwards it to c, and
    (data >= 512 bytes) sends c an IDONTWANT with the same id first. Then `inject`, and js's reference behaviour for
    the bad-signature test below: b hands a a message signed by a peerloom identity (a delivers it: js verifies
    peerloom's StrictSign), one with a bit of its signature flipped (a drops it), and a good one again (b is still
    heard). js's score of b does not move: with js's default score parameters no topic is scored, and the
    invalid-message penalty (P4) is a topic term."""
    async with js_gossip_peers(3, trace=True) as (a, b, c):
        assert "/meshsub/1.2.0" in a.protocols
        assert await b.connect(a.addr) == a.peer_id
        assert await b.connect(c.addr) == c.peer_id
        for p in (a, b, c):
            await p.subscribe(TOPIC)
        await wait_until(lambda: js_sees(b, [a.peer_id, c.peer_id], mesh=True), what="b's mesh has a and c")
        await wait_until(lambda: js_sees(c, [b.peer_id], mesh=True), what="c's mesh has b")
        await wait_until(lambda: js_sees(a, [b.peer_id], mesh=True), what="a's mesh has b")

        data = bytes(range(256)) * 3  # 768 bytes: over IDONTWANT_MIN
        assert await a.publish(TOPIC, data) == [b.peer_id]  # flood publish: every topic peer
        (at_b,) = await b.wait_messages(1, topic=TOPIC)
        (at_c,) = await c.wait_messages(1, topic=TOPIC)
        assert at_b.data == at_c.data == data
        assert at_b.from_peer == at_c.from_peer == a.peer_id
        assert at_b.received_from == a.peer_id and at_c.received_from == b.peer_id
        assert at_b.msg_id == at_c.msg_id
        msg_id = at_b.msg_id.hex()

        # the trace: a sent it to b, b sent c IDONTWANT then the message itself
        await c.wait_for("rpc_in", peer=b.peer_id, where=lambda r: msg_id in _message_ids(r))
        assert any(msg_id in _message_ids(r) for r in a.rpcs("out", b.peer_id))
        to_c = b.rpcs("out", c.peer_id)
        idontwant_at = next(i for i, r in enumerate(to_c) if msg_id in r.get("idontwant", []))
        message_at = next(i for i, r in enumerate(to_c) if msg_id in _message_ids(r))
        assert idontwant_at < message_at
        assert any(msg_id in r.get("idontwant", []) for r in c.rpcs("in", b.peer_id))
        assert len(b.messages()) == len(c.messages()) == 1  # no duplicates at the application

        author = Identity.generate()

        def signed(data: bytes, seqno: int) -> Message:
            return sign_message(author, TOPIC, data, seqno.to_bytes(8, "big"))

        await b.inject(a.peer_id, raw_fields(signed(b"signed by peerloom", 1)))
        (got,) = await a.wait_messages(1, topic=TOPIC)
        assert got.data == b"signed by peerloom" and got.from_peer == str(author.peer_id) and got.seqno == 1
        assert got.received_from == b.peer_id
        score = await a.score(b.peer_id)
        await b.inject(a.peer_id, raw_fields(forged(signed(b"forged", 2))))
        await b.inject(a.peer_id, raw_fields(signed(b"signed again", 3)))
        await a.wait_messages(2, topic=TOPIC)
        assert [m.data for m in a.messages()] == [b"signed by peerloom", b"signed again"]
        assert await a.score(b.peer_id) == score


@contextlib.asynccontextmanager
async def pl_nodes(tmp_path: Path, count: int, prefix: str = "p") -> AsyncIterator[list[Node]]:
    """`count` peerloom nodes on loopback (no DHT, no LSD), stopped on exit."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(node(tmp_path, f"{prefix}{i}")) for i in range(count)]


# -- 1. one mesh of 3 js and 3 peerloom nodes ------------------------------------------------------------------


async def test_three_js_and_three_peerloom_nodes_deliver_every_message_once_to_every_subscriber(
    js_ready: None, tmp_path: Path
) -> None:
    """Six nodes in a ring that alternates js and peerloom, plus one chord on each side; every node publishes four
    messages (one of 64 KiB). Every subscriber gets each message of the others exactly once, still after a quiet
    heartbeat, and js and peerloom agree on every message's id."""
    async with js_gossip_peers(3) as js, pl_nodes(tmp_path, 3) as pl:
        subs = [ps(n).subscribe(TOPIC) for n in pl]
        for j in js:
            await j.subscribe(TOPIC)
        # a ring that alternates js and peerloom, dialled from both sides, and one chord inside each side
        await link_js_to_pl(js[0], pl[0])
        await link_pl_to_js(pl[0], js[1])
        await link_js_to_pl(js[1], pl[1])
        await link_pl_to_js(pl[1], js[2])
        await link_js_to_pl(js[2], pl[2])
        await link_pl_to_js(pl[2], js[0])
        await js[0].connect(js[1].addr)
        await pl[1].secure_host.connect(pl[2].secure_addrs[0])
        neighbours = {
            js[0].peer_id: [pid(pl[0]), pid(pl[2]), js[1].peer_id],
            js[1].peer_id: [pid(pl[0]), pid(pl[1]), js[0].peer_id],
            js[2].peer_id: [pid(pl[1]), pid(pl[2])],
            pid(pl[0]): [js[0].peer_id, js[1].peer_id],
            pid(pl[1]): [js[1].peer_id, js[2].peer_id, pid(pl[2])],
            pid(pl[2]): [js[2].peer_id, js[0].peer_id, pid(pl[1])],
        }
        # every link carries the topic both ways and is in both meshes (all 6 nodes have fewer than D_lo links)
        for j in js:
            await wait_until(lambda j=j: js_sees(j, neighbours[j.peer_id], mesh=True), what=f"js {j.peer_id} mesh")
        for n in pl:
            await wait_until(lambda n=n: pl_sees(n, neighbours[pid(n)], mesh=True), what=f"peerloom {pid(n)} mesh")

        # each node publishes 3 small messages and a 64 KiB one (over the IDONTWANT threshold of both sides)
        def data(name: str, k: int) -> bytes:
            text = f"{name}:{k}".encode()
            return text if k < 3 else text + random.Random(name).randbytes(64 * 1024)

        sent = {
            name: [data(name, k) for k in range(4)]
            for name in [f"js{i}" for i in range(3)] + [f"pl{i}" for i in range(3)]
        }
        for k in range(4):
            for i, j in enumerate(js):
                await j.publish(TOPIC, sent[f"js{i}"][k])
            for i, n in enumerate(pl):
                await ps(n).publish(TOPIC, sent[f"pl{i}"][k])
        everything = sorted(d for ds in sent.values() for d in ds)

        def others(name: str) -> list[bytes]:
            return sorted(d for d in everything if d not in sent[name])

        ids: dict[bytes, set[bytes]] = {}  # each message's id as every receiver computed it
        for j in js:
            await j.wait_messages(20, topic=TOPIC)
        got_pl = [await receive(sub, 20) for sub in subs]
        await asyncio.sleep(1.2)  # a heartbeat and its gossip: duplicates would show up meanwhile
        for i, sub in enumerate(subs):
            got = got_pl[i] + await drain(sub, 0.05)
            assert sorted(m.data for m in got) == others(f"pl{i}")  # each once, none of its own
            for m in got:
                ids.setdefault(m.data, set()).add(m.msg_id)
        for i, j in enumerate(js):
            got_js = j.messages(TOPIC)  # after the same quiet time
            assert sorted(m.data for m in got_js) == others(f"js{i}")
            for m in got_js:
                ids.setdefault(m.data, set()).add(m.msg_id)
        assert sum(ps(n).stats().get("idontwant_sent", 0) for n in pl) > 0  # for the big ones, js peers among others
        # js finds nothing to hold against its peerloom neighbours (score >= 0: no penalty)
        for j in js:
            for n in pl:
                if pid(n) in neighbours[j.peer_id]:
                    assert await j.score(pid(n)) >= 0
        # js and peerloom give every message the same id (the js-libp2p default message-id function)
        assert all(len(v) == 1 for v in ids.values()), ids
        assert sorted(ids) == everything


# -- 2. js's IHAVE answered by peerloom's IWANT ------------------------------------------------------------------


async def test_js_gossip_carries_a_message_to_a_peerloom_node_outside_its_mesh(js_ready: None, tmp_path: Path) -> None:
    """js a - js b - peerloom x, a line. x joins b's mesh, leaves the topic (PRUNE with a backoff) and subscribes
    again: b may not graft x until the backoff ends, so x is a topic peer outside b's mesh. a publishes: b has it
    from its mesh and can only tell x through gossip. The trace must show b's IHAVE to x with js's id for the
    message, x's IWANT for that id, b's answer, and x delivering it once: peerloom computes js's message id and
    speaks IHAVE/IWANT as js does."""
    async with js_gossip_peers(2, trace=True) as (a, b), pl_nodes(tmp_path, 1, "x") as (x,):
        await b.connect(a.addr)
        for j in (a, b):
            await j.subscribe(TOPIC)
        sub = ps(x).subscribe(TOPIC)
        await link_pl_to_js(x, b)
        await wait_until(lambda: js_sees(b, [a.peer_id, pid(x)], mesh=True), what="b's mesh has a and x")
        await wait_until(lambda: pl_sees(x, [b.peer_id], mesh=True), what="x's mesh has b")

        sub.close()  # x leaves the topic
        await b.wait_for("rpc_in", peer=pid(x), where=lambda r: any(p["topic"] == TOPIC for p in r.get("prune", [])))
        sub = ps(x).subscribe(TOPIC)
        await wait_until(lambda: js_sees(b, [pid(x)]), what="b knows x subscribed again")
        assert pid(x) not in await b.mesh(TOPIC)

        data = b"carried by gossip"
        assert await a.publish(TOPIC, data) == [b.peer_id]
        (got,) = await receive(sub, 1)
        assert got.data == data and str(got.received_from) == b.peer_id and str(got.from_peer) == a.peer_id
        msg_id = got.msg_id.hex()
        assert (await b.wait_messages(1, topic=TOPIC))[0].msg_id == got.msg_id  # js's id for it is peerloom's

        # the trace lines may trail the delivery a little: wait for the last one
        await b.wait_for("rpc_out", peer=pid(x), where=lambda r: msg_id in _message_ids(r))
        trace = [e for e in b.events if e.get("event") in ("rpc_in", "rpc_out") and e.get("peer") == pid(x)]
        out = [i for i, r in enumerate(trace) if r["event"] == "rpc_out"]
        ihave = [i for i in out if msg_id in _ihave_ids(trace[i])]
        iwant = [i for i, r in enumerate(trace) if r["event"] == "rpc_in" and msg_id in r.get("iwant", [])]
        served = [i for i in out if msg_id in _message_ids(trace[i])]
        assert ihave and iwant and len(served) == 1, trace
        assert ihave[0] < iwant[0] < served[0], trace  # the message went to x only because x asked for it
        assert pid(x) not in await b.mesh(TOPIC)  # and x was not in b's mesh meanwhile
        # x kept the backoff of its own PRUNE: no GRAFT since (js would refuse it and add a behaviour penalty)
        pruned = next(i for i, r in enumerate(trace) if r["event"] == "rpc_in" and r.get("prune"))
        assert not any(TOPIC in r.get("graft", []) for r in trace[pruned:] if r["event"] == "rpc_in"), trace
        assert await b.score(pid(x)) >= 0
        assert await drain(sub, 0.5) == []
        stats = ps(x).stats()
        assert stats["iwant_sent"] >= 1, stats


async def test_peerloom_gossip_carries_a_message_to_a_js_node_outside_its_mesh(js_ready: None, tmp_path: Path) -> None:
    """The other way round: peerloom a - peerloom b - js j. j leaves the topic (its PRUNE carries a backoff) and
    subscribes again, so b keeps j outside its mesh; a publishes, b announces the message to j by IHAVE, j asks with
    IWANT and b serves it: js understands peerloom's IHAVE ids (they are js's ids)."""
    async with JsGossipPeer.start(trace=True) as j, pl_nodes(tmp_path, 2) as (a, b):
        sub_a, sub_b = ps(a).subscribe(TOPIC), ps(b).subscribe(TOPIC)
        await a.secure_host.connect(b.secure_addrs[0])
        await j.subscribe(TOPIC)
        await link_js_to_pl(j, b)
        await wait_until(lambda: pl_sees(b, [pid(a), j.peer_id], mesh=True), what="b's mesh has a and j")
        await wait_until(lambda: js_sees(j, [pid(b)], mesh=True), what="j's mesh has b")

        await j.unsubscribe(TOPIC)
        await wait_until(lambda: j.peer_id not in {str(p) for p in ps(b).peers(TOPIC)}, what="b sees j leave")
        await j.subscribe(TOPIC)
        await wait_until(lambda: pl_sees(b, [j.peer_id]), what="b sees j subscribe again")
        assert j.peer_id not in {str(p) for p in ps(b).mesh(TOPIC)}

        data = b"announced by peerloom"
        assert (await ps(a).publish(TOPIC, data)).peers == 1  # to b only: a does not know j
        (got,) = await j.wait_messages(1, topic=TOPIC)
        assert got.data == data and got.received_from == pid(b) and got.from_peer == pid(a)
        (at_b,) = await receive(sub_b, 1)
        assert at_b.msg_id == got.msg_id
        msg_id = got.msg_id.hex()

        await j.wait_for("rpc_in", peer=pid(b), where=lambda r: msg_id in _message_ids(r))
        trace = [e for e in j.events if e.get("event") in ("rpc_in", "rpc_out") and e.get("peer") == pid(b)]
        ihave = [i for i, r in enumerate(trace) if r["event"] == "rpc_in" and msg_id in _ihave_ids(r)]
        iwant = [i for i, r in enumerate(trace) if r["event"] == "rpc_out" and msg_id in r.get("iwant", [])]
        served = [i for i, r in enumerate(trace) if r["event"] == "rpc_in" and msg_id in _message_ids(r)]
        assert ihave and iwant and len(served) == 1, trace
        assert ihave[0] < iwant[0] < served[0], trace
        assert j.peer_id not in {str(p) for p in ps(b).mesh(TOPIC)}
        stats = ps(b).stats()
        assert stats["ihaves_sent"] >= 1 and stats["iwant_served"] >= 1, stats
        assert await drain(sub_a, 0.1) == []


def _ihave_ids(rpc: dict[str, Any]) -> list[str]:
    return [i for h in rpc.get("ihave", []) if h["topic"] == TOPIC for i in h["ids"]]


def _message_ids(rpc: dict[str, Any]) -> list[str]:
    return [m["msg_id"] for m in rpc.get("messages", [])]


# -- 3. js's IDONTWANT honoured by peerloom ----------------------------------------------------------------------

IGNORED = b"not forwarded by js b:"


async def test_peerloom_does_not_send_a_message_to_a_js_peer_that_said_idontwant(
    js_ready: None, tmp_path: Path
) -> None:
    """js a - js b - peerloom x - peerloom y, and js c - x. b ignores (neither delivers nor forwards) data starting
    with IGNORED, but sends its mesh peer x IDONTWANT first for data of 512 bytes or more (js's threshold). a
    publishes a big and a small such message; x's router stats show it keeps b's IDONTWANT. Then c replays both to x
    (`inject`, a copy of what b received). x forwards both to y; it sends b the small one (no IDONTWANT: the control
    that shows b would see it) but not the big one."""
    js = js_gossip_peers(each=[{}, {"ignore_prefix": IGNORED}, {}], trace=True)
    async with js as (a, b, c), pl_nodes(tmp_path, 2) as (x, y):
        await b.connect(a.addr)
        await link_js_to_pl(b, x)
        await link_js_to_pl(c, x)
        await y.secure_host.connect(x.secure_addrs[0])
        subs = {n: ps(n).subscribe(TOPIC) for n in (x, y)}
        for j in (a, b, c):
            await j.subscribe(TOPIC)
        await wait_until(lambda: js_sees(b, [a.peer_id, pid(x)], mesh=True), what="b's mesh has a and x")
        await wait_until(lambda: pl_sees(x, [b.peer_id, c.peer_id, pid(y)], mesh=True), what="x's mesh")
        await wait_until(lambda: js_sees(c, [pid(x)]), what="c knows x subscribed")

        big, small = IGNORED + bytes(IDONTWANT_MIN + 100), IGNORED + b"small"
        raw: dict[bytes, dict[str, Any]] = {}
        for data in (small, big):
            await a.publish(TOPIC, data)
            got = await b.wait_for("rpc_in", peer=a.peer_id, where=lambda r, d=data: _carries(r, d))
            raw[data] = next(m for m in got["messages"] if m["data"] == data.hex())
        big_id, small_id = raw[big]["msg_id"], raw[small]["msg_id"]
        await b.wait_for("rpc_out", peer=pid(x), where=lambda r: big_id in r.get("idontwant", []))
        assert not any(small_id in r.get("idontwant", []) for r in b.rpcs("out"))  # below the threshold
        # x's router holds it (its stats count the IDONTWANT ids it keeps, per peer, for mcache_len heartbeats)
        await wait_until(lambda: ps(x).stats()["dont_want"] == 1, what="x keeps b's IDONTWANT")

        for data in (small, big):
            fields = {k: raw[data][k] for k in ("topic", "from", "seqno", "data", "signature", "key")}
            await c.inject(pid(x), fields)
        at_y = await receive(subs[y], 2)
        assert sorted(m.data for m in at_y) == sorted([small, big])
        assert all(str(m.received_from) == pid(x) for m in at_y)  # x forwarded both
        assert sorted(m.msg_id.hex() for m in at_y) == sorted([small_id, big_id])
        # b: the small one arrives from x, the big one never does
        await b.wait_for("rpc_in", peer=pid(x), where=lambda r: _carries(r, small))
        # a barrier the other way: x's own message reaches b after anything x sent b before it
        after = b"x's own message, after the forwards"
        await ps(x).publish(TOPIC, after)
        await b.wait_for("rpc_in", peer=pid(x), where=lambda r: _carries(r, after))
        assert not any(_carries(r, big) for r in b.rpcs("in", pid(x)))
        assert [m.data for m in b.messages()] == [after]  # b ignored both, as asked


async def test_js_does_not_send_a_peerloom_node_a_message_it_said_idontwant_for(js_ready: None, tmp_path: Path) -> None:
    """The mirror image: js h - peerloom x - js j - peerloom z, and h - j. x ignores (its validator says IGNORE) data
    starting with IGNORED, but sends its mesh peer j IDONTWANT first for the big one (peerloom's threshold is js's).
    h, a harness that subscribes to nothing, hands x a big and a small such message signed by another identity,
    then hands both to j. j forwards both to z, the small one to x too, never the big one: js understands
    peerloom's IDONTWANT, and its ids."""
    async with js_gossip_peers(2, trace=True) as (h, j), pl_nodes(tmp_path, 2) as (x, z):
        ps(x).add_validator(TOPIC, lambda m: Validation.IGNORE if m.data.startswith(IGNORED) else Validation.ACCEPT)
        subs = {n: ps(n).subscribe(TOPIC) for n in (x, z)}
        await j.subscribe(TOPIC)
        await link_js_to_pl(h, x)
        await h.connect(j.addr)
        await link_pl_to_js(x, j)
        await link_pl_to_js(z, j)
        await wait_until(lambda: js_sees(j, [pid(x), pid(z)], mesh=True), what="j's mesh has x and z")
        await wait_until(lambda: pl_sees(x, [j.peer_id], mesh=True), what="x's mesh has j")
        await wait_until(lambda: _has_peers(h, [pid(x), j.peer_id]), what="h has gossipsub streams to x and j")

        author = Identity.generate()
        small = sign_message(author, TOPIC, IGNORED + b"small", (1).to_bytes(8, "big"))
        big = sign_message(author, TOPIC, IGNORED + bytes(IDONTWANT_MIN + 100), (2).to_bytes(8, "big"))
        small_id, big_id = message_id(small).hex(), message_id(big).hex()
        for msg in (small, big):
            await h.inject(pid(x), raw_fields(msg))
        await j.wait_for("rpc_in", peer=pid(x), where=lambda r: big_id in r.get("idontwant", []))
        assert not any(small_id in r.get("idontwant", []) for r in j.rpcs("in"))  # below the threshold
        assert ps(x).stats().get("idontwant_sent", 0) == 1

        for msg in (small, big):
            await h.inject(j.peer_id, raw_fields(msg))
        at_z = await receive(subs[z], 2)
        assert sorted(m.data for m in at_z) == sorted([small.data, big.data])
        assert all(str(m.received_from) == j.peer_id for m in at_z)  # j forwarded both
        assert sorted(m.msg_id.hex() for m in at_z) == sorted([small_id, big_id])
        await j.wait_for("rpc_out", peer=pid(x), where=lambda r: _carries(r, small.data))
        # a barrier: j's own message reaches x after anything j sent x before it
        after = b"j's own message, after the forwards"
        await j.publish(TOPIC, after)
        await j.wait_for("rpc_out", peer=pid(x), where=lambda r: _carries(r, after))
        assert not any(_carries(r, big.data) for r in j.rpcs("out", pid(x)))
        assert [m.data for m in await receive(subs[x], 1)] == [after]  # x ignored both, as asked
        assert await drain(subs[x], 0.1) == []


async def _has_peers(js: JsGossipPeer, peers: list[str]) -> bool:
    return set(peers) <= set((await js.view())["peers"])


def _carries(rpc: dict[str, Any], data: bytes) -> bool:
    return any(m["data"] == data.hex() for m in rpc.get("messages", []))


# -- 4. a bad signature from a harness ---------------------------------------------------------------------------


async def test_peerloom_rejects_a_bad_signature_from_js_and_scores_its_sender_down(
    js_ready: None, tmp_path: Path
) -> None:
    """js j hands peerloom x a message signed by another identity (delivered), then one with a bit of its
    signature flipped: x drops it and its score of j falls below zero."""
    async with JsGossipPeer.start() as j, pl_nodes(tmp_path, 1, "x") as (x,):
        sub = ps(x).subscribe(TOPIC)
        await j.subscribe(TOPIC)
        await link_pl_to_js(x, j)
        await wait_until(lambda: pl_sees(x, [j.peer_id]), what="x knows j's subscription")
        await wait_until(lambda: js_sees(j, [pid(x)]), what="j knows x's subscription")
        author = Identity.generate()

        def signed(data: bytes, seqno: int) -> Message:
            return sign_message(author, TOPIC, data, seqno.to_bytes(8, "big"))

        await j.inject(pid(x), raw_fields(signed(b"relayed by js", 1)))
        (got,) = await receive(sub, 1)
        assert got.data == b"relayed by js" and got.from_peer == author.peer_id and str(got.received_from) == j.peer_id
        jid = PeerId.from_string(j.peer_id)
        assert ps(x).score(jid) >= 0

        rejected = ps(x).stats().get("messages_rejected", 0)  # counters appear once counted
        await j.inject(pid(x), raw_fields(forged(signed(b"forged", 2))))
        await wait_until(lambda: ps(x).score(jid) < 0, what="x's score of j falls below zero")
        assert ps(x).stats()["messages_rejected"] == rejected + 1
        assert await drain(sub, 0.3) == []
