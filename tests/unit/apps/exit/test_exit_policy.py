"""The exit's policy: who, which ports, which addresses (after resolution), and its token buckets."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from peerloom.apps.exit.policy import ExitPolicy, is_public_address, wait_for
from peerloom.apps.exit.store import SERVED, USED, ExitStore
from peerloom.identity import Identity
from peerloom.state import State
from peerloom.torrent.ratelimit import TokenBucket


@pytest.mark.parametrize("text", ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.0.1", "100.64.0.1", "169.254.9.9",
                                  "0.0.0.0", "224.0.0.251", "239.1.2.3", "255.255.255.255", "192.0.2.1", "::1", "::",
                                  "fe80::1", "fc00::1", "ff02::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1",
                                  "2002:7f00:1::1", "2001:db8::1"])
def test_addresses_that_are_not_global_unicast_are_not_public(text: str) -> None:
    assert not is_public_address(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_global_unicast_addresses_are_public(text: str) -> None:
    assert is_public_address(ipaddress.ip_address(text))


def test_policy_admits_only_its_peers_and_ports_and_private_only_when_asked() -> None:
    allowed, other = Identity.generate().peer_id, Identity.generate().peer_id
    policy = ExitPolicy.build([str(allowed)], [80, 443])
    assert policy.serving and policy.admits(allowed) and not policy.admits(other)
    assert policy.port_allowed(443) and not policy.port_allowed(22)
    assert not policy.address_allowed(ipaddress.ip_address("127.0.0.1"))
    assert ExitPolicy.build([allowed], allow_private=True).address_allowed(ipaddress.ip_address("127.0.0.1"))
    assert ExitPolicy.build([allowed]).port_allowed(22)  # no ports given: every port
    assert not ExitPolicy().serving and not ExitPolicy().admits(allowed)
    for bad in (dict(ports=[0]), dict(ports=[70000]), dict(rate=-1)):
        with pytest.raises(ValueError):
            ExitPolicy.build([allowed], **bad)  # type: ignore[arg-type]


def test_the_token_bucket_holds_a_chunk_until_its_bytes_are_there() -> None:
    bucket = TokenBucket(1000)
    assert wait_for(bucket, 1000, 0.0) == pytest.approx(1.0)  # empty at first: a second's worth to wait
    assert wait_for(bucket, 1000, 0.5) == pytest.approx(0.5)
    assert wait_for(bucket, 1000, 1.0) == 0.0  # full: spent
    assert wait_for(bucket, 400, 1.2) == pytest.approx(0.2)
    assert wait_for(bucket, 400, 1.5) == 0.0
    assert wait_for(TokenBucket(0), 10**9, 0.0) == 0.0  # unlimited


def test_accounting_adds_up_per_peer_and_role_and_survives_a_reopen(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite")
    accounting = ExitStore(state)
    live = accounting.traffic("peerA", SERVED)
    live.to_destination, live.from_destination, live.connections = 10, 2000, 1
    accounting.flush()
    live.from_destination += 5  # a pump still counting after the flush
    assert accounting.totals()[SERVED]["peerA"].from_destination == 2005
    accounting.flush()
    accounting.traffic("peerB", USED).to_destination += 7
    accounting.flush()
    state.close()
    state = State(tmp_path / "state.sqlite")
    totals = ExitStore(state).totals()
    state.close()
    assert totals[SERVED]["peerA"].as_json() == {"to_destination": 10, "from_destination": 2005, "connections": 1}
    assert totals[USED]["peerB"].to_destination == 7
