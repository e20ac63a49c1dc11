"""MSE/PE over any byte stream: the asyncio driver of `torrent/mse.py` between a transport and a `PeerConnection`.

The stream is a TCP socket or a uTP connection (`utp_driver.UtpTransport`): libtorrent runs MSE over both, and so
do we, with this one driver. A buffered transport (TCP) reads into our buffers; one that hands over bytes (uTP)
calls `data_received`, which takes the same way.

`MseProtocol` is the transport's protocol. It runs the encrypted handshake, then carries the peer wire: reads are
decrypted in place, straight in the peer's own receive buffer (one RC4 pass per read, no copy), and the peer
writes through `MseTransport`, which encrypts each coalesced write in one call. With plaintext selected the bytes
pass through untouched. An incoming connection opens with a sniff of its first bytes: a plaintext BitTorrent
handshake goes to the peer as it is (unless plaintext is refused), anything else is taken as MSE.

The peer is attached as soon as the socket connects, as over plain TCP: an outgoing peer's BitTorrent handshake,
its first write, rides in message 3's initial payload (IA) and costs no round trip; whatever else it writes
before the method is known waits here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from peerloom.errors import ProtocolError
from peerloom.torrent import mse
from peerloom.torrent.mse import MseError, MseHandshake, Rc4

log = logging.getLogger(__name__)
HANDSHAKE_READ = 4096  # reads during the handshake: it is at most ~1.3 KiB plus the initial payload


class MseTransport:
    """The transport the peer connection sees: encrypts its writes (RC4) or passes them through (plaintext), and
    holds them while the handshake has not chosen yet."""

    def __init__(self, owner: MseProtocol, transport: asyncio.Transport) -> None:
        self._owner = owner
        self._transport = transport
        self._encrypt: Rc4 | None = None
        self._held: list[bytes | memoryview] | None = []  # None once the method is known

    def take_initial_payload(self) -> bytes:
        """What the peer wrote so far (its BitTorrent handshake), to travel in message 3's IA."""
        held, self._held = self._held or [], []
        data = b"".join(held)
        if len(data) > mse.MAX_INITIAL_PAYLOAD:
            self._held = [data[mse.MAX_INITIAL_PAYLOAD :]]
            data = data[: mse.MAX_INITIAL_PAYLOAD]
        return data

    def established(self, encrypt: Rc4 | None) -> None:
        """The method is chosen: send what was held, and from now on write straight through."""
        held, self._held = self._held or [], None
        self._encrypt = encrypt
        if held:
            self.writelines(held)

    # -- the asyncio.Transport interface the peer connection uses --------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            self._held.append(bytes(data))
        elif self._encrypt is not None:
            self.writelines([data])
        else:
            self._transport.write(data)

    def writelines(self, chunks: list[bytes | memoryview]) -> None:
        if self._held is not None:
            self._held += [bytes(c) for c in chunks]
        elif self._encrypt is not None:
            # a flush (block headers and block data) is encrypted into one new buffer and leaves in one send; RC4
            # writing into it directly is ~2x faster here than joining the parts and encrypting into a second copy
            encrypt = self._encrypt.update_into
            out = bytearray(sum(map(len, chunks)))
            view = memoryview(out)
            at = 0
            for chunk in chunks:
                end = at + len(chunk)
                encrypt(chunk, view[at:end])
                at = end
            self._transport.write(out)
        else:
            self._transport.writelines(chunks)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The socket's, plus "mse": the method MSE chose (mse.PLAINTEXT or mse.RC4; 0 for a plaintext handshake)."""
        if name == "mse":
            return self._owner.method
        return self._transport.get_extra_info(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()


class MseProtocol(asyncio.BufferedProtocol):
    """The socket's protocol for one MSE (or sniffed plaintext) connection carrying `peer`, a BufferedProtocol.

    Build it with `outgoing` or `incoming`. `established` resolves once the peer wire runs (plaintext or
    encrypted) and fails with the reason otherwise, so a dialler can fall back to plaintext. The handshake must be
    over within `timeout` seconds (an outgoing peer's own handshake deadline covers it too).
    """

    def __init__(self, peer: asyncio.BufferedProtocol, *, timeout: float) -> None:
        self.peer = peer
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._handshake: MseHandshake | None = None  # incoming: made once the first bytes show MSE
        self._make_incoming: Callable[[], MseHandshake] | None = None
        self._allow_plaintext = True
        self._transport: asyncio.Transport | None = None
        self._adapter: MseTransport | None = None
        self._read = bytearray(HANDSHAKE_READ)
        self._sniffed = bytearray()
        self._decrypt: Rc4 | None = None
        self._open = False  # the peer wire runs: reads go to the peer
        self._peer_buffer: Any = None
        self._failure: Exception | None = None
        self.method = 0  # mse.PLAINTEXT or mse.RC4 once established; 0 for a sniffed plaintext connection
        self.established: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    def outgoing(cls, peer: asyncio.BufferedProtocol, skey: bytes, *, timeout: float) -> MseProtocol:
        """Dial side: the handshake for the torrent known by `skey`; the peer's first writes become IA. We provide
        RC4 and plaintext and let the answering side choose, as libtorrent does with its default `pe_both`."""
        proto = cls(peer, timeout=timeout)
        proto._handshake = MseHandshake(outgoing=True, skey=skey, initial_payload=proto._initial_payload)
        return proto

    @classmethod
    def incoming(
        cls,
        peer: asyncio.BufferedProtocol,
        find_skey: Callable[[bytes], bytes | None],
        *,
        allow_plaintext: bool,
        prefer_rc4: bool,
        timeout: float,
    ) -> MseProtocol:
        """Answer side: plaintext or MSE as the first bytes show (`allow_plaintext`: take a plaintext handshake).
        `find_skey` maps HASH('req2', SKEY) to the info-hash of one of our torrents; `prefer_rc4`: select RC4
        when the peer offers it and plaintext too."""
        proto = cls(peer, timeout=timeout)
        proto._make_incoming = lambda: MseHandshake(outgoing=False, find_skey=find_skey, prefer_rc4=prefer_rc4)
        proto._allow_plaintext = allow_plaintext
        return proto

    def _initial_payload(self) -> bytes:
        assert self._adapter is not None, "message 3 follows connection_made"
        return self._adapter.take_initial_payload()

    # -- asyncio.Protocol ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio subclasses
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._fail, TimeoutError("MSE handshake"))
        if self._handshake is not None:
            self._transport.write(self._handshake.start())
        # the peer is attached at once, as over a plain socket: what it writes waits for the method (an outgoing
        # peer's handshake becomes IA), and closing it (the engine stopping) closes the socket mid-handshake too
        self._adapter = MseTransport(self, self._transport)
        self.peer.connection_made(self._adapter)  # type: ignore[arg-type]

    def get_buffer(self, sizehint: int) -> Any:
        if self._open:
            self._peer_buffer = self.peer.get_buffer(sizehint)
            return self._peer_buffer
        return self._read

    def buffer_updated(self, nbytes: int) -> None:
        if self._open:
            if self._decrypt is not None:
                self._decrypt.update_in_place(memoryview(self._peer_buffer)[:nbytes])
            self.peer.buffer_updated(nbytes)
            return
        try:
            self._handshake_data(bytes(memoryview(self._read)[:nbytes]))
        except ProtocolError as exc:
            self._fail(exc)

    def data_received(self, data: bytes | memoryview) -> None:
        """Bytes from a transport without buffered reads (uTP's). Once the wire runs they go to the peer as they are
        (decrypted into one new buffer under RC4): no copy into a receive buffer. During the handshake they take the
        way of a buffered read."""
        if self._open:
            decrypt = self._decrypt
            self.peer.data_received(decrypt.update(data) if decrypt is not None else data)  # type: ignore[attr-defined]
            return
        view = memoryview(data)
        while view and self._failure is None:
            if self._open:  # the handshake ended inside this chunk: the rest is the peer wire's
                self.data_received(view)
                return
            n = min(len(self._read), len(view))
            self._read[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    def _handshake_data(self, data: bytes) -> None:
        if self._handshake is None:
            self._sniffed += data
            plain = mse.looks_plaintext(self._sniffed)
            if plain is None:
                return
            data, self._sniffed = bytes(self._sniffed), bytearray()
            if plain:
                if not self._allow_plaintext:
                    raise MseError("plaintext connections are refused (encryption: require)")
                self._open_wire(None, data)
                return
            assert self._make_incoming is not None
            self._handshake = self._make_incoming()
        assert self._transport is not None
        reply = self._handshake.receive(data)
        if reply:
            self._transport.write(reply)
        done = self._handshake.established
        if done is not None:
            self.method = done.method
            self._decrypt = done.decrypt
            self._open_wire(done.encrypt, done.payload)

    def _open_wire(self, encrypt: Rc4 | None, payload: bytes) -> None:
        """The handshake is over: the peer wire runs from here, `payload` is its first bytes."""
        assert self._transport is not None
        self._open = True
        self._read = bytearray()
        if self._timer is not None:
            self._timer.cancel()
        assert self._adapter is not None
        self._adapter.established(encrypt)
        if not self.established.done():
            self.established.set_result(None)
        if payload:
            self.peer.data_received(payload)  # type: ignore[attr-defined]

    def _fail(self, exc: Exception) -> None:
        log.debug("encrypted handshake failed: %s", exc)
        self._failure = exc
        if not self.established.done():
            self.established.set_exception(exc)
            self.established.exception()  # retrieved: an incoming connection has no one waiting on it
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.established.done():
            self.established.set_exception(ConnectionError(f"closed during the encrypted handshake: {exc}"))
            self.established.exception()
        self.peer.connection_lost(exc or self._failure)

    def pause_writing(self) -> None:
        self.peer.pause_writing()

    def resume_writing(self) -> None:
        self.peer.resume_writing()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
