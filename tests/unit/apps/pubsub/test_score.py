"""GossipSub v1.1 peer scoring (gossipsub-v1.1.md, "Peer Scoring"): each term alone, decay, retention, thresholds."""

from __future__ import annotations

import hashlib

import pytest

from peerloom.apps.pubsub.params import GossipParams
from peerloom.apps.pubsub.score import PeerScore, RejectReason, ScoreParams, TopicScoreParams
from peerloom.identity import PeerId

T = "topic"


def peer(n: int) -> PeerId:
    return PeerId(b"\x12\x20" + hashlib.sha256(n.to_bytes(4, "big")).digest())


A, B, C = peer(1), peer(2), peer(3)


def only(**weights: float) -> TopicScoreParams:
    """Topic parameters with every weight 0 except those given (so one term is measured at a time)."""
    base = dict(
        topic_weight=1.0, time_in_mesh_weight=0.0, first_message_deliveries_weight=0.0,
        mesh_message_deliveries_weight=0.0, mesh_failure_penalty_weight=0.0, invalid_message_deliveries_weight=0.0,
    )
    return TopicScoreParams(**{**base, **weights})


def scorer(topic: TopicScoreParams | None = None, **global_params: object) -> PeerScore:
    params = ScoreParams(
        topics={} if topic is None else {T: topic}, default_topic=None, topic_score_cap=0.0,
        ip_colocation_factor_weight=0.0, behaviour_penalty_weight=0.0,
    )
    for name, value in global_params.items():
        setattr(params, name, value)
    ps = PeerScore(params)
    for p in (A, B, C):
        ps.add_peer(p, 0.0)
    return ps


def deliver(ps: PeerScore, msg_id: bytes, first: PeerId, now: float, topic: str = T) -> None:
    ps.validate_message(first, msg_id, topic, now)
    ps.deliver_message(first, msg_id, topic, now)


def test_unknown_peer_scores_zero() -> None:
    assert PeerScore().score(peer(99), 0.0) == 0.0


def test_p1_time_in_mesh_counts_quanta_up_to_the_cap_and_stops_at_prune() -> None:
    ps = scorer(only(time_in_mesh_weight=0.5, time_in_mesh_quantum=2.0, time_in_mesh_cap=10.0))
    ps.graft(A, T, 100.0)
    assert ps.score(A, 100.0) == 0.0
    assert ps.score(A, 110.0) == pytest.approx(0.5 * 5)
    assert ps.score(A, 1000.0) == pytest.approx(0.5 * 10)  # capped
    ps.prune(A, T, 1000.0)
    assert ps.score(A, 1001.0) == 0.0


def test_p2_first_deliveries_capped_and_only_for_the_first_sender() -> None:
    ps = scorer(only(first_message_deliveries_weight=2.0, first_message_deliveries_cap=3.0))
    for i in range(5):
        deliver(ps, b"m%d" % i, A, 1.0)
        ps.duplicate_message(B, b"m%d" % i, T, 1.0)
    assert ps.score(A, 1.0) == pytest.approx(2.0 * 3)
    assert ps.score(B, 1.0) == 0.0


def p3_params(**extra: float) -> TopicScoreParams:
    return only(
        mesh_message_deliveries_weight=-1.0, mesh_message_deliveries_threshold=4.0, mesh_message_deliveries_cap=10.0,
        mesh_message_deliveries_activation=5.0, mesh_message_deliveries_window=0.01, **extra,
    )


def test_p3_deficit_squared_only_after_activation() -> None:
    ps = scorer(p3_params())
    ps.graft(A, T, 0.0)
    deliver(ps, b"m1", A, 1.0)
    assert ps.score(A, 5.0) == 0.0  # not yet active
    assert ps.score(A, 6.0) == pytest.approx(-((4 - 1) ** 2))
    for i in range(2, 5):
        deliver(ps, b"m%d" % i, A, 6.0)
    assert ps.score(A, 6.0) == 0.0  # threshold met


def test_p3_near_first_deliveries_count_within_the_window_and_while_validating() -> None:
    ps = scorer(p3_params())
    for p in (A, B, C):
        ps.graft(p, T, 0.0)
    # B's copy arrives while A's is being validated: near-first
    ps.validate_message(A, b"m1", T, 10.0)
    ps.duplicate_message(B, b"m1", T, 10.001)
    ps.deliver_message(A, b"m1", T, 10.002)
    # C's copy 5 ms after acceptance counts, 50 ms after does not
    ps.duplicate_message(C, b"m1", T, 10.007)
    deliver(ps, b"m2", A, 11.0)
    ps.duplicate_message(C, b"m2", T, 11.05)
    ps.duplicate_message(B, b"m2", T, 11.05)
    assert ps.score(A, 20.0) == pytest.approx(-((4 - 2) ** 2))
    assert ps.score(B, 20.0) == pytest.approx(-((4 - 1) ** 2))
    assert ps.score(C, 20.0) == pytest.approx(-((4 - 1) ** 2))


def test_p3_only_for_mesh_peers() -> None:
    ps = scorer(p3_params())
    deliver(ps, b"m1", A, 1.0)  # A not in the mesh: no P3 counted, and no P3 penalty either
    assert ps.score(A, 20.0) == 0.0
    ps.graft(A, T, 20.0)
    assert ps.score(A, 30.0) == pytest.approx(-16.0)


def test_p3b_mesh_failure_penalty_sticks_after_prune_and_decays() -> None:
    ps = scorer(p3_params(mesh_failure_penalty_weight=-2.0, mesh_failure_penalty_decay=0.5))
    ps.graft(A, T, 0.0)
    ps.graft(B, T, 0.0)
    deliver(ps, b"m1", A, 1.0)
    ps.prune(A, T, 10.0)  # active, deficit 3
    ps.prune(B, T, 3.0)  # before activation: no penalty
    assert ps.score(A, 10.0) == pytest.approx(-2.0 * 9)
    assert ps.score(B, 10.0) == 0.0
    ps.refresh(11.0)
    assert ps.score(A, 11.0) == pytest.approx(-2.0 * 4.5)


def test_p4_invalid_messages_squared_for_sender_and_for_copies_of_a_rejected_message() -> None:
    ps = scorer(only(invalid_message_deliveries_weight=-1.0))
    ps.reject_message(A, b"bad-sig", T, RejectReason.INVALID_SIGNATURE, 1.0)
    ps.reject_message(A, b"no-sig", T, RejectReason.MISSING_SIGNATURE, 1.0)
    ps.reject_message(A, b"self", T, RejectReason.SELF_ORIGIN, 1.0)
    assert ps.score(A, 1.0) == pytest.approx(-9.0)
    # a validator's REJECT blames the first sender, those that sent it while it was validated, and later copies
    ps.validate_message(B, b"m", T, 2.0)
    ps.duplicate_message(C, b"m", T, 2.0)
    ps.reject_message(B, b"m", T, RejectReason.VALIDATION_REJECT, 2.0)
    assert ps.score(B, 2.0) == pytest.approx(-1.0)
    assert ps.score(C, 2.0) == pytest.approx(-1.0)
    ps.duplicate_message(A, b"m", T, 3.0)
    assert ps.score(A, 3.0) == pytest.approx(-16.0)


def test_ignore_and_blacklisted_blame_nobody() -> None:
    ps = scorer(only(invalid_message_deliveries_weight=-1.0))
    ps.validate_message(A, b"m", T, 1.0)
    ps.duplicate_message(B, b"m", T, 1.0)
    ps.reject_message(A, b"m", T, RejectReason.VALIDATION_IGNORE, 1.0)
    ps.duplicate_message(C, b"m", T, 1.5)
    ps.reject_message(A, b"x", T, RejectReason.BLACKLISTED, 1.0)
    assert [ps.score(p, 2.0) for p in (A, B, C)] == [0.0, 0.0, 0.0]


def test_p5_application_score_weighted() -> None:
    params = ScoreParams(app_specific_weight=3.0)
    ps = PeerScore(params, app_score=lambda p: -2.0 if p == A else 0.0)
    ps.add_peer(A, 0.0)
    ps.add_peer(B, 0.0)
    assert ps.score(A, 0.0) == -6.0
    assert ps.score(B, 0.0) == 0.0


def test_p6_ip_colocation_surplus_squared() -> None:
    ps = scorer(ip_colocation_factor_weight=-1.0, ip_colocation_factor_threshold=2)
    peers = [peer(10 + i) for i in range(5)]
    for p in peers:
        ps.add_peer(p, 0.0)
        ps.set_ip(p, "192.0.2.1")
    ps.set_ip(A, "192.0.2.2")
    assert ps.score(peers[0], 0.0) == pytest.approx(-((5 - 2) ** 2))
    assert ps.score(A, 0.0) == 0.0
    ps.set_ip(peers[4], "192.0.2.3")  # moved away: 4 left on .1
    assert ps.score(peers[0], 0.0) == pytest.approx(-4.0)
    assert ps.score(peers[4], 0.0) == 0.0


def test_p6_ipv6_counts_the_64_prefix() -> None:
    ps = scorer(ip_colocation_factor_weight=-1.0, ip_colocation_factor_threshold=1)
    ps.set_ip(A, "2001:db8::1")
    ps.set_ip(B, "2001:db8::2")
    assert ps.score(A, 0.0) == pytest.approx(-1.0)  # own address alone, the /64 shared by two


def test_p6_loopback_is_not_whitelisted_by_default_but_can_be() -> None:
    default = scorer(ip_colocation_factor_weight=-1.0, ip_colocation_factor_threshold=1)
    white = scorer(
        ip_colocation_factor_weight=-1.0, ip_colocation_factor_threshold=1,
        ip_colocation_factor_whitelist=("127.0.0.0/8",),
    )
    for ps in (default, white):
        for p in (A, B, C):
            ps.set_ip(p, "127.0.0.1")
    assert default.score(A, 0.0) == pytest.approx(-4.0)
    assert white.score(A, 0.0) == 0.0


def test_p7_behaviour_penalty_excess_over_threshold_squared_and_decays() -> None:
    ps = scorer(behaviour_penalty_weight=-1.0, behaviour_penalty_threshold=2.0, behaviour_penalty_decay=0.5)
    ps.add_penalty(A, 2)
    assert ps.score(A, 0.0) == 0.0
    ps.add_penalty(A, 4)
    assert ps.score(A, 0.0) == pytest.approx(-16.0)
    ps.refresh(1.0)  # 6 -> 3
    assert ps.score(A, 1.0) == pytest.approx(-1.0)


def test_decay_multiplies_counters_and_drops_them_to_zero() -> None:
    ps = scorer(only(first_message_deliveries_weight=1.0, first_message_deliveries_decay=0.5,
                     first_message_deliveries_cap=100.0), decay_to_zero=0.2)
    deliver(ps, b"m", A, 0.0)
    ps.refresh(1.0)
    assert ps.score(A, 1.0) == pytest.approx(0.5)
    ps.refresh(2.0)
    assert ps.score(A, 2.0) == pytest.approx(0.25)
    ps.refresh(3.0)  # 0.125 < decay_to_zero
    assert ps.score(A, 3.0) == 0.0


def test_topic_weight_and_cap_apply_to_the_topic_sum_only() -> None:
    params = ScoreParams(
        topics={T: only(topic_weight=2.0, first_message_deliveries_weight=1.0, first_message_deliveries_cap=100.0)},
        default_topic=None, topic_score_cap=5.0, app_specific_weight=1.0,
    )
    ps = PeerScore(params, app_score=lambda p: 1.0)
    ps.add_peer(A, 0.0)
    deliver(ps, b"m1", A, 0.0)
    assert ps.score(A, 0.0) == pytest.approx(2.0 + 1.0)
    for i in range(2, 10):
        deliver(ps, b"m%d" % i, A, 0.0)
    assert ps.score(A, 0.0) == pytest.approx(5.0 + 1.0)


def test_unlisted_topics_use_default_topic_or_are_not_scored() -> None:
    ps = scorer(only(invalid_message_deliveries_weight=-1.0))
    ps.reject_message(A, b"x", "other", RejectReason.INVALID_SIGNATURE, 0.0)
    assert ps.score(A, 0.0) == 0.0  # default_topic None
    ps = PeerScore(ScoreParams(default_topic=only(invalid_message_deliveries_weight=-1.0)))
    ps.add_peer(A, 0.0)
    ps.reject_message(A, b"x", "other", RejectReason.INVALID_SIGNATURE, 0.0)
    assert ps.score(A, 0.0) == -1.0


def test_a_negative_score_is_retained_after_remove_until_retain_score() -> None:
    ps = scorer(only(invalid_message_deliveries_weight=-1.0), retain_score=100.0)
    ps.reject_message(A, b"x", T, RejectReason.INVALID_SIGNATURE, 0.0)
    ps.remove_peer(A, 10.0)
    ps.refresh(50.0)  # frozen while away: no decay
    ps.add_peer(A, 60.0)
    assert ps.score(A, 60.0) == -1.0
    ps.remove_peer(A, 70.0)
    ps.refresh(169.0)
    assert ps.score(A, 169.0) == -1.0
    ps.refresh(170.0)
    assert ps.score(A, 170.0) == 0.0
    assert A not in ps.peers()


def test_a_positive_peer_is_forgotten_at_remove_with_its_ip() -> None:
    ps = scorer(only(first_message_deliveries_weight=1.0), ip_colocation_factor_weight=-1.0,
                ip_colocation_factor_threshold=1)
    ps.set_ip(A, "192.0.2.1")
    ps.set_ip(B, "192.0.2.1")
    ps.set_ip(C, "192.0.2.1")
    for i in range(10):
        deliver(ps, b"m%d" % i, A, 0.0)
    assert ps.score(A, 0.0) > 0
    ps.remove_peer(A, 1.0)
    ps.remove_peer(C, 1.0)  # negative (colocation): retained, still counted on the IP
    assert A not in ps.peers() and C in ps.peers()
    assert ps.score(B, 1.0) == pytest.approx(-1.0)


def test_leaving_the_mesh_by_disconnect_costs_p3b() -> None:
    ps = scorer(p3_params(mesh_failure_penalty_weight=-1.0))
    ps.graft(A, T, 0.0)
    ps.remove_peer(A, 10.0)
    assert ps.score(A, 10.0) == pytest.approx(-16.0)


def test_delivery_records_expire() -> None:
    ps = scorer(p3_params(), delivery_record_ttl=5.0)
    ps.graft(B, T, 0.0)
    deliver(ps, b"m", A, 0.0)
    ps.refresh(6.0)
    ps.duplicate_message(B, b"m", T, 6.0)  # record gone: not counted, not an error
    assert ps.score(B, 7.0) == pytest.approx(-16.0)


def test_defaults_invalid_messages_graylist_quickly_honest_peer_stays_non_negative() -> None:
    th = GossipParams()  # the router compares scores with its thresholds
    ps = PeerScore()
    honest, attacker = A, B
    for p in (honest, attacker):
        ps.add_peer(p, 0.0)
        ps.set_ip(p, f"192.0.2.{1 if p == honest else 2}")
        ps.graft(p, T, 0.0)
    now = 0.0
    for i in range(600):  # ten minutes of an honest peer delivering now and then, a quiet topic between
        now = i * 1.0
        if i % 60 == 0:
            deliver(ps, b"h%d" % i, honest, now)
        ps.refresh(now)
        assert ps.score(honest, now) >= 0
    scores = []
    for i in range(4):
        ps.reject_message(attacker, b"a%d" % i, T, RejectReason.INVALID_SIGNATURE, now)
        scores.append(ps.score(attacker, now))
    assert scores[1] < th.gossip_threshold
    assert scores[3] < th.graylist_threshold
    assert th.graylist_threshold < th.publish_threshold <= th.gossip_threshold < 0


def test_thresholds_defaults_match_the_spec_examples() -> None:
    th = GossipParams()
    assert (th.gossip_threshold, th.publish_threshold, th.graylist_threshold) == (-10, -50, -80)
    assert (th.accept_px_threshold, th.opportunistic_graft_threshold) == (10, 5)


def test_p6_ipv4_mapped_ipv6_counts_as_ipv4_and_a_whitelisted_ipv6_host_escapes_its_64() -> None:
    ps = scorer(ip_colocation_factor_weight=-1.0, ip_colocation_factor_threshold=1,
                ip_colocation_factor_whitelist=("2001:db8::1/128",))
    ps.set_ip(A, "::ffff:192.0.2.7")
    ps.set_ip(B, "192.0.2.7")
    ps.set_ip(C, "2001:db8::1")  # whitelisted: counted nowhere, not even in its /64
    d = peer(4)
    ps.add_peer(d, 0.0)
    ps.set_ip(d, "2001:db8::2")
    assert ps.score(A, 0.0) == pytest.approx(-1.0)
    assert ps.score(C, 0.0) == 0.0
    assert ps.score(d, 0.0) == 0.0


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: TopicScoreParams(invalid_message_deliveries_weight=1.0), "invalid_message_deliveries_weight"),
        (lambda: TopicScoreParams(first_message_deliveries_weight=-1.0), "first_message_deliveries_weight"),
        (lambda: TopicScoreParams(first_message_deliveries_decay=1.5), "first_message_deliveries_decay"),
        (lambda: TopicScoreParams(mesh_message_deliveries_cap=1.0, mesh_message_deliveries_threshold=2.0),
         "mesh_message_deliveries_cap"),
        (lambda: ScoreParams(ip_colocation_factor_threshold=0), "ip_colocation_factor_threshold"),
        (lambda: ScoreParams(behaviour_penalty_weight=1.0), "behaviour_penalty_weight"),
        (lambda: ScoreParams(ip_colocation_factor_whitelist=("not a network",)), "does not appear"),
        (lambda: GossipParams(graylist_threshold=-10.0), "graylist"),
        (lambda: GossipParams(accept_px_threshold=-1.0), "accept_px_threshold"),
    ],
)
def test_parameters_outside_the_spec_constraints_are_refused(make, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()
