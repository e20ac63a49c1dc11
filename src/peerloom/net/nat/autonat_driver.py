"""AutoNAT v1 over the host: the server that dials peers back, the client that asks peers about us.

The server dials back from a host of its own (a fresh key, no listener): a dial from the main host would reuse the
connection the request came on, which proves nothing. It answers OK with the first address that completed a secure
handshake with the asker's own key. The client asks the connected peers that speak AutoNAT and feeds their answers to
`autonat.Reachability` (see autonat.py for the rules).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from peerloom.codec.multiaddr import Multiaddr
from peerloom.codec.varint import VarintError, encode_frame, read_frame
from peerloom.errors import PeerloomError
from peerloom.identity import Identity, PeerId
from peerloom.net.connection import LinkError
from peerloom.net.host import Host
from peerloom.net.nat.autonat import (
    AUTONAT_PROTOCOL,
    MAX_MESSAGE_SIZE,
    AutoNatError,
    DialBackLimiter,
    DialRequest,
    DialResponse,
    Reachability,
    Status,
    candidates,
    decode_message,
    dialable,
    encode_request,
    encode_response,
    tcp_ip,
)
from peerloom.net.stream import Stream, StreamError

log = logging.getLogger(__name__)
MAX_DIALS = 4  # addresses one request may make the server dial
MAX_CONCURRENT = 8  # dial-backs under way at once (others are refused)


async def read_message(stream: Stream, timeout: float) -> bytes:
    """One varint-length-prefixed message of at most MAX_MESSAGE_SIZE bytes from `stream`."""
    data = b""
    try:
        async with asyncio.timeout(timeout):
            while (frame := read_frame(data, MAX_MESSAGE_SIZE)) is None:
                chunk = await stream.read()
                if not chunk:
                    raise AutoNatError("the AutoNAT stream ended before a whole message")
                data += chunk
    except VarintError as exc:
        raise AutoNatError(f"bad AutoNAT frame: {exc}") from None
    except TimeoutError:
        raise AutoNatError(f"no AutoNAT message within {timeout:.0f} s") from None
    return frame[0]


class AutoNatServer:
    """Answers dial requests (see the module docstring). `allow_lan` lets it dial LAN addresses (tests on loopback)."""

    def __init__(self, *, dial_timeout: float = 10.0, limiter: DialBackLimiter | None = None,
                 allow_lan: bool = False) -> None:
        self.dial_timeout = dial_timeout
        self.limiter = limiter or DialBackLimiter()
        self.allow_lan = allow_lan
        self.dialer = Host(Identity.generate(), agent_version="peerloom-autonat-dialback")
        self._busy = 0
        self.served = {status: 0 for status in Status}

    async def close(self) -> None:
        await self.dialer.close()

    async def handle(self, stream: Stream) -> None:
        try:
            message = await read_message(stream, self.dial_timeout)
            request = decode_message(message)
            if not isinstance(request, DialRequest):
                raise AutoNatError("expected a dial request")
            response = await self._answer(stream, request)
        except AutoNatError as exc:
            response = DialResponse(Status.E_BAD_REQUEST, str(exc)[:100])
        self.served[response.status] += 1
        await stream.write(encode_frame(encode_response(response)))
        await stream.close()

    async def _answer(self, stream: Stream, request: DialRequest) -> DialResponse:
        if request.peer != stream.remote_peer:
            return DialResponse(Status.E_BAD_REQUEST, "the peer id is not the asker's")
        remote = getattr(stream.connection, "remote_address", None)  # a relayed connection has none
        if remote is None:  # no IP of the asker to check its addresses against
            return DialResponse(Status.E_DIAL_REFUSED, "no observed address")
        targets = dialable(request.addrs, remote[0], allow_lan=self.allow_lan)[:MAX_DIALS]
        if not targets:
            return DialResponse(Status.E_DIAL_REFUSED, "no address on the IP the request came from")
        if self._busy >= MAX_CONCURRENT or not self.limiter.allow(request.peer, time.monotonic()):
            return DialResponse(Status.E_DIAL_REFUSED, "rate limited")
        self._busy += 1
        try:
            return await self._dial_back(request, targets)
        finally:
            self._busy -= 1

    async def _dial_back(self, request: DialRequest, targets: list[Multiaddr]) -> DialResponse:
        async def attempt(addr: Multiaddr) -> Multiaddr:
            # without /p2p/: the host merges dials to one PeerId, and one failed address would fail them all
            conn = await self.dialer.connect(addr)
            peer = conn.remote_peer
            conn.close("AutoNAT dial-back done")
            if peer != request.peer:
                raise LinkError(f"{addr} is {peer}, not the asker")
            return addr

        tasks = [asyncio.ensure_future(attempt(a)) for a in targets]
        try:
            async with asyncio.timeout(self.dial_timeout):
                for next_done in asyncio.as_completed(tasks):
                    try:
                        return DialResponse(Status.OK, "", await next_done)
                    except PeerloomError as exc:
                        log.debug("AutoNAT dial-back to %s failed: %r", request.peer, exc)
        except TimeoutError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return DialResponse(Status.E_DIAL_ERROR, "dial failed")


class AutoNatClient:
    """Asks peers that speak AutoNAT to dial us back. `mapped_ports()` gives the external ports of our port mappings
    (they are tried on each observed IP too)."""

    def __init__(self, host: Host, *, reachability: Reachability | None = None, timeout: float = 30.0,
                 mapped_ports: Callable[[], list[int]] = list) -> None:
        self.host = host
        self.reachability = reachability or Reachability()
        self.timeout = timeout
        self.mapped_ports = mapped_ports

    def observed_addrs(self) -> list[Multiaddr]:
        """Where our connected peers see us coming from (identify's observed address), each once."""
        out: list[Multiaddr] = []
        for conn in list(self.host.connections.values()):
            observed = conn.info.observed_addr if conn.info is not None else None
            if observed is not None and tcp_ip(observed) is not None and observed not in out:
                out.append(observed)
        return out

    def servers(self) -> list[PeerId]:
        """Connected peers whose identify lists AutoNAT."""
        return [peer for peer, conn in list(self.host.connections.items())
                if conn.info is not None and AUTONAT_PROTOCOL in conn.info.protocols]

    def candidates(self) -> list[Multiaddr]:
        ips: list[str] = []
        for addr in self.observed_addrs():
            ip = tcp_ip(addr)
            if ip is not None and ip[0] not in ips:
                ips.append(ip[0])
        return candidates(list(self.host.listen_addrs), ips, self.mapped_ports())

    async def ask(self, server: PeerId) -> DialResponse:
        """One dial request to `server`; its answer is recorded. AutoNatError/LinkError when it did not answer."""
        stream = await self.host.new_stream(server, [AUTONAT_PROTOCOL])
        try:
            await stream.write(encode_frame(encode_request(DialRequest(self.host.peer_id, tuple(self.candidates())))))
            response = decode_message(await read_message(stream, self.timeout))
            await stream.close()
        except StreamError as exc:
            stream.reset()
            raise AutoNatError(f"the AutoNAT stream broke: {exc}") from None
        except AutoNatError:
            stream.reset()
            raise
        if not isinstance(response, DialResponse):
            raise AutoNatError("expected a dial response")
        self.reachability.record(server, response, time.monotonic())
        return response

    async def probe(self, max_servers: int = 4) -> None:
        """Ask up to `max_servers` AutoNAT peers at once; failures to ask are logged, not raised."""
        servers = self.servers()[:max_servers]
        results = await asyncio.gather(*(self.ask(s) for s in servers), return_exceptions=True)
        for server, result in zip(servers, results, strict=True):
            if isinstance(result, BaseException):
                log.debug("AutoNAT request to %s failed: %r", server, result)
