"""peerloom's secure peer layer against js-libp2p (TCP + Noise + yamux + identify + ping), both directions.

The js side is tests/interop/js/peer.mjs (installed from npm by the test setup); each direction connects,
identifies, pings, and moves 64 MiB through an echo protocol with matching SHA-256.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from support.jslibp2p import ECHO_PROTOCOL, SINK_PROTOCOL, JsPeer, ensure_installed, run_dial

from peerloom.codec.multiaddr import Multiaddr
from peerloom.identity import Identity, PeerId
from peerloom.net.connection import PeerIdMismatch
from peerloom.net.host import Host
from peerloom.net.stream import Stream

pytestmark = [pytest.mark.interop, pytest.mark.timeout(600)]

MIB = 1 << 20
ECHO_BYTES = 64 * MIB


@pytest.fixture(scope="module")
def js_ready() -> None:
    res = ensure_installed()
    if not res:
        pytest.skip(res.reason)


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


async def sink(stream: Stream) -> None:
    total = 0
    while data := await stream.read():
        total += len(data)
    await stream.write(total.to_bytes(8, "big"))
    await stream.close()


async def test_peerloom_dials_js_libp2p(js_ready: None) -> None:
    async with JsPeer.listen() as js, Host(Identity.generate()) as host:
        conn = await host.connect(Multiaddr(js.addr))
        assert conn.remote_peer == PeerId.from_string(js.peer_id)

        info = await host.identify(conn.remote_peer)
        assert info.agent_version == js.agent and info.agent_version.startswith("js-libp2p/")
        assert {"/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", ECHO_PROTOCOL} <= set(info.protocols)
        seen = await js.wait_for("identify", peer=str(host.peer_id))  # js identified us too
        assert seen["agent"].startswith("peerloom/")

        rtts = await host.ping(conn.remote_peer, count=3)
        assert len(rtts) == 3

        payload = os.urandom(ECHO_BYTES)
        stream = await host.new_stream(conn.remote_peer, [ECHO_PROTOCOL])
        received = hashlib.sha256()
        count = 0

        async def send() -> None:
            for i in range(0, len(payload), MIB):
                await stream.write(payload[i : i + MIB])
            await stream.close()

        async def receive() -> None:
            nonlocal count
            while chunk := await stream.read():
                received.update(chunk)
                count += len(chunk)

        await asyncio.wait_for(asyncio.gather(send(), receive()), 300)
        assert count == ECHO_BYTES
        assert received.digest() == hashlib.sha256(payload).digest()


async def test_js_libp2p_dials_peerloom(js_ready: None) -> None:
    async with Host(Identity.generate()) as host:
        host.set_handler(ECHO_PROTOCOL, echo)
        host.set_handler(SINK_PROTOCOL, sink)
        addr = await host.listen("/ip4/127.0.0.1/tcp/0")
        out = await run_dial(str(addr), ping=3, echo=ECHO_BYTES, sink=8 * MIB)

        ident = out["identify"]
        assert ident["peer"] == str(host.peer_id)
        assert ident["agent"].startswith("peerloom/")
        assert {"/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", ECHO_PROTOCOL, SINK_PROTOCOL} <= set(ident["protocols"])
        assert out["ping"]["count"] == 3
        assert out["echo"]["match"] is True and out["echo"]["received_bytes"] == ECHO_BYTES
        assert out["echo"]["sent_sha256"] == out["echo"]["received_sha256"]
        assert out["sink"]["acked_bytes"] == 8 * MIB
        # and we identified the js dialer on its connection
        js_peer = PeerId.from_string(ident["local_peer"])
        assert (await host.identify(js_peer)).agent_version.startswith("js-libp2p/")


async def test_dialling_js_with_a_wrong_peer_id_fails(js_ready: None) -> None:
    async with JsPeer.listen() as js, Host(Identity.generate()) as host:
        wrong = Multiaddr(js.addr.rsplit("/p2p/", 1)[0]).encapsulate(f"/p2p/{Identity.generate().peer_id}")
        with pytest.raises(PeerIdMismatch):
            await host.connect(wrong)
