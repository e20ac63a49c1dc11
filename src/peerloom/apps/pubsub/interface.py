"""What the pub/sub CLI (`apps.pubsub.cli`) and the daemon's routes (`apps.pubsub.api`) share over `node.pubsub`: the
bounds on what a user gives (a topic name, a message), the JSON of a received message, dialling the peers a user
names, waiting for a topic's first peers, and the rows that describe a topic's peers.

Light to import (no cryptography, no web stack): the CLI loads it even when it only hands a command to the daemon.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from peerloom.errors import PeerloomError

if TYPE_CHECKING:
    from peerloom.apps.pubsub.service import PubsubMessage, PubSubService
    from peerloom.codec.multiaddr import Multiaddr
    from peerloom.identity import PeerId
    from peerloom.net.host import Host

MAX_TOPIC = 1024  # bytes of a topic name (UTF-8): what a peer's RPC may carry (RpcLimits.max_topic_len)
# bytes of a message's data: an RPC is at most RpcLimits.max_rpc_size (1 MiB, as go- and js-libp2p); the rest is
# room for the author, seqno, signature and topic around the data (about 1.2 KiB at most)
MAX_MESSAGE = (1 << 20) - 4096
DIAL_TIMEOUT = 5.0  # seconds for each peer a user names
PEER_POLL = 0.05  # seconds between looks at a topic's peers while waiting for them
FIND_EVERY = 1.0  # seconds between DHT lookups of a topic's subscribers while waiting for them


def check_topic(topic: str) -> str:
    """A topic name a user gave: not empty, Unicode text of at most MAX_TOPIC bytes in UTF-8; PeerloomError says
    what is wrong."""
    if not topic:
        raise PeerloomError("the topic name is empty")
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 for it, so no topic a peer could name
        raise PeerloomError("the topic name is not valid Unicode text") from None
    if size > MAX_TOPIC:
        raise PeerloomError(f"the topic name is {size} bytes long: at most {MAX_TOPIC}")
    return topic


def check_message(data: bytes) -> bytes:
    """A message a user gave: at most MAX_MESSAGE bytes (a peer drops an RPC over 1 MiB)."""
    if len(data) > MAX_MESSAGE:
        raise PeerloomError(f"the message is {len(data)} bytes: at most {MAX_MESSAGE} (1 MiB less room for its "
                            "signature and topic)")
    return data


def message_json(msg: PubsubMessage) -> dict[str, Any]:
    """A received message as JSON (the CLI's `--json` line, the "pubsub.message" event without its type): `data` is
    the text when the bytes are UTF-8, else their base64 with `base64` true."""
    try:
        data, is_b64 = msg.data.decode("utf-8"), False
    except UnicodeDecodeError:
        data, is_b64 = base64.b64encode(msg.data).decode("ascii"), True
    return {"topic": msg.topic, "from": str(msg.from_peer), "seqno": msg.seqno, "msg_id": msg.msg_id.hex(),
            "data": data, "base64": is_b64, "received_from": str(msg.received_from)}


async def dial_all(host: Host, addrs: Iterable[Multiaddr], timeout: float = DIAL_TIMEOUT) -> list[str]:
    """Dial each address at once on the secure layer; one line for each that failed (the others are connected)."""

    async def dial(addr: Multiaddr) -> str | None:
        try:
            await asyncio.wait_for(host.connect(addr), timeout)
        except TimeoutError:
            return f"{addr}: no answer within {timeout:g} s"
        except PeerloomError as exc:
            return str(exc) if str(addr) in str(exc) else f"{addr}: {exc}"
        return None

    return [e for e in await asyncio.gather(*(dial(a) for a in addrs)) if e is not None]


async def wait_for_peers(pubsub: PubSubService, topic: str, seconds: float, *, rendezvous: bool,
                         at_least: int = 1) -> int:
    """Wait up to `seconds` for `at_least` peers of `topic` (a peer counts once it has told us its subscriptions);
    with `rendezvous`, ask the DHT for the topic's subscribers meanwhile, again every FIND_EVERY seconds (one that
    has just started may not have announced yet). How many peers the topic has."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    finding: asyncio.Future[int] | None = None
    next_find = loop.time()
    try:
        while len(pubsub.peers(topic)) < max(at_least, 1) and loop.time() < deadline:
            if rendezvous and (finding is None or finding.done()) and loop.time() >= next_find:
                if finding is not None and not finding.cancelled():
                    finding.exception()  # a failed lookup is only a missed chance: the next one may answer
                finding = asyncio.ensure_future(pubsub.find_topic_peers(topic))
                next_find = loop.time() + FIND_EVERY
            await asyncio.sleep(PEER_POLL)
    finally:
        if finding is not None:
            finding.cancel()
            with contextlib.suppress(asyncio.CancelledError, PeerloomError):
                await finding
    return len(pubsub.peers(topic))


def peer_rows(host: Host, pubsub: PubSubService, topic: str) -> list[dict[str, Any]]:
    """The peers of `topic`: PeerId, in our mesh or not, score, protocol; mesh members first, then by score."""
    mesh = set(pubsub.mesh(topic))
    rows = [{"peer_id": str(p), "mesh": p in mesh, "score": round(pubsub.score(p), 3),
             "protocol": meshsub_protocol(host, p)} for p in pubsub.peers(topic)]
    rows.sort(key=lambda r: (not r["mesh"], -r["score"], r["peer_id"]))
    return rows


def meshsub_protocol(host: Host, peer: PeerId) -> str | None:
    """The meshsub protocol our stream to `peer` speaks: the service offers its protocols best first and the peer
    takes the first it knows (multistream-select), so it is our best one among those its identify lists."""
    from peerloom.apps.pubsub.service import PROTOCOLS

    conn = host.connections.get(peer)
    spoken = set(getattr(conn.info, "protocols", ()) or ()) if conn is not None else set()
    return next((p for p in PROTOCOLS if p in spoken), None)
