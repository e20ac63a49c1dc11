"""AutoNAT v1 server and client over real secure connections on loopback (the server allowed to dial LAN addresses):
a dial-back that works, a refusal for addresses on another IP, the per-peer rate limit, requests in another peer's
name and malformed requests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from peerloom.codec.multiaddr import Multiaddr
from peerloom.codec.varint import encode_frame
from peerloom.identity import Identity, PeerId
from peerloom.net.host import Host
from peerloom.net.nat.autonat import (
    AUTONAT_PROTOCOL,
    AutoNatError,
    DialBackLimiter,
    DialRequest,
    DialResponse,
    Reachability,
    Status,
    Verdict,
    decode_message,
    encode_request,
)
from peerloom.net.nat.autonat_driver import AutoNatClient, AutoNatServer
from peerloom.net.relay.wire import read_message


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Host, Host, AutoNatServer]]:
    server_host, client_host = Host(Identity.generate()), Host(Identity.generate())
    server = AutoNatServer(dial_timeout=5.0, allow_lan=True, limiter=DialBackLimiter(per_peer=2))
    server_host.set_handler(AUTONAT_PROTOCOL, server.handle)
    await server_host.listen("/ip4/127.0.0.1/tcp/0")
    await client_host.listen("/ip4/127.0.0.1/tcp/0")
    try:
        yield server_host, client_host, server
    finally:
        await server.close()
        await client_host.close()
        await server_host.close()


async def raw_ask(client_host: Host, server_host: Host, payload: bytes) -> DialResponse:
    stream = await client_host.new_stream(server_host.listen_addrs[0], [AUTONAT_PROTOCOL])
    await stream.write(encode_frame(payload))
    answer = await read_message(stream, decode_message, 10.0, error=AutoNatError)
    assert isinstance(answer, DialResponse)
    return answer


async def test_a_dial_back_succeeds_and_the_rate_limit_refuses_the_third(
        pair: tuple[Host, Host, AutoNatServer]) -> None:
    server_host, client_host, server = pair
    client = AutoNatClient(client_host, reachability=Reachability(quorum=1), allow_lan=True)
    await client_host.connect(server_host.listen_addrs[0])
    await client_host.identify(server_host.peer_id)
    assert client.servers() == [server_host.peer_id]
    first = await client.ask(server_host.peer_id)
    assert first.status is Status.OK and first.addr == client_host.listen_addrs[0].without_p2p()
    assert client.reachability.verdict(time.monotonic())[0] is Verdict.PUBLIC
    assert (await client.ask(server_host.peer_id)).status is Status.OK
    third = await client.ask(server_host.peer_id)
    assert third.status is Status.E_DIAL_REFUSED and third.text == "rate limited"
    assert server.served[Status.OK] == 2 and server.served[Status.E_DIAL_REFUSED] == 1


async def test_requests_for_another_ip_another_peer_or_malformed_are_refused(
        pair: tuple[Host, Host, AutoNatServer]) -> None:
    server_host, client_host, server = pair
    port = client_host.listen_addrs[0].to_host_port()[1]
    elsewhere = DialRequest(client_host.peer_id, (Multiaddr(f"/ip4/127.0.0.2/tcp/{port}"),))
    answer = await raw_ask(client_host, server_host, encode_request(elsewhere))
    assert answer.status is Status.E_DIAL_REFUSED  # only the IP the request came from is dialled
    other = PeerId.from_public_key(Identity.generate().public_key)
    impostor = DialRequest(other, (Multiaddr(f"/ip4/127.0.0.1/tcp/{port}"),))
    assert (await raw_ask(client_host, server_host, encode_request(impostor))).status is Status.E_BAD_REQUEST
    assert (await raw_ask(client_host, server_host, b"\x08\x07")).status is Status.E_BAD_REQUEST
    assert server.served[Status.OK] == 0  # nothing was dialled
