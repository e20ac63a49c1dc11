"""The daemon's pub/sub routes, mounted by `peerloom.api.server` under /api/v1/pubsub (documented in openapi.json).

- GET    /pubsub/topics                        the node's topics, with their peer and mesh counts
- POST   /pubsub/topics/{topic}/messages       publish (`{"data": text}` or `{"data_b64": ...}`)
- GET    /pubsub/topics/{topic}/messages       the last messages the daemon's subscription received
- GET    /pubsub/topics/{topic}/peers          the peers of a topic: mesh or not, score, protocol
- POST   /pubsub/subscriptions/{topic}         the daemon subscribes; each message goes out on the event WebSocket
- DELETE /pubsub/subscriptions/{topic}         as a "pubsub.message" event, until this

A topic travels percent-encoded as one path segment (`a/b` is `a%2Fb`). Everything a request can make the daemon
hold is bounded: the size of a message, the length of a topic name, the number of subscriptions, the peers dialled
for one request, the seconds a publish waits for peers, the messages kept per topic.

These routes sit with the CLI and the API at the top of the layering (DESIGN.md: each app brings its routes); they
reach the node only through `Daemon.node` and its `pubsub` (the Python API of `apps.pubsub.service`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
from typing import TYPE_CHECKING, Any

from aiohttp import web

from peerloom.api.http import Handler, add_routes, json_body
from peerloom.api.service import ApiError, Daemon
from peerloom.apps.pubsub.interface import (
    MAX_MESSAGE,
    check_message,
    check_topic,
    dial_all,
    message_json,
    peer_rows,
    wait_for_peers,
)
from peerloom.codec.multiaddr import Multiaddr, MultiaddrError
from peerloom.errors import PeerloomError

if TYPE_CHECKING:
    from peerloom.apps.pubsub.service import PubSubService, Subscription

MAX_SUBSCRIPTIONS = 64  # topics the daemon subscribes to through the API
MAX_DIAL = 8  # peers one request may ask the daemon to dial
MAX_WAIT = 10.0  # seconds a publish may wait for the topic's first peers
RECENT = 50  # messages kept per subscribed topic for GET .../messages (the web UI's history after a reload)

PREFIX = "/api/v1/pubsub"
TOPICS: web.AppKey[DaemonTopics] = web.AppKey("pubsub_topics")


# -- the daemon's subscriptions ------------------------------------------------------------------------
class DaemonTopics:
    """The topics the daemon subscribes to through the API: one task per topic forwards each message to the event
    stream and keeps the last RECENT of them."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._subscriptions: dict[str, tuple[Subscription, asyncio.Task[None]]] = {}
        self._recent: dict[str, collections.deque[dict[str, Any]]] = {}

    @property
    def pubsub(self) -> PubSubService:
        if self.daemon.node.pubsub is None:
            raise ApiError(503, "pub/sub is off on this node")
        return self.daemon.node.pubsub

    def subscribed(self, topic: str) -> bool:
        return topic in self._subscriptions

    def subscribe(self, topic: str) -> bool:
        """Subscribe the daemon to `topic`; False if it already was."""
        if topic in self._subscriptions:
            return False
        if len(self._subscriptions) >= MAX_SUBSCRIPTIONS:
            raise ApiError(409, f"the daemon already subscribes to {MAX_SUBSCRIPTIONS} topics: unsubscribe one first")
        subscription = self.pubsub.subscribe(topic)
        self._recent[topic] = collections.deque(maxlen=RECENT)
        task = asyncio.create_task(self._forward(topic, subscription), name=f"pubsub api {topic!r}")
        self._subscriptions[topic] = (subscription, task)
        return True

    async def unsubscribe(self, topic: str) -> bool:
        """Leave `topic` (the node leaves it when no one else in the process subscribes); False if not subscribed."""
        entry = self._subscriptions.pop(topic, None)
        self._recent.pop(topic, None)
        if entry is None:
            return False
        subscription, task = entry
        subscription.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    def recent(self, topic: str) -> list[dict[str, Any]]:
        return list(self._recent.get(topic, ()))

    async def close(self) -> None:
        for topic in list(self._subscriptions):
            await self.unsubscribe(topic)

    async def _forward(self, topic: str, subscription: Subscription) -> None:
        async for msg in subscription:
            event = message_json(msg)
            self._recent[topic].append(event)
            self.daemon.broadcast({"type": "pubsub.message", **event})


# -- request bodies ------------------------------------------------------------------------------------
def _topic(request: web.Request) -> str:
    try:
        return check_topic(request.match_info["topic"])
    except PeerloomError as exc:
        raise ApiError(400, str(exc)) from None


def _data(body: dict[str, Any]) -> bytes:
    """The message of a publish body: `data` (text, sent as UTF-8) or `data_b64` (bytes, base64), not both."""
    if ("data" in body) == ("data_b64" in body):
        raise ApiError(400, "give the message as 'data' (text) or as 'data_b64' (base64 bytes), one of them")
    if "data" in body:
        if not isinstance(body["data"], str):
            raise ApiError(400, "'data' must be a string")
        if len(body["data"]) > MAX_MESSAGE:  # bounded before encoding it: a character is at least one byte
            raise ApiError(413, f"the message is over {MAX_MESSAGE} bytes")
        try:
            data = body["data"].encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a JSON escape
            raise ApiError(400, "'data' is not valid Unicode text (send bytes as 'data_b64')") from None
    else:
        text = body["data_b64"]
        if not isinstance(text, str):
            raise ApiError(400, "'data_b64' must be a base64 string")
        if len(text) > (MAX_MESSAGE + 2) // 3 * 4 + 4:
            raise ApiError(413, f"the message is over {MAX_MESSAGE} bytes")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "'data_b64' is not valid base64") from None
    try:
        return check_message(data)
    except PeerloomError as exc:
        raise ApiError(413, str(exc)) from None


def _dial_list(body: dict[str, Any]) -> list[Multiaddr]:
    """The optional `peers` of a body: multiaddrs (/ip4/H/tcp/P[/p2p/ID]) for the daemon to dial first."""
    values = body.get("peers", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ApiError(400, "'peers' must be a list of multiaddrs (strings)")
    if len(values) > MAX_DIAL:
        raise ApiError(400, f"at most {MAX_DIAL} 'peers' to dial in one request")
    addrs = []
    for value in values:
        try:
            addr = Multiaddr(value)
            addr.to_host_port()
        except MultiaddrError as exc:
            raise ApiError(400, f"'peers': {exc}") from None
        addrs.append(addr)
    return addrs


def _wait(body: dict[str, Any]) -> float:
    value = body.get("wait", 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_WAIT:
        raise ApiError(400, f"'wait' must be a number of seconds from 0 to {MAX_WAIT:g}")
    return float(value)


async def _dial(daemon: Daemon, addrs: list[Multiaddr]) -> int:
    """Dial the peers a request names; how many answered (502 when none did)."""
    failures = await dial_all(daemon.node.secure_host, addrs)
    if failures and len(failures) == len(addrs):
        raise ApiError(502, f"cannot reach any of the peers: {'; '.join(failures)}")
    return len(addrs) - len(failures)


# -- handlers ------------------------------------------------------------------------------------------
async def list_topics(request: web.Request) -> web.Response:
    topics = request.app[TOPICS]
    pubsub = topics.pubsub
    return web.json_response({"topics": [
        {"topic": t, "peers": len(pubsub.peers(t)), "mesh": len(pubsub.mesh(t)), "daemon": topics.subscribed(t)}
        for t in sorted(pubsub.topics())
    ]})


async def publish(request: web.Request) -> web.Response:
    topics = request.app[TOPICS]
    topic = _topic(request)
    body = await json_body(request)
    data, addrs, wait = _data(body), _dial_list(body), _wait(body)
    pubsub = topics.pubsub
    dialled = await _dial(topics.daemon, addrs)
    if wait:
        await wait_for_peers(pubsub, topic, wait, rendezvous=topics.daemon.node.dht is not None, at_least=dialled)
    try:
        result = await pubsub.publish(topic, data)
    except PeerloomError as exc:
        raise ApiError(400, str(exc)) from None
    return web.json_response({"topic": topic, "msg_id": result.msg_id.hex(), "peers": result.peers})


async def recent_messages(request: web.Request) -> web.Response:
    topics = request.app[TOPICS]
    topic = _topic(request)
    if not topics.subscribed(topic):
        raise ApiError(404, f"the daemon does not subscribe to {topic!r}: POST {PREFIX}/subscriptions/… first")
    return web.json_response({"topic": topic, "messages": topics.recent(topic)})


async def topic_peers(request: web.Request) -> web.Response:
    topics = request.app[TOPICS]
    topic = _topic(request)
    return web.json_response({"topic": topic, "peers": peer_rows(topics.daemon.node.secure_host, topics.pubsub, topic)})


async def subscribe(request: web.Request) -> web.Response:
    topics = request.app[TOPICS]
    topic = _topic(request)
    addrs = _dial_list(await json_body(request, optional=True))
    _ = topics.pubsub  # 503 when pub/sub is off, before dialling anyone
    await _dial(topics.daemon, addrs)  # first: a 502 leaves nothing subscribed (the router tells new peers later)
    created = topics.subscribe(topic)
    return web.json_response({"topic": topic, "subscribed": True, "created": created}, status=201 if created else 200)


async def unsubscribe(request: web.Request) -> web.Response:
    topics = request.app[TOPICS]
    topic = _topic(request)
    if not await topics.unsubscribe(topic):
        raise ApiError(404, f"the daemon does not subscribe to {topic!r}")
    return web.json_response({"topic": topic, "subscribed": False, "created": False})


def mount(app: web.Application, daemon: Daemon) -> None:
    """Add the pub/sub routes to the daemon's app; the daemon's subscriptions end when the app is cleaned up."""
    topics = app[TOPICS] = DaemonTopics(daemon)

    async def cleanup(_: web.Application) -> None:
        await topics.close()

    app.on_cleanup.append(cleanup)
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/topics", list_topics),
        ("POST", "/topics/{topic}/messages", publish),
        ("GET", "/topics/{topic}/messages", recent_messages),
        ("GET", "/topics/{topic}/peers", topic_peers),
        ("POST", "/subscriptions/{topic}", subscribe),
        ("DELETE", "/subscriptions/{topic}", unsubscribe),
    ]
    add_routes(app, PREFIX, routes)
