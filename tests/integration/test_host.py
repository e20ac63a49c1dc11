"""Two peerloom hosts on loopback: the secure upgrade, streams, identify, ping, and the security checks."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peerloom.codec.multiaddr import Multiaddr
from peerloom.errors import AccessRefused
from peerloom.identity import Identity, PeerId
from peerloom.net import connection as connection_module
from peerloom.net.connection import LinkError, PeerIdMismatch, PeerRefused
from peerloom.net.host import (
    Host,
    HostLimits,
    PeerConnected,
    PeerDisconnected,
    PeerEvent,
    PeerIdentified,
    ProtocolNotSupported,
)
from peerloom.net.noise import NoiseHandshake, _encode_payload, _encode_public_key
from peerloom.net.stream import Stream, StreamError

ECHO = "/test/echo/1.0.0"


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


async def pair(**limits: int) -> tuple[Host, Host, Multiaddr]:
    a = Host(Identity.generate(), limits=HostLimits(**limits))
    b = Host(Identity.generate())
    a.set_handler(ECHO, echo)
    addr = await a.listen("/ip4/127.0.0.1/tcp/0")
    return a, b, addr


async def test_connect_identify_ping_and_echo() -> None:
    a, b, addr = await pair()
    async with a, b:
        assert addr.peer_id == a.peer_id
        rtts = await b.ping(addr, count=3)
        assert len(rtts) == 3 and all(0 < r < 1 for r in rtts)
        info = await b.identify(a.peer_id)
        assert info.agent_version.startswith("peerloom/")
        assert ECHO in info.protocols and "/ipfs/ping/1.0.0" in info.protocols
        assert PeerId.from_public_key(a.identity.public_key) == a.peer_id
        theirs = await a.identify(b.peer_id)  # identify runs both ways on connect
        assert theirs.observed_addr is not None

        payload = os.urandom(8 * 1024 * 1024 + 123)
        stream = await b.new_stream(a.peer_id, [ECHO])
        assert stream.protocol == ECHO

        async def send() -> None:
            for i in range(0, len(payload), 100_000):
                await stream.write(payload[i : i + 100_000])
            await stream.close()

        received = bytearray()

        async def receive() -> None:
            while chunk := await stream.read():
                received.extend(chunk)

        await asyncio.gather(send(), receive())
        assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
        assert len(a.connections) == 1 and len(b.connections) == 1  # one connection per peer, reused


async def test_unknown_protocol_is_refused_and_the_connection_lives_on() -> None:
    a, b, addr = await pair()
    async with a, b:
        with pytest.raises(ProtocolNotSupported):
            await b.new_stream(addr, ["/nobody/1.0.0"])
        assert await b.ping(a.peer_id)


async def test_a_protocol_refused_though_advertised_is_a_refusal_of_our_key() -> None:
    """How admission per protocol refuses a key: `na` to a protocol the peer's identify lists (the peer stops
    serving ECHO after identify told us of it, as an allow-list checked per protocol would answer us)."""
    a, b, addr = await pair()
    async with a, b:
        a.set_handler(ECHO, echo)
        await b.connect(addr)
        assert ECHO in (await b.identify(a.peer_id)).protocols
        a.remove_handler(ECHO)
        with pytest.raises(PeerRefused) as refused:
            await b.new_stream(a.peer_id, [ECHO])
        assert isinstance(refused.value, AccessRefused) and str(b.peer_id) in str(refused.value)
        assert await b.ping(a.peer_id)  # the connection lives on


async def test_many_concurrent_streams() -> None:
    a, b, addr = await pair()
    async with a, b:
        await b.connect(addr)

        async def one(i: int) -> bytes:
            s = await b.new_stream(a.peer_id, [ECHO])
            await s.write(i.to_bytes(4, "big") * 1000)
            await s.close()
            return await s.readexactly(4000)

        results = await asyncio.gather(*(one(i) for i in range(100)))
        assert all(r == i.to_bytes(4, "big") * 1000 for i, r in enumerate(results))


async def test_dialling_a_peer_id_that_does_not_answer_fails() -> None:
    a, b, addr = await pair()
    async with a, b:
        impostor = PeerId.from_public_key(Ed25519PrivateKey.generate().public_key())
        wrong = Multiaddr(str(addr).rsplit("/p2p/", 1)[0]).encapsulate(f"/p2p/{impostor}")
        with pytest.raises(PeerIdMismatch):
            await b.connect(wrong)
        assert impostor not in b.connections and not b.connections


async def test_a_flipped_bit_in_an_encrypted_frame_closes_the_connection() -> None:
    a, b, addr = await pair()
    async with a, b:
        conn = await b.connect(addr)
        stream = await b.new_stream(a.peer_id, [ECHO])
        original = conn._write_raw

        def corrupting(data: bytes) -> None:
            buf = bytearray(data)
            buf[len(buf) // 2] ^= 0x01
            original(bytes(buf))

        conn._write_raw = corrupting  # type: ignore[method-assign]
        await stream.write(b"x" * 1000)
        for _ in range(100):
            if not a.connections:
                break
            await asyncio.sleep(0.02)
        assert not a.connections  # the receiver dropped the connection on the failed authentication
        with pytest.raises(StreamError):
            while await stream.read():
                pass


async def test_a_handshake_with_a_bad_signature_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, addr = await pair()

    class ForgedHandshake(NoiseHandshake):
        """As initiator (b dials), signs its static key with a key other than the identity it presents."""

        def __init__(self, *, initiator: bool, identity_key: Ed25519PrivateKey, static_key: object) -> None:
            super().__init__(initiator=initiator, identity_key=identity_key, static_key=static_key)  # type: ignore[arg-type]
            if initiator:
                static = static_key.public_key().public_bytes_raw()  # type: ignore[attr-defined]
                signature = Ed25519PrivateKey.generate().sign(b"noise-libp2p-static-key:" + static)
                self._payload = _encode_payload(_encode_public_key(identity_key.public_key()), signature, [])

    async with a, b:
        monkeypatch.setattr(connection_module, "NoiseHandshake", ForgedHandshake)
        try:
            conn = await b.connect(addr)  # b's side may complete before a's refusal arrives
        except LinkError:
            conn = None
        for _ in range(100):
            if conn is None or conn.closed:
                break
            await asyncio.sleep(0.02)
        assert conn is None or conn.closed
        assert not a.connections  # a refused the forged handshake: no connection, no stream


async def test_admission_per_protocol_refuses_other_keys_with_na_and_serves_identify_and_ping() -> None:
    friend = Identity.generate()
    a = Host(Identity.generate())
    a.set_handler(ECHO, echo, admits=lambda peer, protocol: peer == PeerId.from_public_key(friend.public_key))
    addr = await a.listen("/ip4/127.0.0.1/tcp/0")
    async with a, Host(Identity.generate()) as stranger, Host(friend) as ally:
        for _ in range(5):  # the refusal is told apart from other failures every time, whatever the timing
            with pytest.raises(PeerRefused) as refused:
                await stranger.new_stream(addr, [ECHO])
            assert str(a.peer_id) in str(refused.value) and str(stranger.peer_id) in str(refused.value)
        assert await stranger.ping(addr)  # identify and ping stay open to every key
        assert ECHO in (await stranger.identify(a.peer_id)).protocols  # and the refused protocol stays advertised
        assert stranger.peer_id in a.connections
        stream = await ally.new_stream(addr, [ECHO])  # an admitted key is served
        await stream.write(b"hello")
        assert await stream.read() == b"hello"


async def test_peer_events_tell_connected_identified_and_disconnected() -> None:
    a, b, addr = await pair()
    async with a, b:
        events: list[PeerEvent] = []
        unsubscribe = a.subscribe(events.append)
        conn = await b.connect(addr)
        await a.identify(b.peer_id)
        conn.close("done")
        for _ in range(100):
            if any(isinstance(e, PeerDisconnected) for e in events):
                break
            await asyncio.sleep(0.02)
        unsubscribe()
        await b.connect(addr)  # no longer reported
        assert [type(e) for e in events] == [PeerConnected, PeerIdentified, PeerDisconnected]
        identified = events[1]
        assert isinstance(identified, PeerIdentified) and identified.peer == b.peer_id
        assert "/ipfs/ping/1.0.0" in identified.protocols and identified.agent_version.startswith("peerloom/")
        assert all(e.peer == b.peer_id for e in events)


async def test_a_peer_opening_thousands_of_streams_is_held_to_the_limit() -> None:
    a, b, addr = await pair(max_streams_per_connection=64)
    async with a, b:
        b.limits.max_streams_per_connection = 5000
        conn = await b.connect(addr)
        assert conn.session is not None
        conn.session._max_streams = 5000  # b misbehaves: it ignores the limit a enforces
        streams = [conn.open_stream() for _ in range(2000)]
        for s in streams:
            conn.stream_write(s.id, memoryview(b"\x00"))  # a SYN with a byte, never negotiated
        await asyncio.sleep(0.5)
        theirs = a.connections[b.peer_id]
        assert len(theirs.streams) <= 64 + 2  # the rest were refused with RST (+ identify in flight)
        assert theirs.session is not None and theirs.session.stream_count <= 64 + 2


async def test_sending_beyond_the_window_cuts_the_connection() -> None:
    a, b, addr = await pair()
    async with a, b:

        async def sink(stream: Stream) -> None:
            await asyncio.sleep(3600)  # never reads: the window must hold the sender back

        a.set_handler("/test/sink/1.0.0", sink)
        stream = await b.new_stream(addr, ["/test/sink/1.0.0"])
        conn = b.connections[a.peer_id]
        assert conn.session is not None
        conn.session._streams[stream.id].send_credit = 1 << 30  # b ignores a's window
        with pytest.raises((StreamError, LinkError)):
            for _ in range(64):
                await asyncio.wait_for(stream.write(b"\x00" * (1 << 20)), 5)
        for _ in range(100):
            if b.peer_id not in a.connections:
                break
            await asyncio.sleep(0.02)
        assert b.peer_id not in a.connections


async def test_simultaneous_dials_end_with_one_connection() -> None:
    a, b, addr_a = await pair()
    addr_b = await b.listen("/ip4/127.0.0.1/tcp/0")
    async with a, b:
        await asyncio.gather(a.connect(addr_b), b.connect(addr_a), return_exceptions=True)
        await asyncio.sleep(0.2)
        assert len(a.connections) == 1 and len(b.connections) == 1
        assert await a.ping(b.peer_id) and await b.ping(a.peer_id)


def test_bulk_echo_on_uvloop_keeps_every_byte_with_reused_buffers() -> None:
    """uvloop keeps views of written buffers until the socket takes them, and streams hold plaintext buffers lent by
    the connection until read: with both reused, 48 MiB echoed through a reader that stalls now and then (so lent
    buffers stay held and the copying fallback runs too) must come back intact."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        a, b, addr = await pair()
        async with a, b:
            payload = os.urandom(48 * 1024 * 1024)
            stream = await b.new_stream(addr, [ECHO])
            digest = hashlib.sha256()
            received = 0

            async def send() -> None:
                for i in range(0, len(payload), 1 << 20):
                    await stream.write(payload[i : i + (1 << 20)])
                await stream.close()

            async def receive() -> None:
                nonlocal received
                reads = 0
                while chunk := await stream.read():
                    digest.update(chunk)
                    received += len(chunk)
                    reads += 1
                    if reads % 50 == 0:  # a stall: more batches arrive than the connection may lend
                        await asyncio.sleep(0.02)

            await asyncio.wait_for(asyncio.gather(send(), receive()), 120)
            assert received == len(payload)
            assert digest.digest() == hashlib.sha256(payload).digest()
            conn = b.connections[a.peer_id]
            assert len(conn._send_buffers) > 0 and len(conn._lent_buffers) > 0  # the reusing paths ran

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
