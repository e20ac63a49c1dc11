"""The MSE driver (torrent/mse_transport.py) without sockets: two MseProtocols joined by in-memory transports, each
carrying a recording peer protocol. Checks where the peer's first write goes (IA), that reads are decrypted into
the peer's own buffer and writes encrypted in one call, the sniffing of plaintext, and failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from peerloom.torrent import mse
from peerloom.torrent.mse import PLAINTEXT, RC4, MseError
from peerloom.torrent.mse_transport import MseProtocol

INFO_HASH = bytes(range(20))
HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + INFO_HASH + b"-PL0100-" + bytes(12)


class Pipe:
    """One direction of an in-memory connection: what a side writes is delivered to the other on `pump`."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []  # every write, as the wire carries it
        self.pending = bytearray()
        self.closed = False
        self.extra: dict[str, Any] = {"peername": ("127.0.0.1", 6881)}

    # the transport interface
    def write(self, data: bytes) -> None:
        self.sent.append(bytes(data))
        self.pending += data

    def writelines(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close


def deliver(pipe: Pipe, to: asyncio.BufferedProtocol) -> int:
    """Hand what `pipe` holds to the protocol the way a socket transport does (get_buffer, then buffer_updated)."""
    moved = 0
    while pipe.pending:
        buf = to.get_buffer(-1)
        n = min(len(buf), len(pipe.pending))
        memoryview(buf)[:n] = pipe.pending[:n]
        del pipe.pending[:n]
        to.buffer_updated(n)
        moved += n
    return moved


class Peer(asyncio.BufferedProtocol):
    """Records what a PeerConnection would see; writes `first` at connection_made like a dialling peer wire."""

    def __init__(self, first: bytes = b"") -> None:
        self.first = first
        self.transport: Any = None
        self.received = bytearray()
        self.buffer = bytearray(4096)
        self.lost: list[Exception | None] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.first:
            transport.write(self.first)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.received += self.buffer[:nbytes]

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


def find(req2: bytes) -> bytes | None:
    return INFO_HASH if req2 == mse.skey_hash(INFO_HASH) else None


def connect(prefer_rc4: bool = True, allow_plaintext: bool = True) -> tuple[Peer, Peer, MseProtocol, MseProtocol]:
    a_peer, b_peer = Peer(HANDSHAKE), Peer()
    a = MseProtocol.outgoing(a_peer, INFO_HASH, timeout=5)
    b = MseProtocol.incoming(b_peer, find, allow_plaintext=allow_plaintext, prefer_rc4=prefer_rc4, timeout=5)
    a_out, b_out = Pipe(), Pipe()
    a.connection_made(a_out)  # type: ignore[arg-type]
    b.connection_made(b_out)  # type: ignore[arg-type]
    a.pipes = (a_out, b_out)  # type: ignore[attr-defined]
    return a_peer, b_peer, a, b


async def shuttle(a: MseProtocol, b: MseProtocol) -> None:
    a_out, b_out = a.pipes  # type: ignore[attr-defined]
    for _ in range(20):
        await asyncio.sleep(0)  # the peers' own flushes run on the loop
        if not deliver(a_out, b) + deliver(b_out, a):
            return


@pytest.mark.parametrize(("prefer_rc4", "method"), [(True, RC4), (False, PLAINTEXT)])
async def test_the_dialling_peers_handshake_rides_in_ia_and_bytes_flow_both_ways(prefer_rc4: bool, method: int) -> None:
    a_peer, b_peer, a, b = connect(prefer_rc4)
    await shuttle(a, b)
    assert a.established.done() and b.established.done()
    assert a.method == b.method == method
    a_out, b_out = a.pipes  # type: ignore[attr-defined]
    assert bytes(b_peer.received) == HANDSHAKE
    assert len(a_out.sent) == 2  # Ya + PadA, then message 3: the peer wire's handshake went in it as IA
    assert a_peer.transport.get_extra_info("mse") == method
    assert a_peer.transport.get_extra_info("peername") == ("127.0.0.1", 6881)
    writes = len(b_out.sent)
    b_peer.transport.writelines([b"block header ", b"and block data"])
    assert len(b_out.sent) == writes + 1  # one coalesced write
    assert (b"block header" in b_out.sent[-1]) == (method == PLAINTEXT)
    a_peer.transport.write(b"request")
    await shuttle(a, b)
    assert bytes(a_peer.received) == b"block header and block data"
    assert bytes(b_peer.received) == HANDSHAKE + b"request"


async def test_a_plaintext_handshake_is_handed_over_untouched_or_refused() -> None:
    for allow in (True, False):
        b_peer = Peer()
        b = MseProtocol.incoming(b_peer, find, allow_plaintext=allow, prefer_rc4=False, timeout=5)
        out = Pipe()
        b.connection_made(out)  # type: ignore[arg-type]
        for at in range(0, len(HANDSHAKE), 7):  # the prefix arrives in pieces
            buf = b.get_buffer(-1)
            chunk = HANDSHAKE[at : at + 7]
            memoryview(buf)[: len(chunk)] = chunk
            b.buffer_updated(len(chunk))
        if allow:
            assert bytes(b_peer.received) == HANDSHAKE and b.method == 0 and not out.closed
        else:
            assert out.closed and not b_peer.received
            with pytest.raises(MseError, match="plaintext"):
                b.established.result()


async def test_garbage_fails_the_handshake_and_the_peer_hears_why() -> None:
    b_peer = Peer()
    b = MseProtocol.incoming(b_peer, find, allow_plaintext=True, prefer_rc4=False, timeout=5)
    out = Pipe()
    b.connection_made(out)  # type: ignore[arg-type]
    junk = bytes([0x42]) * 700
    memoryview(b.get_buffer(-1))[:700] = junk
    b.buffer_updated(700)
    assert out.closed
    b.connection_lost(None)
    assert isinstance(b_peer.lost[0], MseError)


async def test_an_unanswered_handshake_times_out() -> None:
    a_peer = Peer(HANDSHAKE)
    a = MseProtocol.outgoing(a_peer, INFO_HASH, timeout=0.01)
    out = Pipe()
    a.connection_made(out)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(a.established), 1)
    assert out.closed
