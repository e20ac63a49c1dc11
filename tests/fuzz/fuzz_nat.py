"""atheris fuzz target for the NAT parsers: AutoNAT v1 messages and NAT-PMP responses (also fed to a client with
requests under way).

Run: `python tests/fuzz/fuzz_nat.py [corpus dir] [-atheris_runs=N]`. The first input byte picks the parser. Only
AutoNatError and NatPmpError may escape; a decoded message must re-encode and decode to the same value.
"""

from __future__ import annotations

import harness

from peerloom.codec.multiaddr import Multiaddr
from peerloom.identity import Identity, PeerId
from peerloom.net.nat.autonat import (
    AutoNatError,
    DialRequest,
    DialResponse,
    Status,
    decode_message,
    encode_request,
    encode_response,
)
from peerloom.net.nat.natpmp import NatPmpClient, NatPmpError, decode_response

_PEER = PeerId.from_public_key(Identity.generate().public_key)


def _autonat(data: bytes) -> None:
    message = decode_message(data)
    encoded = encode_request(message) if isinstance(message, DialRequest) else encode_response(message)
    assert decode_message(encoded) == message


def _natpmp(data: bytes) -> None:
    decode_response(data)


def _natpmp_client(data: bytes) -> None:
    client = NatPmpClient()
    client.request_external_address(0.0)
    client.add_mapping("tcp", 4001, now=0.0)
    client.add_mapping("udp", 6881, now=0.0)
    client.datagrams_to_send(0.0)
    client.datagram_received(data, 1.0)
    client.tick(2.0)
    assert client.next_wakeup() is None or client.next_wakeup() >= 0


def seeds() -> list[bytes]:
    request = encode_request(DialRequest(_PEER, (Multiaddr("/ip4/203.0.113.5/tcp/4001"),)))
    response = encode_response(DialResponse(Status.OK, "", Multiaddr("/ip4/203.0.113.5/tcp/4001")))
    natpmp = bytes.fromhex("0082000000000130" "0fa10fa1" "00000078")
    return [b"\x00" + request, b"\x00" + response, b"\x01" + natpmp, b"\x02" + natpmp]


TestOneInput = harness.Pick(_autonat, _natpmp, _natpmp_client, allowed=(AutoNatError, NatPmpError))

if __name__ == "__main__":
    harness.main(TestOneInput)
