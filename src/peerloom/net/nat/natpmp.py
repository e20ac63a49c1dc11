"""NAT-PMP (RFC 6886) port mapping, sans-I/O: requests out, responses in, retransmission and renewal by `tick(now)`.

Why NAT-PMP of our own rather than a UPnP-IGD library: it is twelve-byte UDP messages to the gateway on port 5351 —
small enough to write, test and fuzz here, no new dependency, and the routers that matter serve it (miniupnpd,
which most open-source router firmware runs, serves UPnP-IGD, NAT-PMP and PCP at once).

    client = NatPmpClient()
    client.add_mapping("tcp", 6881, now=now)         # and the DHT's UDP port, the secure layer's TCP port
    for datagram in client.datagrams_to_send(now): send it to (gateway, 5351)
    client.datagram_received(data, now)              # -> events: ExternalAddress, Mapped, MappingFailed
    client.tick(now) / client.next_wakeup()          # retransmits (250 ms doubling, RFC 6886 §3.1), renews at half
    client.remove_all(now)                           # on exit: lifetime 0 deletes each mapping (§3.4)
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from peerloom.errors import ProtocolError

NATPMP_PORT = 5351
VERSION = 0
OP_EXTERNAL, OP_UDP, OP_TCP = 0, 1, 2
FIRST_TIMEOUT = 0.25  # RFC 6886 §3.1: 250 ms, doubled after each try...
MAX_TRIES = 9  # ...nine times (about 64 s in all) before giving up
DEFAULT_LIFETIME = 7200  # §3.3: the recommended lifetime of a mapping
RESULTS = {0: "success", 1: "unsupported version", 2: "not authorized or refused", 3: "network failure",
           4: "out of resources", 5: "unsupported opcode"}


class NatPmpError(ProtocolError):
    """A malformed NAT-PMP response."""


@dataclass(frozen=True)
class ExternalAddress:
    ip: str
    epoch: int


@dataclass(frozen=True)
class Mapped:
    protocol: str  # "tcp" or "udp"
    internal_port: int
    external_port: int
    lifetime: int  # seconds; 0 when the mapping was removed


@dataclass(frozen=True)
class MappingFailed:
    protocol: str
    internal_port: int
    reason: str


Event = ExternalAddress | Mapped | MappingFailed


@dataclass(frozen=True)
class Response:
    opcode: int  # the request's opcode (without the 128 of a response)
    result: int
    epoch: int
    external_ip: str = ""
    internal_port: int = 0
    external_port: int = 0
    lifetime: int = 0


def encode_external_request() -> bytes:
    return bytes((VERSION, OP_EXTERNAL))


def encode_map_request(protocol: str, internal_port: int, external_port: int, lifetime: int) -> bytes:
    """§3.3: version, opcode (1 UDP, 2 TCP), reserved, internal port, suggested external port, lifetime."""
    opcode = OP_TCP if protocol == "tcp" else OP_UDP
    return struct.pack("!BBHHHI", VERSION, opcode, 0, internal_port, external_port, lifetime)


def decode_response(data: bytes) -> Response:
    """A gateway's response (§3.2, §3.3); NatPmpError for anything else."""
    if len(data) < 8 or len(data) > 1100:  # §3.2: longer packets than a response are possible only from a PCP server
        raise NatPmpError(f"NAT-PMP response of {len(data)} bytes")
    version, opcode, result, epoch = struct.unpack_from("!BBHI", data)
    if version != VERSION or opcode < 128:
        raise NatPmpError(f"not a NAT-PMP response (version {version}, opcode {opcode})")
    opcode -= 128
    if result != 0:
        return Response(opcode, result, epoch)
    if opcode == OP_EXTERNAL:
        if len(data) < 12:
            raise NatPmpError("truncated external address response")
        return Response(opcode, result, epoch, external_ip=str(ipaddress.IPv4Address(data[8:12])))
    if opcode in (OP_UDP, OP_TCP):
        if len(data) < 16:
            raise NatPmpError("truncated mapping response")
        internal, external, lifetime = struct.unpack_from("!HHI", data, 8)
        return Response(opcode, result, epoch, internal_port=internal, external_port=external, lifetime=lifetime)
    raise NatPmpError(f"NAT-PMP response to unknown opcode {opcode}")


@dataclass
class _Pending:
    payload: bytes
    tries: int = 0
    due: float = 0.0  # when to (re)send


@dataclass
class Mapping:
    protocol: str
    internal_port: int
    external_port: int = 0  # 0 until the gateway granted it
    lifetime: int = 0
    granted_at: float = 0.0
    wanted_lifetime: int = DEFAULT_LIFETIME

    @property
    def renew_at(self) -> float:
        return self.granted_at + self.lifetime / 2  # §3.3: renew halfway through the lifetime


class NatPmpClient:
    """The mappings we want from one gateway, their state, and the requests still waiting for an answer."""

    def __init__(self, *, first_timeout: float = FIRST_TIMEOUT, max_tries: int = MAX_TRIES) -> None:
        self.first_timeout = first_timeout
        self.max_tries = max_tries
        self.mappings: dict[tuple[str, int], Mapping] = {}
        self.external_ip: str | None = None
        self._pending: dict[tuple[int, int], _Pending] = {}  # (opcode, internal port) -> request

    def request_external_address(self, now: float) -> None:
        self._pending[(OP_EXTERNAL, 0)] = _Pending(encode_external_request(), due=now)

    def add_mapping(self, protocol: str, internal_port: int, *, lifetime: int = DEFAULT_LIFETIME,
                    now: float) -> None:
        if protocol not in ("tcp", "udp") or not 0 < internal_port < 65536:
            raise ValueError(f"cannot map {protocol} port {internal_port}")
        mapping = self.mappings.setdefault((protocol, internal_port), Mapping(protocol, internal_port))
        mapping.wanted_lifetime = lifetime
        self._send_map(mapping, lifetime, now)

    def _send_map(self, mapping: Mapping, lifetime: int, now: float) -> None:
        opcode = OP_TCP if mapping.protocol == "tcp" else OP_UDP
        suggested = mapping.external_port or mapping.internal_port
        payload = encode_map_request(mapping.protocol, mapping.internal_port, 0 if lifetime == 0 else suggested,
                                     lifetime)
        self._pending[(opcode, mapping.internal_port)] = _Pending(payload, due=now)

    def remove_all(self, now: float) -> None:
        """Ask the gateway to delete every mapping (lifetime 0, §3.4); they leave `mappings` once it confirms."""
        for mapping in self.mappings.values():
            mapping.wanted_lifetime = 0
            self._send_map(mapping, 0, now)

    @property
    def waiting(self) -> bool:
        """Whether requests still wait for their answer."""
        return bool(self._pending)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """The requests due at `now` (first sends and retransmissions)."""
        out = []
        for pending in self._pending.values():
            if pending.due <= now and pending.tries < self.max_tries:
                out.append(pending.payload)
                pending.due = now + self.first_timeout * (2 ** pending.tries)
                pending.tries += 1
        return out

    def tick(self, now: float) -> list[Event]:
        """Give up on requests that used all their tries; queue the renewals that are due."""
        events: list[Event] = []
        for key, pending in list(self._pending.items()):
            if pending.tries >= self.max_tries and pending.due <= now:
                del self._pending[key]
                if key[0] != OP_EXTERNAL:
                    protocol = "tcp" if key[0] == OP_TCP else "udp"
                    events.append(MappingFailed(protocol, key[1], "the gateway did not answer"))
        for mapping in self.mappings.values():
            opcode = OP_TCP if mapping.protocol == "tcp" else OP_UDP
            if (mapping.lifetime and mapping.wanted_lifetime and now >= mapping.renew_at
                    and (opcode, mapping.internal_port) not in self._pending):
                self._send_map(mapping, mapping.wanted_lifetime, now)
        return events

    def next_wakeup(self) -> float | None:
        times = [p.due for p in self._pending.values()]
        times += [m.renew_at for m in self.mappings.values() if m.lifetime and m.wanted_lifetime]
        return min(times) if times else None

    def datagram_received(self, data: bytes, now: float) -> list[Event]:
        """Events from one datagram from the gateway (NatPmpError if it is not a NAT-PMP response)."""
        response = decode_response(data)
        if response.opcode == OP_EXTERNAL:
            if self._pending.pop((OP_EXTERNAL, 0), None) is None:
                return []
            if response.result:
                return []
            self.external_ip = response.external_ip
            return [ExternalAddress(response.external_ip, response.epoch)]
        pending_key = (response.opcode, response.internal_port)
        protocol = "tcp" if response.opcode == OP_TCP else "udp"
        if response.result:
            # an error response carries no internal port (§3.5): it answers the oldest request of that opcode
            keys = [k for k in self._pending if k[0] == response.opcode]
            if not keys:
                return []
            pending_key = keys[0]
            del self._pending[pending_key]
            reason = RESULTS.get(response.result, f"result {response.result}")
            self.mappings.pop((protocol, pending_key[1]), None)
            return [MappingFailed(protocol, pending_key[1], reason)]
        if self._pending.pop(pending_key, None) is None:
            return []  # a late duplicate of an answer we already took
        mapping = self.mappings.get((protocol, response.internal_port))
        if mapping is None:
            return []
        if response.lifetime == 0 or mapping.wanted_lifetime == 0:
            del self.mappings[(protocol, response.internal_port)]
            return [Mapped(protocol, response.internal_port, response.external_port, 0)]
        mapping.external_port = response.external_port
        mapping.lifetime = response.lifetime
        mapping.granted_at = now
        return [Mapped(protocol, response.internal_port, response.external_port, response.lifetime)]
