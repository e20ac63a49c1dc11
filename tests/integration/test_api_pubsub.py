"""The daemon's pub/sub routes in-process, against a second real node on loopback: topics, publishing (text and
bytes) to a peer's subscription, a topic's peers, the daemon's own subscriptions whose messages reach the event
WebSocket, and bad input refused with one JSON error and the right 4xx (token, bounds, shapes)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.swarm import node

from peerloom.api import service
from peerloom.api.server import OPENAPI_FILE, allowed_hosts, make_app
from peerloom.api.service import Daemon
from peerloom.apps.pubsub import api as pubsub_api
from peerloom.apps.pubsub import interface
from peerloom.apps.pubsub.message import sign_message
from peerloom.apps.pubsub.rpc import RPC, RpcLimits, encode_rpc
from peerloom.apps.pubsub.service import PubSubService
from peerloom.identity import Identity
from peerloom.node import Node

pytestmark = pytest.mark.timeout(15)
TOKEN = "test-token-0123456789-abcdefghijklmnopqrstuvwxyz"
V1 = "/api/v1/pubsub"
TOPIC = "peerloom test/news ✓"  # a slash and non-ASCII: the path segment is percent-encoded
SEGMENT = "peerloom%20test%2Fnews%20%E2%9C%93"
DOC = json.loads(OPENAPI_FILE.read_text())
SCHEMAS = DOC["components"]["schemas"]


@dataclass
class Api:
    client: TestClient
    daemon: Daemon
    peer: Node  # another node, on loopback

    async def call(self, method: str, path: str, expect: int = 200, *, token: str | None = TOKEN,
                   headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        """Send a request, check its status; a JSON reply parsed (an error must be exactly {"error": text})."""
        sent = {"X-Peerloom-Token": token} if token else {}
        async with self.client.request(method, path, headers={**sent, **(headers or {})}, **kwargs) as response:
            body = await response.read()
            assert response.status == expect, (response.status, body[:300])
            reply = json.loads(body)
            if expect >= 400:
                assert list(reply) == ["error"] and isinstance(reply["error"], str) and reply["error"]
            return reply

    async def link(self) -> None:
        """The peer dials the daemon's node, which then sees it as a peer of TOPIC (the peer subscribes to it)."""
        await self.peer.secure_host.connect(self.daemon.node.secure_addrs[0])
        await until(lambda: self.peer.identity.peer_id in ps(self.daemon.node).peers(TOPIC))


def ps(n: Node) -> PubSubService:
    assert n.pubsub is not None
    return n.pubsub


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def has_shape(value: dict[str, Any], name: str) -> None:
    """`value` has exactly the fields openapi.json's schema `name` lists, each of the JSON type it says."""
    schema = SCHEMAS[name]
    assert set(value) == set(schema["properties"]), (set(value) ^ set(schema["properties"]))
    kinds = {"string": str, "integer": int, "number": int | float, "boolean": bool, "null": type(None)}
    for key, field in schema["properties"].items():
        types = field.get("type", [])
        types = [types] if isinstance(types, str) else types
        assert not types or isinstance(value[key], tuple(kinds[t] for t in types)), (key, value[key])
        assert value[key] == field.get("const", value[key])


@contextlib.asynccontextmanager
async def serve(tmp: Path, **settings: Any) -> AsyncIterator[Api]:
    async with node(tmp, "daemon", **settings) as daemon_node, node(tmp, "peer") as peer:
        daemon = Daemon(daemon_node, tmp / "downloads")
        await daemon.start()
        hosts: set[str] = set()
        client = TestClient(TestServer(make_app(daemon, TOKEN, hosts), host="127.0.0.1"))
        await client.start_server()
        hosts |= allowed_hosts("127.0.0.1", client.port or 0)
        try:
            yield Api(client, daemon, peer)
        finally:
            await client.close()
            await daemon.stop()


@pytest.fixture(autouse=True)
def quick_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "EVENT_EVERY", 0.05)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serve(tmp_path) as served:
        yield served


async def next_message(ws: Any) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while (event := await ws.receive_json())["type"] != "pubsub.message":
            pass
    return event


async def test_publish_to_a_peer_and_list_the_topics_peers(api: Api) -> None:
    async with ps(api.peer).subscribe(TOPIC) as sub:
        await api.link()
        reply = await api.call("POST", f"{V1}/topics/{SEGMENT}/messages", json={"data": "hello ✓"})
        has_shape(reply, "PubsubPublished")
        assert reply["topic"] == TOPIC and reply["peers"] == 1
        got = await asyncio.wait_for(sub.get(), 5)
        assert got.data == "hello ✓".encode() and got.msg_id.hex() == reply["msg_id"]
        assert got.from_peer == api.daemon.node.identity.peer_id
        raw = bytes(range(256))
        reply = await api.call("POST", f"{V1}/topics/{SEGMENT}/messages",
                               json={"data_b64": base64.b64encode(raw).decode()})
        assert (await asyncio.wait_for(sub.get(), 5)).data == raw

        peers = await api.call("GET", f"{V1}/topics/{SEGMENT}/peers")
        assert peers["topic"] == TOPIC and len(peers["peers"]) == 1
        row = peers["peers"][0]
        has_shape(row, "PubsubPeer")
        assert row["peer_id"] == str(api.peer.identity.peer_id) and row["protocol"] == "/meshsub/1.2.0"
        assert row["mesh"] is False  # the daemon does not subscribe: no mesh of its own
        assert (await api.call("GET", f"{V1}/topics"))["topics"] == []  # publishing joins no topic


async def test_the_daemons_subscription_reaches_the_websocket_and_is_left_again(api: Api) -> None:
    async with ps(api.peer).subscribe(TOPIC), api.client.ws_connect(f"/api/v1/events?token={TOKEN}") as ws:
        reply = await api.call("POST", f"{V1}/subscriptions/{SEGMENT}", 201)
        assert reply == {"topic": TOPIC, "subscribed": True, "created": True}
        assert await api.call("POST", f"{V1}/subscriptions/{SEGMENT}", 200) == {**reply, "created": False}
        await api.link()
        await until(lambda: api.peer.identity.peer_id in ps(api.daemon.node).mesh(TOPIC))
        topics = (await api.call("GET", f"{V1}/topics"))["topics"]
        assert topics == [{"topic": TOPIC, "peers": 1, "mesh": 1, "daemon": True}]
        has_shape(topics[0], "PubsubTopic")
        assert (await api.call("GET", f"{V1}/topics/{SEGMENT}/peers"))["peers"][0]["mesh"] is True

        sent = await ps(api.peer).publish(TOPIC, b"\xff not utf-8")
        event = await next_message(ws)
        has_shape(event, "PubsubMessageEvent")
        assert event["topic"] == TOPIC and event["msg_id"] == sent.msg_id.hex() and event["base64"] is True
        assert base64.b64decode(event["data"]) == b"\xff not utf-8"
        assert event["from"] == event["received_from"] == str(api.peer.identity.peer_id)
        await ps(api.peer).publish(TOPIC, "text ✓".encode())
        event = await next_message(ws)
        assert (event["data"], event["base64"]) == ("text ✓", False)
        recent = (await api.call("GET", f"{V1}/topics/{SEGMENT}/messages"))["messages"]
        assert [m["data"] for m in recent] == [base64.b64encode(b"\xff not utf-8").decode(), "text ✓"]
        has_shape(recent[0], "PubsubMessage")

    assert (await api.call("DELETE", f"{V1}/subscriptions/{SEGMENT}"))["subscribed"] is False
    assert ps(api.daemon.node).topics() == []
    await api.call("DELETE", f"{V1}/subscriptions/{SEGMENT}", 404)
    await api.call("GET", f"{V1}/topics/{SEGMENT}/messages", 404)


async def test_the_daemon_dials_the_peers_a_request_names(api: Api) -> None:
    async with ps(api.peer).subscribe(TOPIC) as sub:
        body = {"data": "found you", "peers": [str(api.peer.secure_addrs[0])], "wait": 5}
        assert (await api.call("POST", f"{V1}/topics/{SEGMENT}/messages", json=body))["peers"] == 1
        assert (await asyncio.wait_for(sub.get(), 5)).data == b"found you"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("body", "expect"), [
    ({}, 400),
    ({"data": "a", "data_b64": "YQ=="}, 400),
    ({"data": 5}, 400),
    ({"data_b64": "not base64!"}, 400),
    ({"data_b64": 5}, 400),
    ({"data": "x" * (interface.MAX_MESSAGE + 1)}, 413),
    ({"data": "é" * (interface.MAX_MESSAGE // 2 + 1)}, 413),  # under the cap in characters, over it in bytes
    ({"data_b64": base64.b64encode(b"x" * (interface.MAX_MESSAGE + 1)).decode()}, 413),
    ({"data": "\ud800"}, 400),
    ({"data": "a", "wait": 11}, 400),
    ({"data": "a", "wait": -1}, 400),
    ({"data": "a", "wait": True}, 400),
    ({"data": "a", "peers": "/ip4/127.0.0.1/tcp/1"}, 400),
    ({"data": "a", "peers": ["/ip4/127.0.0.1/udp/1"]}, 400),
    ({"data": "a", "peers": ["nonsense"]}, 400),
    ({"data": "a", "peers": ["/ip4/127.0.0.1/tcp/1"] * (pubsub_api.MAX_DIAL + 1)}, 400),
    ({"data": "a", "peers": ["/ip4/127.0.0.1/tcp/{closed}"]}, 502),
], ids=["empty", "both", "data-not-text", "bad-base64", "b64-not-text", "too-long", "too-many-bytes", "b64-too-long",
        "lone-surrogate", "wait-long", "wait-negative", "wait-bool", "peers-not-list", "peers-udp", "peers-garbage",
        "peers-too-many", "peer-unreachable"])
async def test_bad_publish_bodies_are_refused(api: Api, body: dict[str, Any], expect: int) -> None:
    if "peers" in body and isinstance(body["peers"], list):
        body = {**body, "peers": [p.replace("{closed}", str(closed_port())) for p in body["peers"]]}
    await api.call("POST", f"{V1}/topics/news/messages", expect, json=body)


@pytest.mark.parametrize(("method", "path", "kwargs", "expect"), [
    ("POST", "/topics/news/messages", {"data": "not json", "headers": {"Content-Type": "text/plain"}}, 415),
    ("POST", "/topics/news/messages", {"data": "{", "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", "/topics/news/messages", {"json": ["a list"]}, 400),
    ("POST", "/subscriptions/news", {"json": {"peers": "x"}}, 400),
    ("POST", "/subscriptions/news", {"data": "x", "headers": {"Content-Type": "text/plain"}}, 415),
    ("GET", f"/topics/{'t' * (interface.MAX_TOPIC + 1)}/peers", {}, 400),
    ("POST", f"/subscriptions/{'%C3%A9' * (interface.MAX_TOPIC // 2 + 1)}", {}, 400),  # the bound is in bytes
])
async def test_bad_requests_are_refused_and_subscribe_nothing(api: Api, method: str, path: str,
                                                              kwargs: dict[str, Any], expect: int) -> None:
    await api.call(method, V1 + path, expect, **kwargs)
    assert ps(api.daemon.node).topics() == []


async def test_a_subscription_whose_peers_cannot_be_reached_is_not_made(api: Api) -> None:
    body = {"peers": [f"/ip4/127.0.0.1/tcp/{closed_port()}"]}
    assert "cannot reach" in (await api.call("POST", f"{V1}/subscriptions/news", 502, json=body))["error"]
    assert ps(api.daemon.node).topics() == []


async def test_the_daemons_subscriptions_are_bounded(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pubsub_api, "MAX_SUBSCRIPTIONS", 2)
    for name in ("a", "b"):
        await api.call("POST", f"{V1}/subscriptions/{name}", 201)
    await api.call("POST", f"{V1}/subscriptions/c", 409)
    await api.call("POST", f"{V1}/subscriptions/a", 200)  # one it has already is no new one
    assert ps(api.daemon.node).topics() == ["a", "b"]


ROUTES = [("GET", "/topics"), ("POST", "/topics/news/messages"), ("GET", "/topics/news/messages"),
          ("GET", "/topics/news/peers"), ("POST", "/subscriptions/news"), ("DELETE", "/subscriptions/news")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("token", [None, TOKEN[:-1] + "x"], ids=["none", "wrong"])
async def test_every_pubsub_route_wants_the_token(api: Api, method: str, path: str, token: str | None) -> None:
    await api.call(method, V1 + path, 401, token=token, json={"data": "a"})
    assert ps(api.daemon.node).topics() == []


async def test_routes_say_so_when_pubsub_is_off(tmp_path: Path) -> None:
    async with serve(tmp_path, pubsub=False) as api:
        for method, path in [("GET", "/topics"), ("POST", "/topics/news/messages"), ("GET", "/topics/news/peers"),
                             ("POST", "/subscriptions/news")]:
            reply = await api.call(method, V1 + path, 503, json={"data": "a"})
            assert reply["error"] == "pub/sub is off on this node"


async def test_the_daemons_subscriptions_end_with_the_app(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        await api.call("POST", f"{V1}/subscriptions/news", 201)
        await api.client.close()  # the daemon's HTTP side shuts down: its subscriptions go with it
        assert ps(api.daemon.node).topics() == []


def test_the_documented_event_is_the_documented_message_with_its_type() -> None:
    event = SCHEMAS["PubsubMessageEvent"]["properties"]
    message = SCHEMAS["PubsubMessage"]["properties"]
    assert {k: v for k, v in event.items() if k != "type"} == message
    assert {"$ref": "#/components/schemas/PubsubMessageEvent"} in SCHEMAS["Event"]["oneOf"]


def test_the_largest_message_the_api_takes_fits_in_one_rpc_a_peer_accepts(tmp_path: Path) -> None:
    limits = RpcLimits()
    assert limits.max_topic_len == interface.MAX_TOPIC
    topic = "t" * interface.MAX_TOPIC
    signed = sign_message(Identity.load_or_create(tmp_path), topic, b"x" * interface.MAX_MESSAGE, bytes(8))
    assert len(encode_rpc(RPC(publish=(signed,)))) <= limits.max_rpc_size
