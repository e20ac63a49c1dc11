"""The daemon's HTTP API in-process: every route and its effect on the node and the store, the event stream,
the OpenAPI document against the app's routes, and bad input refused with the right status and no change."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.swarm import assert_same_files, make_multi, make_single, node

from peerloom import __version__
from peerloom.api import server, service
from peerloom.api.server import MAX_UPLOAD, OPENAPI_FILE, allowed_hosts, make_app
from peerloom.api.service import Daemon
from peerloom.api.store import DaemonStore, Entry
from peerloom.node import Node
from peerloom.torrent.create import create
from peerloom.torrent.magnet import Magnet
from peerloom.torrent.metainfo import Metainfo

TOKEN = "test-token-0123456789-abcdefghijklmnopqrstuvwxyz"
V1 = "/api/v1"
DOC = json.loads(OPENAPI_FILE.read_text())
AMBIGUOUS = ["abcd0" + "0" * 35, "abcd1" + "1" * 35]  # two ids sharing the prefix "abcd"
ID_ROUTES = [  # every route under /torrents/{id}, with a body that would be accepted
    ("GET", "", None),
    ("DELETE", "", None),
    ("GET", "/peers", None),
    ("POST", "/pause", None),
    ("POST", "/resume", None),
    ("PUT", "/files", {"priorities": [1]}),
    ("PUT", "/limits", {"download": 1}),
]


# -- a small JSON Schema check (the subset openapi.json uses), so replies are held to the document ---------
def conforms(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """Assert that `value` matches `schema` of the OpenAPI document."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return conforms(value, DOC["components"]["schemas"][name], where)
    if "oneOf" in schema:
        matches = 0
        for option in schema["oneOf"]:
            with contextlib.suppress(AssertionError):
                conforms(value, option, where)
                matches += 1
        assert matches == 1, f"{where}: {value!r} matches {matches} of oneOf"
        return None
    assert value == schema.get("const", value), f"{where}: {value!r}"
    assert value in schema.get("enum", [value]), f"{where}: {value!r} not in {schema['enum']}"
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    assert not types or any(_is(value, t) for t in types), f"{where}: {value!r} is not {types}"
    assert not isinstance(value, int | float) or schema.get("minimum", value) <= value <= schema.get(
        "maximum", value), f"{where}: {value} out of range"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        assert set(schema.get("required", [])) <= set(value), f"{where}: missing {set(schema['required']) - set(value)}"
        assert schema.get("additionalProperties", True) or set(value) <= set(props), f"{where}: extra keys"
        for key, item in value.items():
            if key in props:
                conforms(item, props[key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            conforms(item, schema["items"], f"{where}[{i}]")
    return None


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    python = {"object": dict, "array": list, "string": str, "integer": int, "number": int | float,
              "boolean": bool, "null": type(None)}[kind]
    return isinstance(value, python)


def schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


# -- the daemon under test -------------------------------------------------------------------------------
@dataclass
class Api:
    """A daemon served in-process, and a client that checks what every reply must be."""

    client: TestClient
    daemon: Daemon
    hosts: set[str]

    @property
    def node(self) -> Node:
        return self.daemon.node

    async def call(self, method: str, path: str, expect: int = 200, *, token: str | None = TOKEN,
                   headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        """Send a request and check its status; JSON bodies come back parsed, errors must be `{"error": str}`."""
        sent = {"X-Peerloom-Token": token} if token else {}
        async with self.client.request(method, path, headers={**sent, **(headers or {})}, **kwargs) as response:
            body = await response.read()
            assert response.status == expect, (response.status, body[:300])
            assert not [h for h in response.headers if h.lower().startswith("access-control-")]
            if response.status >= 400:
                conforms(json.loads(body), schema("Error"))
            return json.loads(body) if response.content_type == "application/json" else body.decode()

    async def refused(self, method: str, path: str, expect: int, **kwargs: Any) -> str:
        """A request that must fail with `expect` and change nothing; the error message."""
        before = self.state()
        reply = await self.call(method, path, expect, **kwargs)
        assert self.state() == before
        return reply["error"]

    def state(self) -> Any:
        """What a refused request must leave alone: torrents, their settings, the node's limits, the store."""
        torrents = {tid: (t.paused, t.selected, t.save_path, t.download_bucket.rate, t.upload_bucket.rate)
                    for tid, t in self.node.torrents.items()}
        limits = (self.node.download_bucket.rate, self.node.upload_bucket.rate)
        store = self.daemon.store
        settings = [store.setting(key, -1) for key in ("download_limit", "upload_limit")]
        return torrents, limits, store.entries(), settings

    async def add_magnet(self, link: str, **extra: Any) -> dict[str, Any]:
        reply = await self.call("POST", f"{V1}/torrents", 201, json={"magnet": link, **extra})
        conforms(reply, schema("TorrentEnvelope"))
        return reply["torrent"]

    async def share(self, path: Path) -> dict[str, Any]:
        """Share a local path and wait until it seeds."""
        torrent = (await self.call("POST", f"{V1}/torrents", 201, json={"path": str(path)}))["torrent"]
        return await self.poll(f"{V1}/torrents/{torrent['id']}", lambda d: d["torrent"]["state"] == "seeding")

    async def poll(self, path: str, done: Callable[[Any], bool], timeout: float = 20.0) -> Any:
        """GET `path` until `done(reply)`; the last reply."""
        async with asyncio.timeout(timeout):
            while not done(reply := await self.call("GET", path)):
                await asyncio.sleep(0.02)
        return reply


@contextlib.asynccontextmanager
async def serve(tmp: Path, share_roots: list[Path] | None = None) -> AsyncIterator[Api]:
    """A node on loopback (no DHT, no LSD), its Daemon (downloads in tmp/downloads, shares from there and from
    `share_roots`, by default tmp/src) and the app, answering only to its own Host names."""
    async with node(tmp, "daemon") as n:
        daemon = Daemon(n, tmp / "downloads", [tmp / "src"] if share_roots is None else share_roots)
        await daemon.start()
        hosts: set[str] = set()
        client = TestClient(TestServer(make_app(daemon, TOKEN, hosts), host="127.0.0.1"))
        await client.start_server()
        hosts |= allowed_hosts("127.0.0.1", client.port or 0)
        try:
            yield Api(client, daemon, hosts)
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


def magnet(hex_id: str) -> str:
    """A magnet link of an info-hash no one seeds: it stays "fetching metadata"."""
    return str(Magnet(info_hash_v1=bytes.fromhex(hex_id)))


def upload_form(data: bytes, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("torrent", data, filename="x.torrent", content_type="application/x-bittorrent")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


def decode_bitfield(have: str, count: int) -> list[int]:
    """The detail's base64 bitfield as 0/1 per piece (high bit first); the padding bits must be 0."""
    data = base64.b64decode(have)
    assert len(data) == (count + 7) // 8
    bits = [(data[i // 8] >> (7 - i % 8)) & 1 for i in range(len(data) * 8)]
    assert not any(bits[count:])
    return bits[:count]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def raw_request(port: int, target: str, host: str) -> tuple[int, bytes]:
    """A GET with the request target exactly as given (no client-side normalisation); status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


# -- the document and the static files -------------------------------------------------------------------
def refs(item: Any) -> list[str]:
    """Every `$ref` in a part of the document."""
    if isinstance(item, dict):
        return [item["$ref"]] if "$ref" in item else [r for value in item.values() for r in refs(value)]
    return [r for value in item for r in refs(value)] if isinstance(item, list) else []


def app_routes(api: Api) -> set[tuple[str, str]]:
    """(path template, method) of every route but HEAD (aiohttp adds it to GETs) and the /api catch-all."""
    return {(route.resource.canonical, route.method.lower()) for route in api.client.app.router.routes()
            if route.resource is not None and route.method not in ("HEAD", "*")}


async def test_openapi_is_public_and_documents_every_route(api: Api) -> None:
    served = await api.call("GET", f"{V1}/openapi.json", token=None)
    assert served == DOC and DOC["openapi"].startswith("3.1")
    documented = {(path, method) for path, item in DOC["paths"].items() for method in item}
    assert documented == app_routes(api)
    for ref in refs(DOC):
        _, _, kind, name = ref.split("/")
        assert name in DOC["components"][kind], ref
    schemes = DOC["components"]["securitySchemes"]
    assert schemes["tokenHeader"] == {**schemes["tokenHeader"], "type": "apiKey", "in": "header",
                                      "name": "X-Peerloom-Token"}
    assert schemes["bearer"]["scheme"] == "bearer"
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            errors = {code for code in operation["responses"] if code >= "400"}
            public = operation.get("security") == []
            assert "403" in errors and ("401" in errors) != public, (path, method)
            assert all(r["$ref"].startswith("#/components/responses/") for c, r in operation["responses"].items()
                       if c in errors)


@pytest.fixture
def web_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A web folder of the test's own (the UI's files are not this test's business), a secret beside it and a
    link to the secret inside it."""
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>ui</title>")
    (web / "style.css").write_text("body { margin: 0 }")
    (tmp_path / "secret.txt").write_text("outside")
    (web / "link.txt").symlink_to(tmp_path / "secret.txt")
    monkeypatch.setattr(server, "WEB_DIR", web)
    return web


async def test_web_ui_is_served_without_token(api: Api, web_dir: Path) -> None:
    async with api.client.get("/") as response:
        assert response.status == 200 and response.content_type == "text/html"
        assert await response.text() == (web_dir / "index.html").read_text()
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert await api.call("GET", "/style.css", token=None) == (web_dir / "style.css").read_text()
    assert "outside" not in await api.refused("GET", "/link.txt", 404, token=None)


@pytest.mark.parametrize("target", [
    "/..%2fsecret.txt", "/%2e%2e%2fsecret.txt", "/%2e%2e/secret.txt", "/../secret.txt", "/.%2e/secret.txt",
    "/web/../secret.txt", "/..%5csecret.txt", "/%252e%252e%252fsecret.txt", "/..", "/%2e%2e",
    "/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "/../../../../../etc/passwd", "//etc/passwd",
])
async def test_static_paths_never_leave_the_web_folder(api: Api, web_dir: Path, target: str) -> None:
    status, body = await raw_request(api.client.port or 0, target, f"127.0.0.1:{api.client.port}")
    assert status == 404, (status, body[:200])
    assert b"outside" not in body and b"root:" not in body
    conforms(json.loads(body), schema("Error"))


# -- the guard: token, origin, preflight, Host -----------------------------------------------------------
@pytest.mark.parametrize(("headers", "query", "expect"), [
    ({}, "", 401),
    ({"X-Peerloom-Token": "wrong"}, "", 401),
    ({"X-Peerloom-Token": TOKEN}, "", 200),
    ({"Authorization": f"Bearer {TOKEN}"}, "", 200),
    ({"Authorization": f"bearer {TOKEN}"}, "", 200),
    ({"Authorization": "Bearer wrong"}, "", 401),
    ({"Authorization": f"Basic {TOKEN}"}, "", 401),
    ({}, f"?token={TOKEN}", 401),  # only the WebSocket takes the token in the URL
    ({"Origin": "https://evil.example"}, "", 403),
    ({"Origin": "null"}, "", 403),
    ({"Origin": "https://evil.example", "X-Peerloom-Token": TOKEN}, "", 200),
], ids=["none", "wrong", "header", "bearer", "bearer-lowercase", "bearer-wrong", "basic", "query",
        "foreign-origin", "null-origin", "foreign-origin-with-token"])
async def test_token_and_origin(api: Api, headers: dict[str, str], query: str, expect: int) -> None:
    await api.call("GET", f"{V1}/torrents{query}", expect, token=None, headers=headers)


async def test_every_protected_route_wants_the_token(api: Api) -> None:
    tid = (await api.add_magnet(magnet(AMBIGUOUS[0])))["id"]
    for template, method in sorted(app_routes(api)):
        path = template.replace("{id}", tid)
        if (not path.startswith("/api/") and path != "/metrics") or path == f"{V1}/openapi.json":
            continue
        origin = {"Origin": "http://evil.example"}
        await api.refused(method, path, 401, token=None)
        await api.refused(method, path, 403, token=None, headers=origin)
        await api.refused(method, path, 401, token=TOKEN[:-1] + "x")
    await api.call("GET", f"{V1}/nothing-here", 401, token=None)


@pytest.mark.parametrize("path", [f"{V1}/torrents", f"{V1}/openapi.json", "/", "/metrics"])
@pytest.mark.parametrize("token", [None, TOKEN])
async def test_preflight_is_refused(api: Api, path: str, token: str | None) -> None:
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT",
               "Access-Control-Request-Headers": "x-peerloom-token"}
    await api.refused("OPTIONS", path, 403, token=token, headers=headers)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "127.0.0.2:{port}"])
@pytest.mark.parametrize("path", [f"{V1}/torrents", f"{V1}/openapi.json", "/"])
async def test_foreign_host_is_refused_when_hosts_are_restricted(api: Api, host: str, path: str) -> None:
    headers = {"Host": host.format(port=api.client.port)}
    await api.refused("GET", path, 403, headers=headers)
    await api.call("GET", path, headers={"Host": f"localhost:{api.client.port}"})
    api.hosts.clear()  # a daemon bound to a non-loopback address answers to any name
    await api.call("GET", path, headers=headers)


# -- unknown things ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), [
    ("GET", f"{V1}/whatever"), ("POST", f"{V1}/whatever"), ("GET", "/api/v2/torrents"), ("GET", "/api/"),
    ("DELETE", f"{V1}/torrents"), ("POST", f"{V1}/node"), ("GET", f"{V1}/torrents/{'0' * 40}/nothing"),
    ("GET", "/nothing.html"),
])
async def test_unknown_paths_are_json_404(api: Api, method: str, path: str) -> None:
    await api.refused(method, path, 404)


@pytest.mark.parametrize(("method", "suffix", "body"), ID_ROUTES)
async def test_id_must_name_one_torrent(api: Api, method: str, suffix: str, body: Any) -> None:
    for tid in AMBIGUOUS:
        await api.add_magnet(magnet(tid))
    for given, status in (("f" * 40, 404), ("abcd", 400), ("abc", 404), ("", 404), ("abcd2", 404)):
        await api.refused(method, f"{V1}/torrents/{given}{suffix}", status, json=body)
    assert "2 torrents" in await api.refused("GET", f"{V1}/torrents/ABCD", 400)


async def test_unique_prefix_in_any_case_names_the_torrent(api: Api) -> None:
    for tid in AMBIGUOUS:
        await api.add_magnet(magnet(tid))
    for given in ("abcd1", "ABCD1", AMBIGUOUS[1], AMBIGUOUS[1].upper()):
        assert (await api.call("GET", f"{V1}/torrents/{given}"))["torrent"]["id"] == AMBIGUOUS[1]


# -- adding ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("paused", [False, True])
async def test_add_magnet(api: Api, tmp_path: Path, paused: bool) -> None:
    torrent = await api.add_magnet(magnet(AMBIGUOUS[0]) + "&dn=named", save_path="sub", paused=paused)
    assert torrent["id"] == AMBIGUOUS[0] and torrent["name"] == "named" and torrent["paused"] is paused
    assert torrent["state"] == ("paused" if paused else "fetching metadata")
    assert torrent["save_path"] == str(tmp_path / "downloads" / "sub") and torrent["magnet"].startswith("magnet:?")
    engine = api.node.torrents[AMBIGUOUS[0]]
    assert engine.paused is paused and engine.save_path == tmp_path / "downloads" / "sub"
    (entry,) = api.daemon.store.entries()
    assert entry.id == AMBIGUOUS[0] and entry.paused is paused and entry.torrent is None
    listed = (await api.call("GET", f"{V1}/torrents"))["torrents"]
    assert [t["id"] for t in listed] == [AMBIGUOUS[0]]
    detail = await api.call("GET", f"{V1}/torrents/{AMBIGUOUS[0]}")
    conforms(detail, schema("TorrentDetail"))
    assert detail["files"] == [] and detail["pieces"] == {"count": 0, "have": ""} and detail["piece_length"] is None
    assert (await api.call("GET", f"{V1}/torrents/{AMBIGUOUS[0]}/peers")) == {"peers": []}
    await api.refused("PUT", f"{V1}/torrents/{AMBIGUOUS[0]}/files", 409, json={"priorities": [1]})


@pytest.mark.parametrize("body", [
    {"magnet": "http://example.invalid/x.torrent"},
    {"magnet": "magnet:?xt=urn:btih:zz"},
    {"magnet": "magnet:?dn=no-hash"},
    {"magnet": "magnet:?xt=urn:btih:" + "a" * 40 + "&x.pe=nohost"},
    {"magnet": ""},
    {"magnet": 5},
    {"magnet": None},
    {"magnet": "magnet:?xt=urn:btih:" + "a" * 40, "paused": "maybe"},
    {"magnet": "magnet:?xt=urn:btih:" + "a" * 40, "paused": 1},
    {"magnet": "magnet:?xt=urn:btih:" + "a" * 40, "overwrite": "perhaps"},
    {"magnet": "magnet:?xt=urn:btih:" + "a" * 40, "save_path": 7},
    {"magnet": "magnet:?xt=urn:btih:" + "a" * 40, "save_path": "~no-such-user-here/x"},
    {"nothing": "useful"},
])
async def test_bad_magnet_is_refused(api: Api, body: dict[str, Any]) -> None:
    await api.refused("POST", f"{V1}/torrents", 400, json=body)


async def test_upload_torrent_file(api: Api, tmp_path: Path) -> None:
    meta = create(make_single(tmp_path / "src", size=300_000), version="hybrid", piece_length=32768,
                  web_seeds=["http://127.0.0.1:9/seeds/"])
    form = upload_form(meta.to_bytes(), save_path=str(tmp_path / "downloads" / "dst"), paused="true")
    torrent = (await api.call("POST", f"{V1}/torrents", 201, data=form))["torrent"]
    assert torrent["id"] == meta.info_hash_v1.hex() and torrent["paused"] and torrent["name"] == "data.bin"
    engine = api.node.torrents[torrent["id"]]
    assert engine.meta is not None and engine.meta.info_bytes == meta.info_bytes
    assert engine.save_path == tmp_path / "downloads" / "dst" and engine.paused
    (entry,) = api.daemon.store.entries()
    assert entry.torrent == meta.to_bytes() and entry.save_path == str(tmp_path / "downloads" / "dst")
    detail = await api.call("GET", f"{V1}/torrents/{torrent['id']}")
    assert detail["info_hash_v2"] == meta.info_hash_v2.hex() and detail["piece_length"] == 32768
    assert detail["pieces"]["count"] == meta.num_pieces and detail["files"][0]["path"] == "data.bin"
    conforms(detail, schema("TorrentDetail"))
    assert detail["web_seeds"] == [{"url": "http://127.0.0.1:9/seeds/", "state": "active", "downloaded": 0,
                                    "failures": 0, "hash_failures": 0, "error": None}]  # paused: never asked


@pytest.mark.parametrize("form", [
    upload_form(b"this is not bencode"),
    upload_form(b"d4:infod4:name1:xee"),
    upload_form(b""),
    aiohttp.FormData({"save_path": "x"}, default_to_multipart=True),
], ids=["text", "bad-info", "empty", "no-file"])
async def test_upload_that_is_not_a_torrent_is_refused(api: Api, form: aiohttp.FormData) -> None:
    await api.refused("POST", f"{V1}/torrents", 400, data=form)


async def _chunks(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize("chunked", [False, True])
async def test_huge_upload_is_413_and_the_daemon_still_serves(api: Api, chunked: bool) -> None:
    boundary = "huge-upload-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="torrent"; filename="x.torrent"\r\n\r\n'.encode()
            + b"\0" * (MAX_UPLOAD + 1) + f"\r\n--{boundary}--\r\n".encode())
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    await api.refused("POST", f"{V1}/torrents", 413, headers=headers, data=_chunks(body) if chunked else body)
    big_json = b'{"download": 1, "pad": "' + b"x" * MAX_UPLOAD + b'"}'
    await api.refused("PUT", f"{V1}/limits", 413, headers={"Content-Type": "application/json"}, data=big_json)
    assert (await api.call("GET", f"{V1}/node"))["torrents"] == 0


@pytest.mark.parametrize(("method", "suffix", "content_type"), [
    ("POST", "/torrents", "text/plain"),
    ("POST", "/torrents", "application/x-www-form-urlencoded"),
    ("POST", "/torrents", None),
    ("PUT", "/limits", "text/plain"),
    ("PUT", "/torrents/{id}/limits", "application/x-www-form-urlencoded"),
    ("PUT", "/torrents/{id}/files", "text/plain"),
])
async def test_wrong_content_type_is_415(api: Api, method: str, suffix: str, content_type: str | None) -> None:
    tid = (await api.add_magnet(magnet(AMBIGUOUS[0])))["id"]
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"magnet": magnet(AMBIGUOUS[1]), "download": 5, "priorities": []}).encode()
    await api.refused(method, V1 + suffix.format(id=tid), 415, headers=headers, data=body)


@pytest.mark.parametrize(("body", "content_type"), [
    (b"not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b"1", "application/json"),
    (b'"text"', "application/json"),
    (b"", "application/json"),
    (b"[" * 100_000, "application/json"),
    (b'{"download": 1, "x": "\xff"}', "application/json"),
    (b"{}", "application/json; charset=no-such-charset"),
], ids=["text", "array", "number", "string", "empty", "deep", "not-utf8", "charset"])
@pytest.mark.parametrize(("method", "path"), [("PUT", f"{V1}/limits"), ("POST", f"{V1}/torrents")])
async def test_body_must_be_a_json_object(api: Api, method: str, path: str, body: bytes, content_type: str) -> None:
    await api.refused(method, path, 400, data=body, headers={"Content-Type": content_type})


@pytest.mark.parametrize(("first", "second"), [
    ("magnet", "magnet"), ("upload", "magnet"), ("magnet", "upload"), ("share", "share"), ("share", "upload"),
])
async def test_adding_twice_is_409(api: Api, tmp_path: Path, first: str, second: str) -> None:
    data = make_single(tmp_path / "src", size=100_000)
    meta = create(data.resolve(), version="hybrid")  # what sharing the path makes
    bodies = {"magnet": {"json": {"magnet": str(Magnet.from_metainfo(meta))}},
              "upload": {"data": upload_form(meta.to_bytes())},
              "share": {"json": {"path": str(data)}}}
    await api.call("POST", f"{V1}/torrents", 201, **bodies[first])
    assert "already added" in await api.refused("POST", f"{V1}/torrents", 409, **bodies[second])


async def test_share_local_path(api: Api, tmp_path: Path) -> None:
    data = make_multi(tmp_path / "src")
    detail = await api.share(data)
    conforms(detail, schema("TorrentDetail"))
    torrent, engine = detail["torrent"], api.node.torrents[detail["torrent"]["id"]]
    assert torrent["name"] == "album" and torrent["save_path"] == str(tmp_path / "src") and torrent["progress"] == 1
    meta = engine.meta
    assert meta is not None and torrent["size"] == torrent["have_bytes"] == sum(engine.picker.sizes)  # pads too
    assert [(f["path"], f["size"]) for f in detail["files"]] == [("/".join(f.path), f.length) for f in meta.data_files]
    assert all(f["priority"] == 1 and f["progress"] == 1 for f in detail["files"])
    assert decode_bitfield(detail["pieces"]["have"], meta.num_pieces) == [1] * meta.num_pieces
    (entry,) = api.daemon.store.entries()
    assert entry.shared and entry.torrent == meta.to_bytes()
    assert (data / "disc 1" / "a.bin").stat().st_size == 700_000  # seeded where it is


@pytest.mark.parametrize("body", [
    {"path": "relative/folder"},
    {"path": "{src}.missing"},
    {"path": "{src}\0"},
    {"path": "~no-such-user-here/x"},
    {"path": ""},
    {"path": ["/"]},
    {"path": "{src}", "version": "v3"},
    {"path": "{src}", "version": 2},
])
async def test_share_refused(api: Api, tmp_path: Path, body: dict[str, Any]) -> None:
    src = make_single(tmp_path / "src", size=1000)
    sent = {key: value.format(src=src) if isinstance(value, str) else value for key, value in body.items()}
    await api.refused("POST", f"{V1}/torrents", 400, json=sent)


# -- paths stay inside the daemon's folders (downloads: HOME's download folder; shares: it and the share roots) ---
@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside every root, holding a secret, and links to it from inside the download folder and the
    share root."""
    place = tmp_path / "outside"
    place.mkdir()
    (place / "secret.txt").write_text("not for the API")
    (tmp_path / "downloads").mkdir(exist_ok=True)
    (tmp_path / "downloads" / "link").symlink_to(place)
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "link").symlink_to(place)
    return place


ESCAPING_SAVE_PATHS = ["../../../escape_rel", "../escape_rel", "sub/../../escape_rel", "/etc", "{tmp}/escape_abs",
                       "{tmp}/downloads/../escape_abs", "link", "link/deeper", "{tmp}/downloads/link", "~"]


@pytest.mark.parametrize("save_path", ESCAPING_SAVE_PATHS)
@pytest.mark.parametrize("how", ["magnet", "upload"])
async def test_save_path_outside_the_download_folder_is_refused(api: Api, tmp_path: Path, outside: Path,
                                                                 save_path: str, how: str) -> None:
    given = save_path.format(tmp=tmp_path)
    meta = create(make_single(tmp_path / "made", size=1000, name="payload.bin"), version="hybrid")
    body = ({"json": {"magnet": str(Magnet.from_metainfo(meta)), "save_path": given}} if how == "magnet"
            else {"data": upload_form(meta.to_bytes(), save_path=given)})
    message = await api.refused("POST", f"{V1}/torrents", 403, **body)
    assert str(tmp_path / "downloads") in message and "outside" in message, message
    await asyncio.sleep(0.1)  # a torrent that had been started would have made its file by now
    assert not list(tmp_path.rglob("escape_*")) and not Path("/etc/payload.bin").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"] and not list(tmp_path.rglob("sub"))


@pytest.mark.parametrize("name", ["name_dotdot", "path_absolute", "path_dotdot", "path_dot", "v2_tree_dotdot"])
async def test_a_torrent_whose_file_names_would_escape_is_refused(api: Api, name: str) -> None:
    data = (Path(__file__).parents[1] / "data" / "bad_torrents" / f"{name}.torrent").read_bytes()
    assert "unsafe path component" in await api.refused("POST", f"{V1}/torrents", 400, data=upload_form(data))


@pytest.mark.parametrize(("save_path", "where"), [
    ("sub/deeper", "downloads/sub/deeper"), ("sub/../other", "downloads/other"), (".", "downloads"),
    ("{tmp}/downloads/abs", "downloads/abs"), ("{tmp}/downloads/x/../y", "downloads/y"),
])
async def test_save_path_inside_the_download_folder_is_taken(api: Api, tmp_path: Path, save_path: str,
                                                            where: str) -> None:
    torrent = await api.add_magnet(magnet(AMBIGUOUS[0]), save_path=save_path.format(tmp=tmp_path))
    assert torrent["save_path"] == str(tmp_path / where)
    assert api.node.torrents[AMBIGUOUS[0]].save_path == tmp_path / where


async def test_a_torrent_whose_files_would_go_through_a_link_out_of_the_download_folder_is_refused(
        api: Api, tmp_path: Path, outside: Path) -> None:
    """The save path is inside, but the torrent's top folder is named like a link that leads outside."""
    made = tmp_path / "made" / "link"
    make_single(made, size=1000, name="planted.txt")
    make_single(made, size=2000, name="planted.bin")
    meta = create(made, version="hybrid")
    assert meta.name == "link"
    message = await api.refused("POST", f"{V1}/torrents", 403, data=upload_form(meta.to_bytes()))
    assert "outside" in message
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


@pytest.mark.parametrize("path", ["/etc/hostname", "/etc", "/", "{tmp}/outside/secret.txt", "{tmp}/outside",
                                  "{tmp}/src/link", "{tmp}/src/link/secret.txt", "{tmp}/src/../outside",
                                  "{tmp}/downloads/link/secret.txt", "{tmp}/no/such/thing", "~"])
async def test_share_outside_the_share_roots_is_refused(api: Api, tmp_path: Path, outside: Path, path: str) -> None:
    message = await api.refused("POST", f"{V1}/torrents", 403, json={"path": path.format(tmp=tmp_path)})
    assert str(tmp_path / "downloads") in message and str(tmp_path / "src") in message, message
    assert "--share-root" in message


async def test_share_inside_a_root_is_taken(api: Api, tmp_path: Path) -> None:
    """Inside a share root, and inside the download folder (a share root too), also through an inner link."""
    mine = make_single(tmp_path / "src" / "mine", size=5000, name="mine.bin")
    (tmp_path / "src" / "alias").symlink_to(mine.parent)
    torrent = (await api.share(tmp_path / "src" / "alias" / "mine.bin"))["torrent"]
    assert torrent["save_path"] == str(mine.parent) and torrent["shared"]
    fetched = make_single(tmp_path / "downloads" / "got", size=6000, name="got.bin")
    torrent = (await api.share(fetched))["torrent"]
    assert torrent["save_path"] == str(fetched.parent) and torrent["shared"]


async def test_a_shared_source_is_deleted_only_when_asked_explicitly(api: Api, tmp_path: Path) -> None:
    data = make_multi(tmp_path / "src")
    tid = (await api.share(data))["torrent"]["id"]
    for query in ("?delete_data=1", "?delete_data=true&delete_source=0", "?delete_data=yes&delete_source="):
        message = await api.refused("DELETE", f"{V1}/torrents/{tid}{query}", 409)
        assert "delete_source" in message and str(data.parent) in message, message
    await api.refused("DELETE", f"{V1}/torrents/{tid}?delete_source=1", 400)  # with delete_data only
    await api.refused("DELETE", f"{V1}/torrents/{tid}?delete_data=1&delete_source=maybe", 400)
    assert (data / "disc 1" / "a.bin").is_file()
    assert await api.call("DELETE", f"{V1}/torrents/{tid}?delete_data=1&delete_source=1") == {"removed": tid}
    assert not data.exists() and api.node.torrents == {}


async def test_downloaded_data_is_deleted_without_the_extra_flag(api: Api, tmp_path: Path) -> None:
    meta = create(make_single(tmp_path / "made", size=1000, name="got.bin"), version="hybrid")
    dst = tmp_path / "downloads" / "dst"
    make_single(dst, size=1000, name="got.bin")  # the torrent's data, already there: checked, then seeded
    tid = (await api.call("POST", f"{V1}/torrents", 201, data=upload_form(meta.to_bytes(), save_path="dst")))[
        "torrent"]["id"]
    detail = await api.poll(f"{V1}/torrents/{tid}", lambda d: d["torrent"]["state"] == "seeding")
    assert detail["torrent"]["shared"] is False
    assert await api.call("DELETE", f"{V1}/torrents/{tid}?delete_data=1") == {"removed": tid}
    assert not (dst / "got.bin").exists()


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://{host}"])
@pytest.mark.parametrize("token_in", ["url", "header"])
async def test_events_refuse_a_foreign_origin_even_with_the_token(api: Api, origin: str, token_in: str) -> None:
    host = f"127.0.0.1:{api.client.port}"
    query, headers = (f"?token={TOKEN}", {}) if token_in == "url" else ("", {"X-Peerloom-Token": TOKEN})
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.client.ws_connect(f"{V1}/events{query}", headers={**headers, "Origin": origin.format(host=host)})
    assert refused.value.status == 403
    assert not api.daemon._subscribers
    for own in ({"Origin": f"http://{host}"}, {}):
        async with api.client.ws_connect(f"{V1}/events{query}", headers={**headers, **own}) as ws:
            assert (await asyncio.wait_for(ws.receive_json(), 10))["type"] == "snapshot"


# -- managing --------------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def seeder_of(tmp: Path, data: Path, **share: Any) -> AsyncIterator[tuple[Metainfo, str, int]]:
    """Another node seeding `data`: the metainfo, a magnet link naming the node's address, and its port."""
    async with node(tmp, "seed") as seeder:
        meta = (await seeder.share(data, **share)).meta
        assert meta is not None
        yield meta, str(Magnet.from_metainfo(meta, peers=(("127.0.0.1", seeder.port),))), seeder.port


async def test_transfer_peers_pause_files_limits_resume_remove(api: Api, tmp_path: Path) -> None:
    """A download from a seeding node, driven only through the API, with each step's effect checked."""
    async with seeder_of(tmp_path, make_multi(tmp_path / "src"), version="hybrid", piece_length=32768) as (
            meta, link, port):
        reply = await api.call("PUT", f"{V1}/limits", json={"download": 1})  # below a block a second: stalled
        assert reply == {"limits": {"download": 1, "upload": 0}} and api.node.download_bucket.rate == 1
        dst = tmp_path / "downloads" / "dst"
        tid = (await api.add_magnet(link, save_path=str(dst)))["id"]
        url = f"{V1}/torrents/{tid}"
        engine = api.node.torrents[tid]

        peers = (await api.poll(f"{url}/peers", lambda r: any(p["seed"] for p in r["peers"])))["peers"]
        conforms(peers, {"type": "array", "items": schema("Peer")})
        assert [p["address"] for p in peers] == [f"127.0.0.1:{port}"] and peers[0]["progress"] == 1
        assert "O" in peers[0]["flags"]
        detail = await api.poll(url, lambda d: d["torrent"]["state"] == "downloading")
        assert detail["piece_length"] == 32768 and detail["torrent"]["have_bytes"] == 0  # held by the limit
        assert [f["path"] for f in detail["files"]] == ["/".join(f.path) for f in meta.data_files]
        assert decode_bitfield(detail["pieces"]["have"], meta.num_pieces) == [0] * meta.num_pieces

        paused = (await api.call("POST", f"{url}/pause"))["torrent"]
        assert paused["state"] == "paused" and paused["paused"] and engine.paused
        await api.poll(f"{url}/peers", lambda r: r["peers"] == [])
        assert engine.peers == [] and api.daemon.store.entries()[0].paused

        names = [f["path"] for f in detail["files"]]
        chosen = sorted(names.index(n) for n in ("album/cover.jpg", "album/disc 2/deep/b.bin"))
        priorities = [int(i in chosen) for i in range(len(names))]
        detail = await api.call("PUT", f"{url}/files", json={"priorities": priorities})
        conforms(detail, schema("TorrentDetail"))
        assert [f["priority"] for f in detail["files"]] == priorities and engine.selected == chosen
        assert detail["torrent"]["size"] < meta.total_length and api.daemon.store.entries()[0].files == chosen

        torrent = (await api.call("PUT", f"{url}/limits", json={"upload": 5000}))["torrent"]
        assert torrent["limits"] == {"download": 0, "upload": 5000} and engine.upload_bucket.rate == 5000
        await api.call("PUT", f"{V1}/limits", json={"download": 0})
        assert api.node.download_bucket.rate == 0 and api.node.upload_bucket.rate == 0

        resumed = (await api.call("POST", f"{url}/resume"))["torrent"]
        assert not resumed["paused"] and not engine.paused and not api.daemon.store.entries()[0].paused
        detail = await api.poll(url, lambda d: d["torrent"]["state"] == "seeding")
        assert detail["torrent"]["progress"] == 1 and engine.picker.complete
        have = decode_bitfield(detail["pieces"]["have"], meta.num_pieces)
        assert have == list(engine.picker.have) == [int(w) for w in engine.picker.wanted]  # the chosen files' pieces
        assert 0 < sum(have) < meta.num_pieces
        assert_same_files(meta, tmp_path / "src", dst, only=chosen)

        assert await api.call("DELETE", f"{url}?delete_data=1") == {"removed": tid}
        assert not any(dst.joinpath(*meta.data_files[i].path).exists() for i in chosen)
        assert tid not in api.node.torrents and api.daemon.store.entries() == []


async def test_download_paused_half_way_finishes_after_resume(api: Api, tmp_path: Path) -> None:
    """Reconnecting with some pieces: the bitfield goes before the extension handshake (a peer closed us once)."""
    async with seeder_of(tmp_path, make_single(tmp_path / "src", size=1 << 20), version="v1",
                         piece_length=65536) as (_, link, _port):
        await api.call("PUT", f"{V1}/limits", json={"download": 131072})  # a piece in half a second
        url = f"{V1}/torrents/{(await api.add_magnet(link))['id']}"
        await api.poll(url, lambda d: d["torrent"]["have_bytes"] > 0)
        await api.call("POST", f"{url}/pause")
        await api.call("PUT", f"{V1}/limits", json={"download": 0})
        await api.call("POST", f"{url}/resume")
        await api.poll(url, lambda d: d["torrent"]["progress"] == 1, timeout=4)


@pytest.mark.parametrize("how", ["magnet", "upload"])
async def test_a_users_file_in_the_way_fails_the_torrent_unless_overwrite(api: Api, tmp_path: Path, how: str) -> None:
    """A file at the save path that is not the torrent's is left alone and named in the torrent's error; added again
    with `"overwrite": true`, it is replaced by the torrent's bytes."""
    data = make_single(tmp_path / "src", size=300_000)
    mine = tmp_path / "downloads" / "dst" / data.name
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own notes")
    async with seeder_of(tmp_path, data, version="hybrid", piece_length=32768) as (meta, link, _port):
        async def add(**extra: str | bool) -> str:
            if how == "magnet":
                return (await api.add_magnet(link, save_path=str(mine.parent), **extra))["id"]
            form = upload_form(meta.to_bytes(), save_path=str(mine.parent), **{k: str(v) for k, v in extra.items()})
            torrent = (await api.call("POST", f"{V1}/torrents", 201, data=form))["torrent"]
            api.node.torrents[torrent["id"]].add_peers([("127.0.0.1", _port)])
            return torrent["id"]

        tid = await add()
        failed = (await api.poll(f"{V1}/torrents/{tid}", lambda d: d["torrent"]["state"] == "error"))["torrent"]
        assert failed["error"] == f"{mine} already exists and is not this torrent's data; move it away or use " \
                                  "--overwrite"
        assert mine.read_bytes() == b"my own notes"
        await api.call("DELETE", f"{V1}/torrents/{tid}")

        tid = await add(overwrite=True)
        await api.poll(f"{V1}/torrents/{tid}", lambda d: d["torrent"]["state"] == "seeding")
    assert mine.read_bytes() == data.read_bytes()


@pytest.mark.parametrize("delete_data", ["1", "true", "0", None])
async def test_remove(api: Api, tmp_path: Path, delete_data: str | None) -> None:
    data = make_multi(tmp_path / "src")
    tid = (await api.share(data))["torrent"]["id"]
    query = "" if delete_data is None else f"?delete_data={delete_data}&delete_source={delete_data}"  # shared data
    await api.refused("DELETE", f"{V1}/torrents/{tid}?delete_data=maybe", 400)
    assert await api.call("DELETE", f"{V1}/torrents/{tid}{query}") == {"removed": tid}
    assert api.node.torrents == {} and api.daemon.store.entries() == [] and api.node.resume.load(tid) is None
    assert (await api.call("GET", f"{V1}/torrents")) == {"torrents": []}
    files = [data / "cover.jpg", data / "disc 1" / "a.bin", data / "disc 2" / "deep" / "b.bin"]
    assert [f.exists() for f in files] == [delete_data in (None, "0")] * len(files)
    await api.refused("DELETE", f"{V1}/torrents/{tid}", 404)


async def test_pause_and_resume_a_seed(api: Api, tmp_path: Path) -> None:
    tid = (await api.share(make_single(tmp_path / "src", size=100_000)))["torrent"]["id"]
    for action, state in (("pause", "paused"), ("pause", "paused"), ("resume", "seeding"), ("resume", "seeding")):
        torrent = (await api.call("POST", f"{V1}/torrents/{tid}/{action}"))["torrent"]
        assert torrent["state"] == state and api.node.torrents[tid].paused is (state == "paused")
        assert api.daemon.store.entries()[0].paused is (state == "paused")


async def test_file_priorities(api: Api, tmp_path: Path) -> None:
    tid = (await api.share(make_multi(tmp_path / "src")))["torrent"]["id"]
    engine = api.node.torrents[tid]
    for priorities, selected in (([1, 0, 1, 0, 1], [0, 2, 4]), ([0] * 5, []), ([1] * 5, None)):
        detail = await api.call("PUT", f"{V1}/torrents/{tid}/files", json={"priorities": priorities})
        assert [f["priority"] for f in detail["files"]] == priorities
        assert engine.selected == selected and api.daemon.store.entries()[0].files == selected
        wanted = sum(f["size"] for f, p in zip(detail["files"], priorities, strict=True) if p)
        assert detail["torrent"]["size"] >= wanted and (detail["torrent"]["size"] == 0) == (wanted == 0)


@pytest.mark.parametrize("body", [
    {"priorities": [1, 1, 1, 1]},
    {"priorities": [1] * 6},
    {"priorities": [2, 1, 1, 1, 1]},
    {"priorities": [-1, 1, 1, 1, 1]},
    {"priorities": [True, 1, 1, 1, 1]},
    {"priorities": [1.0, 1, 1, 1, 1]},
    {"priorities": ["1", 1, 1, 1, 1]},
    {"priorities": "11111"},
    {"priorities": None},
    {},
])
async def test_bad_priorities_are_refused(api: Api, tmp_path: Path, body: dict[str, Any]) -> None:
    tid = (await api.share(make_multi(tmp_path / "src")))["torrent"]["id"]
    await api.call("PUT", f"{V1}/torrents/{tid}/files", json={"priorities": [0, 1, 1, 1, 1]})
    await api.refused("PUT", f"{V1}/torrents/{tid}/files", 400, json=body)


async def test_limits(api: Api) -> None:
    tid = (await api.add_magnet(magnet(AMBIGUOUS[0])))["id"]
    engine, node_ = api.node.torrents[tid], api.node
    for body, want in (({"download": 1000, "upload": 2000}, (1000, 2000)), ({"upload": 0}, (1000, 0)),
                       ({}, (1000, 0)), ({"download": None, "upload": 7}, (1000, 7))):
        reply = await api.call("PUT", f"{V1}/limits", json=body)
        assert reply == {"limits": {"download": want[0], "upload": want[1]}}
        assert (node_.download_bucket.rate, node_.upload_bucket.rate) == want
        torrent = (await api.call("PUT", f"{V1}/torrents/{tid}/limits", json=body))["torrent"]
        assert torrent["limits"] == {"download": want[0], "upload": want[1]}
        assert (engine.download_bucket.rate, engine.upload_bucket.rate) == want
        (entry,) = api.daemon.store.entries()
        assert (entry.download_limit, entry.upload_limit) == want
    assert (api.daemon.store.setting("download_limit", -1), api.daemon.store.setting("upload_limit", -1)) == want
    assert (await api.call("GET", f"{V1}/node"))["limits"] == {"download": 1000, "upload": 7}


@pytest.mark.parametrize("body", [
    {"download": -1}, {"upload": "100"}, {"download": True}, {"download": 1.5}, {"download": 2 ** 41},
    {"download": [1]}, {"download": 5, "upload": -1},
])
@pytest.mark.parametrize("target", [f"{V1}/limits", f"{V1}/torrents/{{id}}/limits"])
async def test_bad_limits_are_refused(api: Api, target: str, body: dict[str, Any]) -> None:
    tid = (await api.add_magnet(magnet(AMBIGUOUS[0])))["id"]
    await api.refused("PUT", target.format(id=tid), 400, json=body)


# -- node, metrics, events -------------------------------------------------------------------------------
async def test_node_info(api: Api) -> None:
    await api.add_magnet(magnet(AMBIGUOUS[0]))
    info = await api.call("GET", f"{V1}/node")
    conforms(info, schema("NodeInfo"))
    n = api.node
    assert info["peer_id"] == str(n.identity.peer_id) and info["version"] == __version__
    assert info["port"] == n.port and info["dht_port"] is None and info["torrents"] == 1
    assert info["listen_addrs"] == [str(a) for a in n.secure_addrs] and info["secure_port"] > 0
    assert f"/tcp/{info['secure_port']}" in info["listen_addrs"][0]


SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|NaN|[+-]Inf)')


async def test_metrics_are_prometheus_text(api: Api, tmp_path: Path) -> None:
    await api.share(make_single(tmp_path / "src", size=100_000))
    await api.add_magnet(magnet(AMBIGUOUS[0]))
    async with api.client.get("/metrics", headers={"X-Peerloom-Token": TOKEN}) as response:
        assert response.status == 200 and response.content_type == "text/plain"
        text = await response.text()
    helped, typed, samples = set(), {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge") and name not in typed
            typed[name] = kind
        else:
            match = SAMPLE.fullmatch(line)
            assert match, line
            name, labels, value = match.groups()
            assert name in helped and name in typed, name  # HELP and TYPE come first
            samples[name + (labels or "")] = float(value)
    assert all(name.endswith("_total") for name, kind in typed.items() if kind == "counter")
    assert samples['peerloom_torrents{state="seeding"}'] == 1
    assert samples['peerloom_torrents{state="fetching metadata"}'] == 1
    assert samples["peerloom_peers"] == 0 and samples["peerloom_downloaded_bytes_total"] == 0


async def next_event(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next event of this type (snapshots come every tick in between), checked against the document."""
    async with asyncio.timeout(10):
        while (event := await ws.receive_json())["type"] != kind:
            pass
    conforms(event, schema("Event"))
    return event


async def test_events_websocket(api: Api) -> None:
    first = await api.add_magnet(magnet(AMBIGUOUS[0]))
    async with api.client.ws_connect(f"{V1}/events?token={TOKEN}") as ws:
        snapshot = await asyncio.wait_for(ws.receive_json(), 10)
        conforms(snapshot, schema("SnapshotEvent"))
        assert [t["id"] for t in snapshot["torrents"]] == [first["id"]] and snapshot["node"]["torrents"] == 1
        added = (await api.add_magnet(magnet(AMBIGUOUS[1])))["id"]
        assert (await next_event(ws, "added"))["torrent"]["id"] == added
        await api.call("POST", f"{V1}/torrents/{added}/pause")
        event = await next_event(ws, "state")
        assert event == {"type": "state", "id": added, "state": "paused", "previous": "fetching metadata"}
        await api.call("DELETE", f"{V1}/torrents/{added}")
        assert await next_event(ws, "removed") == {"type": "removed", "id": added}
        assert [t["id"] for t in (await next_event(ws, "snapshot"))["torrents"]] == [first["id"]]
    await until(lambda: not api.daemon._subscribers)  # the closed socket's queue is dropped


@pytest.mark.parametrize("query", ["", "?token=wrong"])
async def test_events_want_the_token(api: Api, query: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.client.ws_connect(f"{V1}/events{query}")
    assert refused.value.status == 401
    async with api.client.ws_connect(f"{V1}/events", headers={"X-Peerloom-Token": TOKEN}) as ws:
        assert (await asyncio.wait_for(ws.receive_json(), 10))["type"] == "snapshot"
    await api.call("GET", f"{V1}/events", 400)  # not a WebSocket upgrade


# -- persistence -----------------------------------------------------------------------------------------
async def test_choices_survive_in_the_store_and_across_a_restart(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        shared = (await api.share(make_multi(tmp_path / "src")))["torrent"]["id"]
        await api.call("PUT", f"{V1}/torrents/{shared}/files", json={"priorities": [1, 0, 1, 0, 1]})
        await api.call("PUT", f"{V1}/torrents/{shared}/limits", json={"download": 1000, "upload": 2000})
        fetching = (await api.add_magnet(magnet(AMBIGUOUS[0]), save_path="later"))["id"]
        await api.call("POST", f"{V1}/torrents/{fetching}/pause")
        await api.call("PUT", f"{V1}/limits", json={"download": 3000, "upload": 4000})
        store = DaemonStore(api.node.state)
        entries = {e.id: e for e in store.entries()}
        assert [store.setting(k, -1) for k in ("download_limit", "upload_limit")] == [3000, 4000]
        assert list(entries) == [shared, fetching]
        assert entries[shared].files == [0, 2, 4] and not entries[shared].paused and entries[shared].shared
        assert (entries[shared].download_limit, entries[shared].upload_limit) == (1000, 2000)
        assert entries[fetching].paused and entries[fetching].files is None
        assert entries[fetching].save_path == str(tmp_path / "downloads" / "later")

    async with serve(tmp_path) as api:
        torrents = api.node.torrents
        assert list(torrents) == [shared, fetching]
        assert torrents[shared].selected == [0, 2, 4] and not torrents[shared].paused
        assert (torrents[shared].download_bucket.rate, torrents[shared].upload_bucket.rate) == (1000, 2000)
        assert torrents[fetching].paused and torrents[fetching].save_path == tmp_path / "downloads" / "later"
        assert (api.node.download_bucket.rate, api.node.upload_bucket.rate) == (3000, 4000)
        detail = await api.poll(f"{V1}/torrents/{shared}", lambda d: d["torrent"]["state"] == "seeding")
        assert [f["priority"] for f in detail["files"]] == [1, 0, 1, 0, 1]
        listed = (await api.call("GET", f"{V1}/torrents"))["torrents"]
        assert [(t["id"], t["state"]) for t in listed] == [(shared, "seeding"), (fetching, "paused")]


async def test_kept_torrents_outside_the_folders_are_not_restored(tmp_path: Path) -> None:
    """A torrent kept by an earlier run whose data is outside today's folders (a root given no more, or a path an
    older daemon took unconfined) stays stopped, and in the store for a start with folders that hold it."""
    async with serve(tmp_path) as api:
        shared = (await api.share(make_single(tmp_path / "src", size=5000)))["torrent"]["id"]
        kept = (await api.add_magnet(magnet(AMBIGUOUS[0]), save_path="in"))["id"]
        api.daemon.store.save(Entry(id=AMBIGUOUS[1], save_path=str(tmp_path / "escaped"), magnet=magnet(AMBIGUOUS[1])))
    async with serve(tmp_path, share_roots=[]) as api:
        assert list(api.node.torrents) == [kept]
        assert [e.id for e in api.daemon.store.entries()] == [shared, kept, AMBIGUOUS[1]]
    async with serve(tmp_path) as api:
        assert list(api.node.torrents) == [shared, kept]
    assert not (tmp_path / "escaped").exists()
