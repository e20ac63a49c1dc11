"""GossipSub routers talking to each other in memory (tests/support/gossip_net.py): delivery, mesh convergence,
gossip (IHAVE -> IWANT -> message), promises, PRUNE backoff, fanout and flood publishing."""

from __future__ import annotations

import random

from support.gossip_net import GossipNet

from peerloom.apps.pubsub.params import GossipParams
from peerloom.apps.pubsub.rpc import decode_rpc


def test_every_subscriber_gets_each_message_exactly_once() -> None:
    net = GossipNet(20, seed=1)
    net.connect_random(3, random.Random(1))
    net.subscribe_all("t")
    net.run(3)
    ids = [net[i].router.publish("t", b"message %d" % i, net.now).msg_id for i in (0, 7, 13)]
    net.run(2)
    for i, node in enumerate(net.nodes):
        got = sorted(d.msg_id for d in node.delivered)
        expected = sorted(m for m, author in zip(ids, (0, 7, 13), strict=True) if author != i)
        assert got == expected, f"node {i}"
    assert sum(n.router.stats().get("duplicates", 0) for n in net.nodes) > 0  # the mesh does send copies


def test_a_node_that_does_not_subscribe_gets_nothing_delivered() -> None:
    net = GossipNet(4)
    net.connect_all()
    for i in (0, 1, 2):
        net[i].router.subscribe("t", net.now)
    net.run(2)
    net[0].router.publish("t", b"x", net.now)
    net.run(1)
    assert [len(n.delivered) for n in net.nodes] == [0, 1, 1, 0]


def test_meshes_converge_into_d_lo_d_hi_and_are_symmetric() -> None:
    net = GossipNet(30, seed=2)
    net.connect_all()
    net.subscribe_all("t")
    net.run(5)
    params = GossipParams()
    for i, node in enumerate(net.nodes):
        mesh = node.router.mesh_peers("t")
        assert params.D_lo <= len(mesh) <= params.D_hi, (i, len(mesh))
        for peer in mesh:
            assert node.peer_id in net[net.index[peer]].router.mesh_peers("t")


def test_a_mesh_grows_back_after_its_peers_leave() -> None:
    net = GossipNet(20, seed=3)
    net.connect_all()
    net.subscribe_all("t")
    net.run(3)
    assert len(net[0].router.mesh_peers("t")) <= 19 - GossipParams().D
    for peer in net[0].router.mesh_peers("t"):
        net.disconnect(0, net.index[peer])
    assert net[0].router.mesh_peers("t") == []
    net.run(2)
    assert len(net[0].router.mesh_peers("t")) >= GossipParams().D_lo


def _gossip_only_pair(gossip_threshold: float = -10.0) -> GossipNet:
    """Two subscribed nodes that will not mesh (each scores the other -1) but still gossip."""
    params = GossipParams(flood_publish=False, gossip_threshold=gossip_threshold)
    net = GossipNet(2, params=params)
    net.connect(0, 1)
    net[0].score.scores[net[1].peer_id] = -1.0
    net[1].score.scores[net[0].peer_id] = -1.0
    net.subscribe_all("t")
    net.run(2)
    assert net[0].router.mesh_peers("t") == net[1].router.mesh_peers("t") == []
    return net


def test_ihave_iwant_then_the_message() -> None:
    net = _gossip_only_pair()
    seen: list[str] = []

    def tap(i: int, j: int, data: bytes) -> bool:
        rpc = decode_rpc(data)
        if rpc.control and rpc.control.ihave:
            seen.append(f"{i}->{j} IHAVE")
        if rpc.control and rpc.control.iwant:
            seen.append(f"{i}->{j} IWANT")
        if rpc.publish:
            seen.append(f"{i}->{j} message")
        return True

    net.tap = tap
    result = net[0].router.publish("t", b"gossiped", net.now)
    assert result.peers == 0  # no mesh, no flood publishing
    net.run(1.5)
    assert seen[:3] == ["0->1 IHAVE", "1->0 IWANT", "0->1 message"]
    assert [d.msg_id for d in net[1].delivered] == [result.msg_id]
    assert net[0].score.penalties == net[1].score.penalties == {}


def test_no_gossip_to_a_peer_below_the_gossip_threshold() -> None:
    net = _gossip_only_pair(gossip_threshold=-0.5)
    net[0].router.publish("t", b"gossiped", net.now)
    net.run(3)
    assert net[1].delivered == []
    assert net[0].router.stats().get("ihaves_sent", 0) == 0


def test_an_unkept_iwant_promise_is_penalised() -> None:
    net = _gossip_only_pair()
    net.tap = lambda i, j, data: not (i == 0 and decode_rpc(data).publish)  # node 0 never sends the message
    net[0].router.publish("t", b"gossiped", net.now)
    net.run(0.5)  # one heartbeat: IHAVE and IWANT exchanged
    assert net[1].router.stats()["iwant_sent"] == 1 and net[1].score.penalties == {}
    net.run(GossipParams().iwant_followup_time + 1)  # asked again at each gossip, the promise is one
    assert net[1].router.stats()["iwant_sent"] == GossipParams().mcache_gossip
    assert net[1].score.penalties == {net[0].peer_id: 1}


def test_prune_backoff_keeps_peers_apart_until_it_ends() -> None:
    params = GossipParams(unsubscribe_backoff=10.0)
    net = GossipNet(2, params=params)
    net.connect(0, 1)
    net.subscribe_all("t")
    net.run(2)
    assert net[1].router.mesh_peers("t") == [net[0].peer_id]
    net[0].router.unsubscribe("t", net.now)
    net[0].router.subscribe("t", net.now)
    net.pump()
    net.run(8)  # heartbeats on both sides, inside the backoff: neither grafts
    assert net[0].router.mesh_peers("t") == net[1].router.mesh_peers("t") == []
    assert net[0].score.penalties == net[1].score.penalties == {}  # nobody sent a GRAFT in backoff
    net.run(6)  # the 10 s backoff and the 2 s slack before grafting have passed
    assert net[1].router.mesh_peers("t") == [net[0].peer_id]
    assert net[0].router.mesh_peers("t") == [net[1].peer_id]


def test_without_flood_publishing_a_non_subscriber_publishes_to_a_fanout_that_expires() -> None:
    params = GossipParams(flood_publish=False, fanout_ttl=5.0)
    net = GossipNet(10, params=params)
    net.connect_all()
    for i in range(1, 10):
        net[i].router.subscribe("t", net.now)
    net.run(2)
    first = net[0].router.publish("t", b"a", net.now)
    assert first.peers == params.D
    fanout = net[0].router.fanout_peers("t")
    assert len(fanout) == params.D
    net.run(1)
    assert net[0].router.publish("t", b"b", net.now).peers == params.D
    assert net[0].router.fanout_peers("t") == fanout  # the same fanout is reused
    net.run(1)
    assert all(len(net[i].delivered) == 2 for i in range(1, 10))
    net.run(params.fanout_ttl + 1)
    assert net[0].router.fanout_peers("t") == []


def test_flood_publishing_reaches_every_topic_peer_above_the_publish_threshold() -> None:
    net = GossipNet(16)
    net.connect_all()
    net.subscribe_all("t")
    net.run(2)
    net[0].score.scores[net[5].peer_id] = -60.0  # below publish_threshold (-50)
    sent_to: list[int] = []
    net.tap = lambda i, j, data: (i != 0 or not decode_rpc(data).publish or sent_to.append(j) or True)
    result = net[0].router.publish("t", b"x", net.now)
    net.pump()
    assert result.peers == 14 and sorted(sent_to) == [j for j in range(1, 16) if j != 5]


def test_subscribing_later_joins_through_the_fanout_first() -> None:
    params = GossipParams(flood_publish=False)
    net = GossipNet(12, params=params)
    net.connect_all()
    for i in range(1, 12):
        net[i].router.subscribe("t", net.now)
    net.run(2)
    net[0].router.publish("t", b"x", net.now)
    fanout = set(net[0].router.fanout_peers("t"))
    net[0].router.subscribe("t", net.now)
    assert set(net[0].router.mesh_peers("t")) == fanout and net[0].router.fanout_peers("t") == []
