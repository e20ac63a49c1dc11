"""The daemon's document routes in-process, against a second real node on loopback: create, list, open by link,
edit in UTF-16 positions and replace the text (each answered once durable), and the peer sees the edits; bad input
refused with one JSON error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.docs import make_node, until

from peerloom.api.server import OPENAPI_FILE, allowed_hosts, make_app
from peerloom.api.service import Daemon

pytestmark = pytest.mark.timeout(30)
TOKEN = "test-token-0123456789-abcdefghijklmnopqrstuvwxyz"
V1 = "/api/v1/docs"
SCHEMA = json.loads(OPENAPI_FILE.read_text())["components"]["schemas"]["Doc"]


async def call(client: TestClient, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
    async with client.request(method, path, headers={"X-Peerloom-Token": TOKEN}, **kwargs) as response:
        body = await response.read()
        assert response.status == expect, (response.status, body[:300])
        reply = json.loads(body)
        if expect >= 400:
            assert list(reply) == ["error"] and reply["error"]
        else:
            for doc in reply.get("docs", [reply] if "id" in reply and "link" in reply else []):
                assert set(SCHEMA["required"]) <= set(doc) <= set(SCHEMA["properties"])
        return reply


async def test_create_edit_share_and_a_peer_follows(tmp_path: Path) -> None:
    async with make_node(tmp_path, "daemon") as daemon_node, make_node(tmp_path, "peer") as peer:
        daemon = Daemon(daemon_node, tmp_path / "downloads")
        await daemon.start()
        hosts: set[str] = set()
        client = TestClient(TestServer(make_app(daemon, TOKEN, hosts), host="127.0.0.1"))
        await client.start_server()
        hosts |= allowed_hosts("127.0.0.1", client.port or 0)
        try:
            made = await call(client, "POST", V1, 201, json={"title": "plan", "text": "a😀b"})
            assert made["text"] == "a😀b" and made["writable"] and made["title"] == "plan"
            doc = f"{V1}/{made['id']}"
            edited = await call(client, "POST", f"{doc}/edits", json={"insert": "é", "index": 3})
            assert edited["text"] == "a😀éb"  # index 3 in UTF-16: after the emoji's two units
            assert (await call(client, "POST", f"{doc}/edits", json={"delete": 2, "index": 1}))["text"] == "aéb"
            listed = await call(client, "GET", V1)
            assert [d["id"] for d in listed["docs"]] == [made["id"]]
            other = await peer.docs.open(made["read_link"])
            await call(client, "POST", f"{doc}/peers", json={"peers": [str(peer.secure_addrs[0])]})
            await until(lambda: str(other.text()) == "aéb", what="the peer's copy")
            await call(client, "PUT", f"{doc}/text", json={"text": "aéb, and more 日本"})
            await until(lambda: str(other.text()) == "aéb, and more 日本", what="the replaced text at the peer")
            opened = await call(client, "POST", f"{V1}/open", json={"link": made["link"]})
            assert opened["id"] == made["id"] and opened["writable"]  # already held: the keys it had stay
            await call(client, "POST", f"{V1}/open", 400, json={"link": "peerloom://doc/nope"})
            await call(client, "POST", f"{doc}/edits", 400, json={"insert": "x", "delete": 1, "index": 0})
            await call(client, "POST", f"{doc}/edits", 400, json={"insert": "x", "index": 999})
            await call(client, "GET", f"{V1}/{'0' * 64}", 404)
            read_only = await peer.docs.create()
            ro = await call(client, "POST", f"{V1}/open", json={"link": read_only.read_link})
            await call(client, "PUT", f"{V1}/{ro['id']}/text", 403, json={"text": "no"})
        finally:
            await client.close()
            await daemon.stop()
