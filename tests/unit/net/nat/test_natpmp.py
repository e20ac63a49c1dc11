"""NAT-PMP (RFC 6886): the messages, retransmission, renewal at half lifetime, deletion."""

from __future__ import annotations

import struct

import pytest

from peerloom.net.nat.natpmp import (
    ExternalAddress,
    Mapped,
    MappingFailed,
    NatPmpClient,
    NatPmpError,
    decode_response,
    encode_map_request,
)
from peerloom.net.nat.portmap import default_gateway


def map_answer(opcode: int, internal: int, external: int, lifetime: int, result: int = 0) -> bytes:
    return struct.pack("!BBHIHHI", 0, 128 + opcode, result, 42, internal, external, lifetime)


def test_the_request_layout_of_rfc_6886() -> None:
    assert encode_map_request("tcp", 4001, 4001, 7200) == bytes.fromhex("00020000" "0fa1" "0fa1" "00001c20")
    assert encode_map_request("udp", 6881, 0, 0) == bytes.fromhex("00010000" "1ae1" "0000" "00000000")


@pytest.mark.parametrize("data", [b"", b"\x00\x80\x00", b"\x01\x80" + bytes(10), b"\x00\x00" + bytes(10),
                                  b"\x00\x80" + bytes(6), b"\x00\x82" + bytes(10), b"\x00\x85" + bytes(14),
                                  bytes(1101)])
def test_malformed_responses_raise_the_typed_error(data: bytes) -> None:
    with pytest.raises(NatPmpError):
        decode_response(data)


def test_mapping_retransmits_with_doubling_timeouts_then_gives_up() -> None:
    client = NatPmpClient(max_tries=3)
    client.add_mapping("tcp", 4001, now=0.0)
    assert len(client.datagrams_to_send(0.0)) == 1
    assert client.datagrams_to_send(0.2) == [] and client.next_wakeup() == 0.25
    assert len(client.datagrams_to_send(0.25)) == 1 and client.next_wakeup() == 0.75
    assert len(client.datagrams_to_send(0.75)) == 1 and client.next_wakeup() == pytest.approx(1.75)
    assert client.datagrams_to_send(5.0) == []
    assert client.tick(5.0) == [MappingFailed("tcp", 4001, "the gateway did not answer")]
    assert not client.waiting


def test_a_granted_mapping_is_renewed_halfway_and_deleted_with_lifetime_zero() -> None:
    client = NatPmpClient()
    client.request_external_address(0.0)
    client.add_mapping("tcp", 4001, lifetime=120, now=0.0)
    assert len(client.datagrams_to_send(0.0)) == 2
    assert client.datagram_received(bytes.fromhex("00800000" "0000002a" "cb007105"), 0.1) == [
        ExternalAddress("203.0.113.5", 42)]
    assert client.datagram_received(map_answer(2, 4001, 5001, 120), 0.1) == [Mapped("tcp", 4001, 5001, 120)]
    assert not client.waiting and client.next_wakeup() == pytest.approx(60.1)
    assert client.datagram_received(map_answer(2, 4001, 5001, 120), 0.2) == []  # a late duplicate
    assert client.tick(60.1) == []
    renewal = client.datagrams_to_send(60.1)
    assert renewal == [encode_map_request("tcp", 4001, 5001, 120)]  # asks to keep the port it was given
    client.datagram_received(map_answer(2, 4001, 5001, 120), 60.2)
    client.remove_all(70.0)
    assert client.datagrams_to_send(70.0) == [encode_map_request("tcp", 4001, 0, 0)]
    assert client.datagram_received(map_answer(2, 4001, 0, 0), 70.1) == [Mapped("tcp", 4001, 0, 0)]
    assert client.mappings == {} and client.next_wakeup() is None


def test_a_refusal_fails_the_oldest_request_of_its_opcode() -> None:
    client = NatPmpClient()
    client.add_mapping("udp", 6881, now=0.0)
    client.datagrams_to_send(0.0)
    assert client.datagram_received(map_answer(1, 0, 0, 0, result=2), 0.1) == [
        MappingFailed("udp", 6881, "not authorized or refused")]
    assert client.mappings == {}


def test_default_gateway_reads_the_route_table(tmp_path) -> None:
    routes = tmp_path / "route"
    routes.write_text("Iface\tDestination\tGateway\tFlags\n"
                      "eth0\t0001120A\t00000000\t0001\n"
                      "eth0\t00000000\t0101120A\t0003\n")
    assert default_gateway(routes) == "10.18.1.1"
    assert default_gateway(tmp_path / "missing") is None
