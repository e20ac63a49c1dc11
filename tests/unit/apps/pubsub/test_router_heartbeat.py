"""The GossipSub heartbeat against scripted peers: mesh maintenance (D_lo/D_hi, D_score, D_out, negative scores,
opportunistic grafting), gossip emission, timers, and the caches it ages."""

from __future__ import annotations

from support.gossip_net import LoneRouter

from peerloom.apps.pubsub.params import GossipParams
from peerloom.apps.pubsub.rpc import RPC, ControlMessage, Graft, IDontWant, IWant


def graft_from(lone: LoneRouter, k: int, topic: str = "t") -> None:
    lone.send(k, RPC(control=ControlMessage(graft=(Graft(topic),))))


def control_sent(lone: LoneRouter) -> dict[int, ControlMessage]:
    """The control parts the router sent since the last call, merged per peer."""
    merged: dict[int, ControlMessage] = {}
    for k, rpcs in lone.sent().items():
        for rpc in rpcs:
            if rpc.control:
                old = merged.get(k, ControlMessage())
                merged[k] = ControlMessage(*(a + b for a, b in zip(
                    (old.ihave, old.iwant, old.graft, old.prune, old.idontwant),
                    (rpc.control.ihave, rpc.control.iwant, rpc.control.graft, rpc.control.prune, rpc.control.idontwant),
                    strict=True,
                )))
    return merged


def test_timers_start_with_the_first_call_and_skip_missed_beats() -> None:
    lone = LoneRouter(params=GossipParams(heartbeat_interval=1.0, heartbeat_initial_delay=0.1))
    assert lone.router.next_wakeup() is None
    lone.router.subscribe("t", 50.0)
    assert lone.router.next_wakeup() == 50.1
    lone.router.tick(50.05)
    assert lone.router.stats().get("heartbeats", 0) == 0
    lone.router.tick(60.0)  # ten beats late: one heartbeat, the next one on the old grid
    assert lone.router.stats()["heartbeats"] == 1 and lone.router.next_wakeup() == 60.1
    assert lone.score.refreshes == 1


def test_a_small_mesh_is_filled_to_d_from_topic_peers_not_in_backoff() -> None:
    lone = LoneRouter()
    lone.router.subscribe("t", lone.now)
    for k in range(1, 11):
        lone.add(k, topics=("t",))
    lone.add(11)  # not subscribed
    lone.score.scores[lone.id(10)] = -0.5  # negative: never grafted
    lone.advance(1)
    assert len(lone.router.mesh_peers("t")) == GossipParams().D
    assert lone.id(10) not in lone.router.mesh_peers("t") and lone.id(11) not in lone.router.mesh_peers("t")
    grafted = {k for k, c in control_sent(lone).items() if c.graft}
    assert {lone.id(k) for k in grafted} == set(lone.router.mesh_peers("t"))


def test_an_oversized_mesh_keeps_the_d_score_best_and_d_out_outbound() -> None:
    params = GossipParams()
    lone = LoneRouter(params=params)
    lone.router.subscribe("t", lone.now)
    for k in range(1, 13):  # twelve inbound peers fill the mesh to D_hi by their GRAFTs
        lone.add(k, topics=("t",))
        graft_from(lone, k)
    for k in (13, 14):  # two outbound peers arrive later
        lone.add(k, topics=("t",), outbound=True)
    for k in range(1, 15):
        lone.score.scores[lone.id(k)] = float(k)
    lone.score.scores[lone.id(13)] = lone.score.scores[lone.id(14)] = 0.0  # worst scores: kept only for D_out
    assert len(lone.router.mesh_peers("t")) == params.D_hi
    lone.advance(1)  # within D_lo..D_hi but no outbound peer: graft the two outbound ones
    assert len(lone.router.mesh_peers("t")) == params.D_hi + 2
    lone.sent()
    lone.advance(1)  # over D_hi: back to D
    mesh = set(lone.router.mesh_peers("t"))
    assert len(mesh) == params.D
    assert {lone.id(k) for k in (9, 10, 11, 12)} <= mesh  # the D_score best
    assert {lone.id(13), lone.id(14)} <= mesh  # the D_out outbound quota
    pruned = {k for k, c in control_sent(lone).items() if c.prune}
    assert {lone.id(k) for k in pruned} == {lone.id(k) for k in range(1, 15)} - mesh


def test_negative_score_peers_are_pruned_without_px() -> None:
    lone = LoneRouter(params=GossipParams(do_px=True))
    lone.router.subscribe("t", lone.now)
    for k in range(1, 7):
        lone.add(k, topics=("t",))
        graft_from(lone, k)
    lone.sent()
    lone.score.scores[lone.id(3)] = -1.0
    lone.advance(1)
    assert lone.id(3) not in lone.router.mesh_peers("t")
    (prune,) = control_sent(lone)[3].prune
    assert prune.peers == () and prune.backoff == 60
    assert (lone.id(3), "t") in lone.score.pruned


def test_opportunistic_grafting_when_the_mesh_median_score_is_low() -> None:
    params = GossipParams(opportunistic_graft_ticks=3, opportunistic_graft_peers=2)
    lone = LoneRouter(params=params)
    lone.router.subscribe("t", lone.now)
    for k in range(1, 7):
        lone.add(k, topics=("t",), outbound=k <= 2)
        graft_from(lone, k)
    for k in range(7, 11):
        lone.add(k, topics=("t",))
        lone.score.scores[lone.id(k)] = 20.0  # better than every mesh member (score 0)
    lone.advance(2)  # ticks 1 and 2: nothing to do
    assert len(lone.router.mesh_peers("t")) == 6
    lone.advance(1)  # tick 3: median 0 < 5, graft two of the better peers
    mesh = lone.router.mesh_peers("t")
    assert len(mesh) == 8 and sum(1 for k in range(7, 11) if lone.id(k) in mesh) == 2
    assert lone.router.stats()["opportunistic_grafts"] == 2


def test_gossip_goes_to_d_lazy_or_gossip_factor_peers_outside_the_mesh() -> None:
    params = GossipParams(D_lazy=6, gossip_factor=0.25)
    lone = LoneRouter(params=params)
    lone.router.subscribe("t", lone.now)
    for k in range(1, 7):
        lone.add(k, topics=("t",))
        graft_from(lone, k)
    for k in range(7, 17):  # ten non-mesh peers: max(6, 2) = 6 get IHAVE
        lone.add(k, topics=("t",))
        lone.score.scores[lone.id(k)] = -0.5  # kept out of the mesh; above gossip_threshold
    msg_id = lone.router.publish("t", b"x", lone.now).msg_id
    lone.sent()
    lone.advance(1)
    ihave = {k: c.ihave for k, c in control_sent(lone).items() if c.ihave}
    assert len(ihave) == 6 and all(k >= 7 for k in ihave)
    assert all(i[0].message_ids == (msg_id,) for i in ihave.values())
    for k in range(17, 57):  # fifty non-mesh peers: 0.25 x 50 = 12
        lone.add(k, topics=("t",))
        lone.score.scores[lone.id(k)] = -0.5
    lone.sent()
    lone.advance(1)
    assert len([c for c in control_sent(lone).values() if c.ihave]) == 12


def test_messages_are_gossiped_for_mcache_gossip_beats_and_served_for_mcache_len() -> None:
    params = GossipParams(mcache_len=4, mcache_gossip=2)
    lone = LoneRouter(params=params)
    lone.router.subscribe("t", lone.now)
    lone.add(1, topics=("t",))
    lone.score.scores[lone.id(1)] = -0.5  # gossip peer, not mesh
    msg_id = lone.router.publish("t", b"x", lone.now).msg_id
    gossiped = []
    for _ in range(5):
        lone.advance(1)
        gossiped.append(bool(control_sent(lone).get(1, ControlMessage()).ihave))
    assert gossiped == [True, True, False, False, False]
    lone2 = LoneRouter(params=params)
    lone2.router.subscribe("t", lone2.now)
    lone2.add(1, topics=("t",))
    msg_id = lone2.router.publish("t", b"x", lone2.now).msg_id
    served = []
    for _ in range(5):
        lone2.advance(1)
        lone2.sent()
        lone2.send(1, RPC(control=ControlMessage(iwant=(IWant((msg_id,)),))))
        served.append(any(r.publish for r in lone2.sent().get(1, [])))
    assert served == [True, True, True, False, False]  # gossip_retransmission (3) would stop it anyway at 4


def test_idontwant_entries_are_forgotten_after_mcache_len_beats() -> None:
    lone = LoneRouter(params=GossipParams(mcache_len=3))
    lone.router.subscribe("t", lone.now)
    lone.add(1, topics=("t",))
    lone.send(1, RPC(control=ControlMessage(idontwant=(IDontWant((b"x",)),))))
    assert lone.router.stats()["dont_want"] == 1
    lone.advance(2)  # received at tick 0, kept through ticks 1 and 2 (js: dropped when ticks - tick >= mcache_len)
    assert lone.router.stats()["dont_want"] == 1
    lone.advance(1)
    assert lone.router.stats()["dont_want"] == 0


def test_idontwant_ids_per_beat_are_capped() -> None:
    lone = LoneRouter(params=GossipParams(max_idontwant_messages=3))
    lone.router.subscribe("t", lone.now)
    lone.add(1, topics=("t",))
    lone.send(1, RPC(control=ControlMessage(idontwant=(IDontWant((b"a", b"b")), IDontWant((b"c", b"d"))))))
    lone.send(1, RPC(control=ControlMessage(idontwant=(IDontWant((b"e",)),))))
    assert lone.router.stats()["dont_want"] == 3
    lone.advance(1)
    lone.send(1, RPC(control=ControlMessage(idontwant=(IDontWant((b"e",)),))))
    assert lone.router.stats()["dont_want"] == 4


def test_the_heartbeat_sends_one_rpc_per_peer() -> None:
    """GRAFTs and IHAVEs of several topics for one peer go out together."""
    lone = LoneRouter()
    for topic in ("a", "b"):
        lone.router.subscribe(topic, lone.now)
    lone.add(1, topics=("a", "b"))
    lone.sent()
    lone.advance(1)
    (rpc,) = lone.sent()[1]
    assert sorted(g.topic for g in rpc.control.graft) == ["a", "b"]
