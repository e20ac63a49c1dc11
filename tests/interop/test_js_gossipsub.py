"""peerloom's GossipSub against js-libp2p's (@libp2p/gossipsub 17.1.1, tests/interop/js/gossip.mjs).

The js peers run with the library's defaults (D=6, heartbeat 1 s, floodPublish on, StrictSign,
IDONTWANT for data of 512 bytes or more) except allowPublishToZeroTopicPeers. With trace=True
they report every RPC their router receives and sends, with js's own message ids: the checks
on IHAVE/IWANT/IDONTWANT below read that trace, not assumptions.
"""

from __future__ import annotations

import pytest
from support.jsgossip import JsGossipPeer, js_gossip_peers, wait_until
from support.jslibp2p import ensure_installed

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]  # the first run may `npm ci`

TOPIC = "peerloom-interop"
IDONTWANT_MIN = 512  # js's idontwantMinDataSize default (constants.GossipsubIdontwantMinDataSize)


@pytest.fixture(scope="module")
def js_ready() -> None:
    res = ensure_installed()
    if not res:
        pytest.skip(res.reason)


async def _meshed(peer: JsGossipPeer, topic: str, others: list[str]) -> bool:
    return set(others) <= set(await peer.mesh(topic))


async def test_selfcheck_js_to_js_delivery_trace_and_idontwant(js_ready: None) -> None:
    """The harness against itself: a - b - c in a line, a publishes. b gets it from a once,
    forwards it to c, and (data >= 512 bytes) sends c an IDONTWANT with the same id first."""
    async with js_gossip_peers(3, trace=True) as (a, b, c):
        assert "/meshsub/1.2.0" in a.protocols
        assert await b.connect(a.addr) == a.peer_id
        assert await b.connect(c.addr) == c.peer_id
        for p in (a, b, c):
            await p.subscribe(TOPIC)
        await wait_until(lambda: _meshed(b, TOPIC, [a.peer_id, c.peer_id]), what="b's mesh has a and c")
        await wait_until(lambda: _meshed(c, TOPIC, [b.peer_id]), what="c's mesh has b")

        data = bytes(range(256)) * 3  # 768 bytes
        assert await a.publish(TOPIC, data) == [b.peer_id]  # flood publish: every topic peer
        (at_b,) = await b.wait_messages(1, topic=TOPIC)
        (at_c,) = await c.wait_messages(1, topic=TOPIC)
        assert at_b.data == at_c.data == data
        assert at_b.from_peer == at_c.from_peer == a.peer_id
        assert at_b.received_from == a.peer_id and at_c.received_from == b.peer_id
        assert at_b.msg_id == at_c.msg_id
        msg_id = at_b.msg_id.hex()

        # the trace: a sent it to b, b sent c IDONTWANT then the message itself
        assert any(m["msg_id"] == msg_id for r in a.rpcs("out", b.peer_id) for m in r.get("messages", []))
        to_c = b.rpcs("out", c.peer_id)
        idontwant_at = next(i for i, r in enumerate(to_c) if msg_id in r.get("idontwant", []))
        message_at = next(i for i, r in enumerate(to_c) if any(m["msg_id"] == msg_id for m in r.get("messages", [])))
        assert idontwant_at < message_at
        assert any(msg_id in r.get("idontwant", []) for r in c.rpcs("in", b.peer_id))
        # no duplicates at the application, and scores are readable
        assert len(b.messages()) == len(c.messages()) == 1
        assert isinstance(await b.score(a.peer_id), float)
