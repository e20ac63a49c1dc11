"""Dialling a peer by its PeerId through the peer store: its addresses that are out of backoff, best first, each
failure recorded (so the next attempt skips that address for a while).

    conn = await connect_peer(node.secure_host, node.peers, peer_id)
"""

from __future__ import annotations

import time
from collections.abc import Callable

from peerloom.discovery.peerstore import PeerStore
from peerloom.errors import PeerloomError
from peerloom.identity import PeerId
from peerloom.net.connection import Connection, LinkError
from peerloom.net.host import Host

MAX_TRIES = 4  # addresses tried per call: a peer with many dead addresses does not hold the caller for minutes


async def connect_peer(host: Host, store: PeerStore, peer: PeerId, *, clock: Callable[[], float] = time.time,
                       max_tries: int = MAX_TRIES) -> Connection:
    """A connection to `peer`: the one open, else the first of its allowed addresses that answers with its key.
    LinkError naming the last failure when none does (or none is allowed now)."""
    existing = host.connections.get(peer)
    if existing is not None and not existing.closed:
        return existing
    addrs = store.addrs(peer, clock())[:max_tries]
    if not addrs:
        raise LinkError(f"no address of {peer} to dial now (none known, or all backing off after failures)")
    failure: PeerloomError | None = None
    for addr in addrs:
        try:
            return await host.connect(addr)
        except PeerloomError as exc:
            store.dial_failed(peer, addr, clock())
            failure = exc
    raise LinkError(f"cannot connect to {peer}: {failure}")
