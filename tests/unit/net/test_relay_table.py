"""The relay's reservation and circuit bookkeeping (sans-I/O): refreshes, expiry, and every cap."""

from __future__ import annotations

from peerloom.identity import Identity
from peerloom.net.relay.messages import Status
from peerloom.net.relay.reservations import RelayLimits, RelayTable

PEERS = [Identity.generate().peer_id for _ in range(8)]


def test_a_peer_reserving_again_refreshes_its_one_entry() -> None:
    table = RelayTable(RelayLimits(reservation_ttl=10, max_reservations=2))
    for i in range(1000):
        status, expires = table.reserve(PEERS[0], "10.0.0.1", float(i))
        assert status is Status.OK and expires == i + 10
    assert len(table) == 1 and table.state_size() == 2


def test_total_and_per_ip_caps() -> None:
    table = RelayTable(RelayLimits(max_reservations=3, max_reservations_per_ip=2))
    assert table.reserve(PEERS[0], "10.0.0.1", 0)[0] is Status.OK
    assert table.reserve(PEERS[1], "10.0.0.1", 0)[0] is Status.OK
    assert table.reserve(PEERS[2], "10.0.0.1", 0) == (Status.RESOURCE_LIMIT_EXCEEDED, 0.0)
    assert table.reserve(PEERS[2], "10.0.0.2", 0)[0] is Status.OK
    assert table.reserve(PEERS[3], "10.0.0.3", 0)[0] is Status.RESOURCE_LIMIT_EXCEEDED
    table.remove(PEERS[0])
    assert table.reserve(PEERS[3], "10.0.0.3", 0)[0] is Status.OK


def test_a_peer_moving_address_moves_its_reservation() -> None:
    table = RelayTable(RelayLimits(max_reservations_per_ip=1))
    table.reserve(PEERS[0], "10.0.0.1", 0)
    assert table.reserve(PEERS[0], "10.0.0.2", 0)[0] is Status.OK
    assert table.reserve(PEERS[1], "10.0.0.1", 0)[0] is Status.OK  # the old address's slot was freed
    assert len(table) == 2


def test_reservations_expire() -> None:
    table = RelayTable(RelayLimits(reservation_ttl=10))
    table.reserve(PEERS[0], "10.0.0.1", 0)
    assert table.has_reservation(PEERS[0], 9.9) and table.next_wakeup() == 10
    assert not table.has_reservation(PEERS[0], 10)
    table.expire(10)
    assert len(table) == 0 and table.state_size() == 0 and table.next_wakeup() is None


def test_circuits_need_a_reservation_and_respect_the_caps() -> None:
    table = RelayTable(RelayLimits(max_circuits=3, max_circuits_per_peer=2))
    assert table.open_circuit(PEERS[1], PEERS[0], 0) is Status.NO_RESERVATION
    table.reserve(PEERS[0], "10.0.0.1", 0)
    table.reserve(PEERS[5], "10.0.0.2", 0)
    assert table.open_circuit(PEERS[1], PEERS[0], 0) is Status.OK
    assert table.open_circuit(PEERS[2], PEERS[0], 0) is Status.OK
    assert table.open_circuit(PEERS[3], PEERS[0], 0) is Status.RESOURCE_LIMIT_EXCEEDED  # per destination
    assert table.open_circuit(PEERS[3], PEERS[5], 0) is Status.OK
    assert table.open_circuit(PEERS[4], PEERS[5], 0) is Status.RESOURCE_LIMIT_EXCEEDED  # in all
    for src, dst in ((PEERS[1], PEERS[0]), (PEERS[2], PEERS[0]), (PEERS[3], PEERS[5])):
        table.close_circuit(src, dst)
    assert table.circuits == 0 and table.state_size() == 4  # two reservations, two IP counts
