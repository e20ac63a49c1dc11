"""Awareness (presence: cursors, names) relayed between peers and local editors (sans-I/O).

A y-protocols awareness update (`awareness.js`, `encodeAwarenessUpdate`) is

    varUint(n) n x { varUint(clientID) varUint(clock) varString(JSON state, "null" when the client left) }

Presence is not document content: it is neither signed nor stored. The relay keeps the latest clock of each client
it has seen (bounded: MAX_CLIENTS, forgotten after CLIENT_TIMEOUT without news, as y-protocols' own 30 s outdated
timeout) and forwards only the entries that are newer than what it knew, so an update crossing a mesh of peers dies
out instead of circling forever. `parse_awareness` bounds every count and length; errors are `AwarenessError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from peerloom.apps.docs.keys import DocError
from peerloom.codec.varint import VarintError, decode_varint, encode_varint

MAX_CLIENTS = 256  # clients one document's relay remembers
MAX_ENTRIES = 64  # entries one update may carry
MAX_STATE_SIZE = 16 * 1024  # bytes of one client's JSON state
CLIENT_TIMEOUT = 60.0  # seconds without an update after which a client is forgotten
_MAX_SAFE = 2**53 - 1


class AwarenessError(DocError):
    """Bytes that are not a well-formed (and small enough) awareness update."""


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client: int
    clock: int
    state: str  # JSON text, "null" for a client that left


def _uint(data: bytes, pos: int) -> tuple[int, int]:
    try:
        value, pos = decode_varint(data, pos, max_bytes=8, minimal=False)
    except VarintError as exc:
        raise AwarenessError(f"bad varint in an awareness update: {exc}") from None
    if value > _MAX_SAFE:
        raise AwarenessError("awareness integer above 2^53")
    return value, pos


def parse_awareness(data: bytes) -> list[AwarenessEntry]:
    n, pos = _uint(data, 0)
    if n > MAX_ENTRIES or n * 3 > len(data) - pos:
        raise AwarenessError(f"an awareness update claims {n} entries in {len(data) - pos} bytes")
    entries = []
    for _ in range(n):
        client, pos = _uint(data, pos)
        clock, pos = _uint(data, pos)
        length, pos = _uint(data, pos)
        if length > MAX_STATE_SIZE or length > len(data) - pos:
            raise AwarenessError("an awareness state is truncated or too large")
        raw = bytes(data[pos:pos + length])
        pos += length
        try:
            state = raw.decode("utf-8")
            json.loads(state)
        except (UnicodeDecodeError, ValueError):
            raise AwarenessError("an awareness state is not JSON text") from None
        entries.append(AwarenessEntry(client, clock, state))
    if pos != len(data):
        raise AwarenessError("trailing bytes after an awareness update")
    return entries


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    out = [encode_varint(len(entries))]
    for e in entries:
        raw = e.state.encode()
        out += [encode_varint(e.client), encode_varint(e.clock), encode_varint(len(raw)), raw]
    return b"".join(out)


class AwarenessRelay:
    """The latest clock of each client of one document; `accept` returns the part of an update worth forwarding."""

    def __init__(self) -> None:
        self.clients: dict[int, tuple[int, bool, float]] = {}  # client → (clock, has a state, last heard)

    def accept(self, data: bytes, now: float) -> bytes | None:
        """The update's newer entries re-encoded (None when nothing is new); AwarenessError when malformed."""
        fresh = []
        for entry in parse_awareness(data):
            known = self.clients.get(entry.client)
            alive = entry.state != "null"
            # y-protocols: newer clock wins; at the same clock a removal (null) wins over a state
            if known is None or entry.clock > known[0] or (entry.clock == known[0] and known[1] and not alive):
                fresh.append(entry)
                self.clients[entry.client] = (entry.clock, alive, now)
        if len(self.clients) > MAX_CLIENTS:
            for client in sorted(self.clients, key=lambda c: self.clients[c][2])[:len(self.clients) - MAX_CLIENTS]:
                del self.clients[client]
        return encode_awareness(fresh) if fresh else None

    def expire(self, now: float) -> None:
        for client in [c for c, (_, _, heard) in self.clients.items() if now - heard > CLIENT_TIMEOUT]:
            del self.clients[client]
