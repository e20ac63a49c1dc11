"""The submitter's scheduler, sans-I/O: replication to distinct keys, votes, extra replicas up to a cap, reputation
and its threshold, adaptive replication with spot checks, deadlines and disconnects, credit."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peerloom.apps.compute.scheduler import (
    Assign,
    Credited,
    Flagged,
    JobFinished,
    Outvoted,
    Scheduler,
    SchedulerParams,
    UnitError,
    Validated,
)
from peerloom.identity import Identity, PeerId

PEERS = [Identity(Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32)).peer_id for i in range(8)]
JOB = b"j" * 16
GOOD, BAD, OTHER = b"good", b"bad", b"other"


def scheduler(volunteers: int = 3, slots: int = 1, **params: object) -> Scheduler:
    s = Scheduler(SchedulerParams(**params), random.Random(1))  # type: ignore[arg-type]
    for peer in PEERS[:volunteers]:
        s.add_volunteer(peer, slots)
    return s


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def test_each_unit_goes_to_quorum_distinct_volunteers_and_agreement_validates():
    s = scheduler(volunteers=3, slots=4)
    s.add_job(JOB, 2, quorum=2)
    assigned = s.assign(0.0)
    assert len(assigned) == 4
    for unit in (0, 1):
        peers = [a.peer for a in assigned if a.unit == unit]
        assert len(peers) == 2 and len(set(peers)) == 2
    assert s.assign(0.0) == []  # both units have their replicas out
    for a in assigned:
        assert s.reply(a.peer, JOB, a.unit, GOOD, 1000, 1.0)
    events = s.take_events()
    assert sorted(e.unit for e in of(events, Validated)) == [0, 1]
    assert len(of(events, Credited)) == 4 and all(e.fuel == 1000 for e in of(events, Credited))
    assert of(events, JobFinished) == [JobFinished(JOB)]
    assert s.progress(JOB)["validated"] == 2


def test_never_two_replicas_on_one_key():
    s = scheduler(volunteers=1, slots=8)
    s.add_job(JOB, 1, quorum=2)
    assigned = s.assign(0.0)
    assert len(assigned) == 1  # the second replica waits for another volunteer
    s.reply(assigned[0].peer, JOB, 0, GOOD, 5, 1.0)
    assert s.assign(1.0) == [] and not of(s.take_events(), Validated)
    s.add_volunteer(PEERS[1], 1)
    (second,) = s.assign(2.0)
    assert second.peer == PEERS[1]
    s.reply(second.peer, JOB, 0, GOOD, 5, 3.0)
    assert of(s.take_events(), Validated)


def test_a_disagreement_sends_one_more_replica_and_the_liar_is_outvoted():
    s = scheduler(volunteers=4)
    s.add_job(JOB, 1, quorum=2)
    a, b = s.assign(0.0)
    s.reply(a.peer, JOB, 0, GOOD, 10, 1.0)
    s.reply(b.peer, JOB, 0, BAD, 10, 1.0)
    (c,) = s.assign(1.0)  # exactly one more
    assert c.peer not in (a.peer, b.peer)
    s.reply(c.peer, JOB, 0, GOOD, 10, 2.0)
    events = s.take_events()
    (validated,) = of(events, Validated)
    assert validated.digest == GOOD and validated.replies == 3
    assert [e.peer for e in of(events, Outvoted)] == [b.peer]
    assert {e.peer for e in of(events, Credited)} == {a.peer, c.peer}
    assert s.volunteers[b.peer].reputation == pytest.approx(0.5)
    assert s.volunteers[b.peer].credit == 0 and s.volunteers[a.peer].credit == 10


def test_no_agreement_within_the_cap_is_a_unit_error():
    s = scheduler(volunteers=8, max_extra=2)
    s.add_job(JOB, 1, quorum=2)
    digests = iter([b"1", b"2", b"3", b"4"])
    for step in range(3):
        for a in s.assign(float(step)):
            s.reply(a.peer, JOB, 0, next(digests), 1, float(step))
    events = s.take_events()
    (error,) = of(events, UnitError)
    assert "no 2 of 4 replies agreed" in error.reason
    assert of(events, JobFinished) and s.assign(9.0) == []


def test_a_volunteer_below_the_threshold_is_flagged_and_gets_no_more_work():
    s = scheduler(volunteers=5, slots=2, threshold=0.3)
    liar = PEERS[0]
    s.add_job(JOB, 20, quorum=2)
    flagged_at = None
    took = set()
    for step in range(60):
        for a in s.assign(float(step)):
            if a.peer == liar:
                assert flagged_at is None, "a flagged volunteer got work"
                took.add(a.unit)
            s.reply(a.peer, JOB, a.unit, BAD if a.peer == liar else GOOD, 1, float(step))
        events = s.take_events()
        if of(events, Flagged) and flagged_at is None:
            flagged_at = step
            assert of(events, Flagged)[0].peer == liar
        if of(events, JobFinished):
            break
    assert flagged_at is not None and len(took) >= 2
    assert s.progress(JOB)["validated"] == 20  # every unit the liar took was validated without it
    assert s.volunteers[liar].losses == len(took) and s.volunteers[liar].wins == 0
    assert s.volunteers[liar].reputation < 0.3 and not s.eligible(s.volunteers[liar])


def test_adaptive_replication_trusts_a_proven_volunteer_with_single_replicas():
    s = scheduler(volunteers=2, slots=1, trust_after=3, spot_check=0.0)
    s.add_job(JOB, 4, quorum=2, adaptive=True)
    for step in range(3):  # three agreeing replies make both volunteers trusted
        for a in s.assign(float(step)):
            s.reply(a.peer, JOB, a.unit, GOOD, 1, float(step))
    assert all(v.streak >= 3 for v in s.volunteers.values())
    s.take_events()
    assigned = s.assign(10.0)
    assert len(assigned) == 1  # the last unit: one replica, no quorum
    s.reply(assigned[0].peer, JOB, 3, GOOD, 1, 11.0)
    (validated,) = of(s.take_events(), Validated)
    assert validated.replies == 1


def test_spot_checks_still_replicate_a_trusted_volunteers_units():
    s = scheduler(volunteers=2, slots=1, trust_after=0, spot_check=1.0)
    s.add_job(JOB, 1, quorum=2, adaptive=True)
    assert len(s.assign(0.0)) == 2  # every unit is spot-checked


def test_a_job_without_adaptive_replication_always_uses_the_quorum():
    s = scheduler(volunteers=2, slots=1, trust_after=0, spot_check=0.0)
    s.add_job(JOB, 1, quorum=2)
    assert len(s.assign(0.0)) == 2


def test_a_missed_deadline_reassigns_the_replica():
    s = scheduler(volunteers=3, deadline=10.0)
    s.add_job(JOB, 1, quorum=2)
    a, b = s.assign(0.0)
    assert s.next_wakeup() == 10.0
    s.reply(a.peer, JOB, 0, GOOD, 1, 1.0)
    s.tick(9.9)
    assert s.assign(9.9) == []
    s.tick(10.0)
    (c,) = s.assign(10.0)
    assert c.peer not in (a.peer, b.peer)
    assert not s.reply(b.peer, JOB, 0, GOOD, 1, 11.0)  # too late: not counted
    s.reply(c.peer, JOB, 0, GOOD, 1, 11.0)
    assert of(s.take_events(), Validated)
    assert s.volunteers[b.peer].failures == 1


def test_a_disconnect_reassigns_its_replicas_and_too_many_losses_are_an_error():
    s = scheduler(volunteers=6, max_failures=2)
    s.add_job(JOB, 1, quorum=2)
    lost = 0
    errors: list = []
    while not errors:
        for a in s.assign(0.0):
            s.remove_volunteer(a.peer, 0.0)
            lost += 1
        errors = of(s.take_events(), UnitError)
    assert lost == 4  # two replicas out at a time: the third loss settles it, the fourth changes nothing
    assert "3 replicas were lost" in errors[0].reason and "disconnected" in errors[0].reason
    assert s.volunteers[PEERS[0]].connected is False


def test_flagging_a_volunteer_takes_back_its_replicas():
    s = scheduler(volunteers=3)
    s.add_job(JOB, 1, quorum=2)
    a, _ = s.assign(0.0)
    s.flag(a.peer, "sent garbage", 0.0)
    (flagged,) = of(s.take_events(), Flagged)
    assert flagged.peer == a.peer and "garbage" in flagged.reason
    (c,) = s.assign(0.0)
    assert c.peer != a.peer
    s.add_volunteer(a.peer, 4)  # it comes back: still no work
    assert s.volunteers[a.peer].free == 0


def test_credit_is_the_least_fuel_claimed_by_agreeing_volunteers_and_late_replies_are_judged():
    s = scheduler(volunteers=3, slots=1, max_extra=1)
    s.add_job(JOB, 1, quorum=2)
    a, b = s.assign(0.0)
    s.reply(a.peer, JOB, 0, GOOD, 900, 1.0)
    s.reply(b.peer, JOB, 0, GOOD, 10**9, 1.0)  # an inflated claim gains nothing
    events = s.take_events()
    assert {e.fuel for e in of(events, Credited)} == {900}
    assert of(events, Validated)[0].fuel == 900


def test_a_resumed_job_never_sends_out_its_settled_units():
    s = scheduler(volunteers=3, slots=4)
    s.add_job(JOB, 4, quorum=2, validated={0: (GOOD, 1), 2: (GOOD, 1)}, errors={3: "boom"})
    assert {a.unit for a in s.assign(0.0)} == {1}
    assert s.progress(JOB) | {"in_flight": 0} == {"units": 4, "validated": 2, "errors": 1, "in_flight": 0,
                                                  "replies": 0, "volunteers": 2}
    s2 = scheduler()
    s2.add_job(JOB, 2, validated={0: (GOOD, 1), 1: (GOOD, 1)})
    assert s2.take_events() == [JobFinished(JOB)] and s2.assign(0.0) == []


def test_unexpected_replies_change_nothing():
    s = scheduler(volunteers=2)
    s.add_job(JOB, 1, quorum=2)
    s.assign(0.0)
    stranger = PEERS[7]
    assert not s.reply(stranger, JOB, 0, GOOD, 1, 1.0)
    assert not s.reply(PEERS[0], b"x" * 16, 0, GOOD, 1, 1.0)
    assert not s.reply(PEERS[0], JOB, 5, GOOD, 1, 1.0)
    assert not s.failed(stranger, JOB, 0, "?", 1.0)
    assert s.take_events() == []


def test_removing_a_job_frees_the_slots():
    s = scheduler(volunteers=2, slots=1)
    s.add_job(JOB, 1, quorum=2)
    assert len(s.assign(0.0)) == 2
    s.remove_job(JOB)
    assert all(v.busy == 0 for v in s.volunteers.values())
    other = b"k" * 16
    s.add_job(other, 1, quorum=2)
    assert {type(a) for a in s.assign(0.0)} == {Assign}


def test_bad_jobs_are_refused():
    s = scheduler()
    s.add_job(JOB, 1)
    with pytest.raises(ValueError):
        s.add_job(JOB, 1)
    with pytest.raises(ValueError):
        s.add_job(b"z" * 16, 1, quorum=0)


def test_peer_ids_are_distinct():
    assert len(set(PEERS)) == len(PEERS) and all(isinstance(p, PeerId) for p in PEERS)


def test_a_volunteer_with_too_many_replies_awaiting_their_vote_gets_no_more_work():
    s = scheduler(volunteers=2, slots=1, max_unjudged=2)
    fast, slow = PEERS[0], PEERS[1]
    s.add_job(JOB, 10, quorum=2)
    took = []
    for step in range(10):
        for a in s.assign(float(step)):
            if a.peer == fast:
                took.append(a.unit)
                s.reply(fast, JOB, a.unit, GOOD, 1, float(step))
    assert took == [0, 1]  # two replies whose votes wait for the slow volunteer: no third unit
    assert s.volunteers[fast].unjudged == 2 and s.volunteers[slow].busy == 1
    (held,) = [u for u, peers in s.assignments(JOB).items() if slow in peers]
    s.reply(slow, JOB, held, GOOD, 1, 20.0)  # a vote settles: the fast one may take one more
    assert s.volunteers[fast].unjudged == 1
    assert fast in {a.peer for a in s.assign(21.0)}


def test_votes_of_a_unit_that_errs_stop_counting_against_their_voters():
    s = scheduler(volunteers=2, max_extra=0, max_unjudged=1)
    s.add_job(JOB, 2, quorum=2)
    a, b = s.assign(0.0)
    s.reply(a.peer, JOB, 0, b"1", 1, 1.0)
    s.reply(b.peer, JOB, 0, b"2", 1, 1.0)
    assert of(s.take_events(), UnitError)
    assert s.volunteers[a.peer].unjudged == 0 and s.volunteers[b.peer].unjudged == 0


def test_a_lone_volunteer_may_retry_a_replica_it_lost_without_a_vote():
    s = scheduler(volunteers=1)
    s.add_job(JOB, 1, quorum=1)
    (a,) = s.assign(0.0)
    s.failed(a.peer, JOB, 0, "WorkerCrashed", 1.0)
    (again,) = s.assign(1.0)
    assert again.peer == a.peer
    s.reply(a.peer, JOB, 0, GOOD, 1, 2.0)
    assert of(s.take_events(), Validated)
