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
from peerloom.codec.varint import encode_frame
from peerloom.errors import PeerloomError
from peerloom.identity import Identity, PeerId
from peerloom.net.connection import LinkError
from peerloom.net.host import Host
from peerloom.net.nat.autonat import (
    AUTONAT_PROTOCOL,
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
from peerloom.net.relay.wire import read_message
from peerloom.net.stream import Stream, StreamError

log = logging.getLogger(__name__)
MAX_DIALS = 4  # addresses one request may make the server dial
MAX_CONCURRENT = 8  # dial-backs under way at once (others are refused)


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
            request = await read_message(stream, decode_message, self.dial_timeout, error=AutoNatError)
            if not isinstance(request, DialRequest):
                raise AutoNatError("expected a dial request")
            response = await self._answer(stream, request)
        except AutoNatError as exc:
            response = DialResponse(Status.E_BAD_REQUEST, str(exc)[:100])
        except (TimeoutError, LinkError, StreamError):
            stream.reset()
            return
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
    (they are tried on each observed IP too); `allow_lan` offers LAN listen addresses too (tests on loopback)."""

    def __init__(self, host: Host, *, reachability: Reachability | None = None, timeout: float = 30.0,
                 mapped_ports: Callable[[], list[int]] = list, allow_lan: bool = False) -> None:
        self.host = host
        self.allow_lan = allow_lan
        self.reachability = reachability or Reachability()
        self.timeout = timeout
        self.mapped_ports = mapped_ports

    def observed_addrs(self) -> list[Multiaddr]:
        """Where our directly connected peers see us coming from (identify's observed address), each once."""
        return [a for a in self.host.observed_addrs() if tcp_ip(a) is not None]

    def servers(self) -> list[PeerId]:
        """Directly connected peers whose identify lists AutoNAT (a relayed connection has no IP to dial back)."""
        return [peer for peer, conn in list(self.host.connections.items())
                if not conn.limited and conn.info is not None and AUTONAT_PROTOCOL in conn.info.protocols]

    def candidates(self) -> list[Multiaddr]:
        ips: list[str] = []
        for addr in self.observed_addrs():
            ip = tcp_ip(addr)
            if ip is not None and ip[0] not in ips:
                ips.append(ip[0])
        return candidates(list(self.host.listen_addrs), ips, self.mapped_ports(), allow_lan=self.allow_lan)

    async def ask(self, server: PeerId) -> DialResponse:
        """One dial request to `server`; its answer is recorded. AutoNatError/LinkError when it did not answer."""
        stream = await self.host.new_stream(server, [AUTONAT_PROTOCOL])
        try:
            await stream.write(encode_frame(encode_request(DialRequest(self.host.peer_id, tuple(self.candidates())))))
            response = await read_message(stream, decode_message, self.timeout, error=AutoNatError)
            await stream.close()
        except (StreamError, LinkError, TimeoutError) as exc:
            stream.reset()
            raise AutoNatError(f"no AutoNAT answer: {exc or 'timeout'}") from None
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
