"""A local SOCKS5 server (RFC 1928: no authentication, CONNECT) whose connections run as exit streams through one
peer: `peerloom connect socks --via PEERID --listen 127.0.0.1:1080`.

Per client: the greeting and the request are read into one small buffer under a timeout, each bounded by its parser
(socks.py) before anything else is read; the destination goes to the exit as it was given (a name is resolved by the
exit, so the client's DNS does not leak here, SOCKS5's "socks5h"); the exit's answer becomes the SOCKS reply (the
codes are the same); then the socket and the stream are spliced. Failures to reach the exit map to SOCKS codes:
our key refused by the exit -> "not allowed by ruleset", the exit unreachable -> "network unreachable".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from peerloom.apps.exit.service import ExitRefused, ExitService, read_message
from peerloom.apps.exit.socks import (
    MAX_GREETING,
    MAX_SOCKS_REQUEST,
    NO_AUTH,
    Command,
    choose_method,
    encode_socks_reply,
    parse_greeting,
    parse_socks_request,
)
from peerloom.apps.exit.wire import ExitProtocolError, Reply
from peerloom.errors import AccessRefused, PeerloomError
from peerloom.identity import PeerId
from peerloom.net.connection import LinkError

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0  # seconds for a client's greeting and request
MAX_CLIENTS = 256  # connections at once; more are closed at once


class SocksServer:
    """SOCKS5 on a local address, every CONNECT carried through `via`'s exit by `exit`."""

    def __init__(self, exit_service: ExitService, via: PeerId, *, max_clients: int = MAX_CLIENTS) -> None:
        self.exit = exit_service
        self.via = via
        self.max_clients = max_clients
        self.address: tuple[str, int] | None = None
        self.connections = 0  # accepted since start
        self.failures = 0  # CONNECTs that got an error reply
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 1080) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, host, port)
        sockname = self._server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        return self.address

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def status(self) -> dict[str, object]:
        return {"via": str(self.via), "listen": None if self.address is None else f"{self.address[0]}:"
                f"{self.address[1]}", "clients": len(self._clients), "connections": self.connections,
                "failures": self.failures}

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= self.max_clients:
            writer.close()
            return
        self.connections += 1
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._client(reader, writer)
        except (ExitProtocolError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.debug("SOCKS client dropped: %r", exc)
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            (methods,) = await read_message(reader.read, buf, parse_greeting, MAX_GREETING, "a SOCKS5 greeting")
            writer.write(choose_method(methods))
            if NO_AUTH not in methods:
                return
            command, dest = await read_message(reader.read, buf, parse_socks_request, MAX_SOCKS_REQUEST,
                                               "a SOCKS5 request")
        if command != Command.CONNECT:
            writer.write(encode_socks_reply(Reply.COMMAND_NOT_SUPPORTED))
            return
        try:
            stream = await self.exit.open(self.via, dest)
        except PeerloomError as exc:
            self.failures += 1
            log.info("SOCKS CONNECT %s through %s: %s", dest, self.via, exc)
            writer.write(encode_socks_reply(_reply_for(exc)))
            return
        writer.write(encode_socks_reply(Reply.SUCCEEDED))
        # what is left in buf: the client's first bytes, sent right behind its request
        await self.exit.carry(self.via, dest, stream, reader, writer, bytes(buf))


def _reply_for(exc: PeerloomError) -> Reply:
    if isinstance(exc, ExitRefused):
        return exc.code
    if isinstance(exc, AccessRefused):
        return Reply.NOT_ALLOWED
    if isinstance(exc, LinkError):
        return Reply.NETWORK_UNREACHABLE
    return Reply.GENERAL_FAILURE
