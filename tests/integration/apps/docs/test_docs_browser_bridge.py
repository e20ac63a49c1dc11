"""The editor's WebSocket bridge (apps/docs/browser) in-process on a real node: a "browser" (a pycrdt Doc speaking
y-protocols through aiohttp's WebSocket client) syncs, edits (acknowledged once stored), receives the document's other
updates and the other editors' awareness; a read-only document refuses its edits; malformed and oversized messages
end the connection; an abrupt disconnect removes its editor's presence and leaves the daemon serving."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from pycrdt import Doc, Text
from support.swarm import node

from peerloom.api.server import allowed_hosts, make_app
from peerloom.api.service import Daemon
from peerloom.apps.docs import browser
from peerloom.apps.docs.awareness import AwarenessEntry, encode_awareness, parse_awareness
from peerloom.apps.docs.bridge import (
    MAX_MESSAGE_SIZE,
    MSG_ACK,
    MSG_AUTH,
    MSG_AWARENESS,
    MSG_SYNC,
    SYNC_STEP1,
    SYNC_STEP2,
    encode_step1,
    encode_step2,
    encode_update,
)
from peerloom.apps.docs.bridge import encode_awareness as awareness_message
from peerloom.apps.docs.browser import SendQueue
from peerloom.apps.docs.handle import DocHandle
from peerloom.codec.varint import decode_varint
from peerloom.node import Node

pytestmark = pytest.mark.timeout(30)
TOKEN = "test-token-0123456789-abcdefghijklmnopqrstuvwxyz"


def _field(data: bytes, pos: int) -> bytes:
    length, pos = decode_varint(data, pos, max_bytes=8, minimal=False)
    assert pos + length == len(data)
    return data[pos:]


@dataclass
class Browser:
    """What the page's editor does, with pycrdt in place of Yjs."""

    ws: aiohttp.ClientWebSocketResponse
    session: aiohttp.ClientSession
    doc: Doc = field(default_factory=Doc)
    acked: int = 0
    awareness: list[bytes] = field(default_factory=list)
    denied: str | None = None
    synced: bool = False

    @property
    def text(self) -> Text:
        return self.doc.get("text", type=Text)

    async def receive(self) -> None:
        """Handle the next message from the daemon as the page does."""
        msg = await asyncio.wait_for(self.ws.receive(), 10)
        assert msg.type == WSMsgType.BINARY, msg
        data: bytes = msg.data
        kind, pos = decode_varint(data, 0)
        if kind == MSG_SYNC:
            sync, pos = decode_varint(data, pos)
            body = _field(data, pos)
            if sync == SYNC_STEP1:
                await self.ws.send_bytes(encode_step2(self.doc.get_update(body)))
            else:
                self.doc.apply_update(body)
                self.synced = self.synced or sync == SYNC_STEP2
        elif kind == MSG_AWARENESS:
            self.awareness.append(_field(data, pos))
        elif kind == MSG_AUTH:
            reason, _ = decode_varint(data, pos + 1)
            self.denied = data[pos + 1 + len(bytes([reason])):].decode(errors="replace")
        else:
            assert kind == MSG_ACK
            self.acked, _ = decode_varint(data, pos, max_bytes=8, minimal=False)

    async def until(self, condition: object, what: str) -> None:
        async with asyncio.timeout(10):
            while not condition():  # type: ignore[operator]
                await self.receive()

    async def sync(self) -> None:
        await self.ws.send_bytes(encode_step1(self.doc.get_state()))
        await self.until(lambda: self.synced, "step 2")

    async def edit(self, index: int, content: str) -> int:
        """Insert `content` and send the update; the number of messages the daemon must acknowledge."""
        before = self.doc.get_state()
        self.text.insert(index, content)
        await self.ws.send_bytes(encode_update(self.doc.get_update(before)))
        return self.acked + 1


@dataclass
class Served:
    client: TestClient
    node: Node

    @contextlib.asynccontextmanager
    async def browser(self, handle: DocHandle) -> AsyncIterator[Browser]:
        """A page on its own HTTP session (so closing its connector drops just it, without a close frame)."""
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(self.client.make_url(f"/api/v1/docs/{handle.id}/ws?token={TOKEN}"))
            browser = Browser(ws, session)
            try:
                await browser.sync()
                yield browser
            finally:
                await ws.close()


@contextlib.asynccontextmanager
async def serve(tmp: Path) -> AsyncIterator[Served]:
    async with node(tmp, "daemon") as daemon_node:
        daemon = Daemon(daemon_node, tmp / "downloads")
        await daemon.start()
        hosts: set[str] = set()
        client = TestClient(TestServer(make_app(daemon, TOKEN, hosts), host="127.0.0.1"))
        await client.start_server()
        hosts |= allowed_hosts("127.0.0.1", client.port or 0)
        try:
            yield Served(client, daemon_node)
        finally:
            await client.close()
            await daemon.stop()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve(tmp_path) as s:
        yield s


async def test_a_browser_syncs_edits_with_acks_and_sees_the_document_s_other_updates(served: Served) -> None:
    handle = await served.node.docs.create("notes")
    handle.text().insert(0, "héllo 😀")
    async with served.browser(handle) as page:
        assert str(page.text) == "héllo 😀"  # step 2 brought the document
        want = await page.edit(len("héllo 😀".encode()), " wörld")  # pycrdt counts UTF-8 bytes
        await page.until(lambda: page.acked == want, "the ack")
        assert str(handle.text()) == "héllo 😀 wörld"  # applied and stored before the ack
        handle.text().insert(0, "» ")  # an edit from elsewhere (the Python API) reaches the page
        await page.until(lambda: str(page.text) == "» héllo 😀 wörld", "the forwarded update")


async def test_an_acknowledged_edit_is_in_the_store(tmp_path: Path) -> None:
    async with serve(tmp_path) as served:
        handle = await served.node.docs.create()
        async with served.browser(handle) as page:
            want = await page.edit(0, "kept")
            await page.until(lambda: page.acked == want, "the ack")
        doc_id = handle.id
    async with node(tmp_path, "daemon") as again:  # the same home, started anew
        reopened = again.docs.get(doc_id)
        assert reopened is not None and str(reopened.text()) == "kept"


async def test_two_pages_see_each_other_s_edits_and_presence_and_a_vanished_page_leaves(served: Served) -> None:
    handle = await served.node.docs.create()
    async with served.browser(handle) as first, served.browser(handle) as second:
        presence = encode_awareness([AwarenessEntry(4242, 1, json.dumps({"user": {"name": "ann"}}))])
        await first.ws.send_bytes(awareness_message(presence))
        await second.until(lambda: any(e.client == 4242 for u in second.awareness for e in parse_awareness(u)),
                           "ann's presence")
        want = await first.edit(0, "from ann")
        await first.until(lambda: first.acked == want, "the ack")
        await second.until(lambda: str(second.text) == "from ann", "ann's edit")
        await first.session.connector.close()  # type: ignore[union-attr]  # its socket closes without a close frame
        await second.until(lambda: any(e.client == 4242 and e.state == "null" and e.clock == 2
                                       for u in second.awareness for e in parse_awareness(u)), "ann leaving")
        want = await second.edit(0, "still ")  # the daemon serves on
        await second.until(lambda: second.acked == want, "the ack")
    assert str(handle.text()) == "still from ann"


async def test_a_read_only_document_refuses_the_browser_s_edits(served: Served, tmp_path: Path) -> None:
    async with node(tmp_path, "owner") as owner:
        doc = await owner.docs.create()
        doc.text().insert(0, "owner's text")
        handle = await served.node.docs.open(doc.read_link)
        assert not handle.writable
        await served.node.docs.connect(owner.secure_addrs[0])
        async with asyncio.timeout(10):
            while str(handle.text()) != "owner's text":
                await asyncio.sleep(0.05)
        async with served.browser(handle) as page:
            assert str(page.text) == "owner's text"
            await page.edit(0, "mine ")
            await page.until(lambda: page.denied is not None, "the refusal")
            assert "writer" in (page.denied or "")
            assert (await asyncio.wait_for(page.ws.receive(), 10)).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
        assert str(handle.text()) == "owner's text"


@pytest.mark.parametrize("data", [b"\x07", b"\x00\x02\x03\x00\x00\x07", b"\x00\x02" + bytes(MAX_MESSAGE_SIZE)])
async def test_a_bad_or_oversized_message_ends_the_connection(served: Served, data: bytes) -> None:
    handle = await served.node.docs.create()
    async with served.browser(handle) as page:
        await page.ws.send_bytes(data)
        async with asyncio.timeout(10):
            while (msg := await page.ws.receive()).type == WSMsgType.BINARY:
                pass
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    async with served.browser(handle) as page:  # the document is still served
        want = await page.edit(0, "ok")
        await page.until(lambda: page.acked == want, "the ack")


async def test_an_unknown_document_or_a_missing_token_is_refused(served: Served) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as unknown:
        await served.client.ws_connect(f"/api/v1/docs/{'ab' * 32}/ws?token={TOKEN}")
    assert unknown.value.status == 404
    async with served.client.get(f"/api/v1/docs/{'ab' * 32}/ws?token={TOKEN}") as response:
        assert response.status == 401  # the token goes in the URL of a WebSocket handshake only
    handle = await served.node.docs.create()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await served.client.ws_connect(f"/api/v1/docs/{handle.id}/ws")
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as foreign:
        await served.client.ws_connect(f"/api/v1/docs/{handle.id}/ws?token={TOKEN}",
                                       headers={"Origin": "http://evil.example"})
    assert foreign.value.status == 403


async def test_the_send_queue_is_bounded_in_messages_and_bytes() -> None:
    queue = SendQueue(max_messages=3, max_bytes=100)
    assert queue.put(b"a" * 40) and queue.put(b"b" * 40)
    assert not queue.put(b"c" * 40) and queue.overflowed  # 120 bytes: over
    assert await queue.get() is None  # an overflowed queue ends the connection
    queue = SendQueue(max_messages=2, max_bytes=100)
    assert queue.put(b"1") and queue.put(b"2") and not queue.put(b"3")
    queue = SendQueue()
    assert queue.put(b"x")
    queue.close()
    assert await queue.get() == b"x" and await queue.get() is None  # what was queued goes out before the end
    assert not queue.put(b"y")


async def test_a_page_that_stops_reading_is_disconnected_and_the_others_go_on(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "MAX_QUEUE_MESSAGES", 8)
    handle = await served.node.docs.create()
    async with served.browser(handle) as stuck, served.browser(handle) as reader:
        received = 0

        async def follow() -> None:
            nonlocal received
            while True:
                await reader.receive()
                received += 1

        follower = asyncio.create_task(follow())  # this page keeps reading
        chunk = "x" * 200_000

        def replace(doc: Doc) -> None:  # the document stays small, each update is large (ASCII: bytes are units)
            text = doc.get("text", type=Text)
            text.insert(0, chunk)
            del text[len(chunk):]

        async with asyncio.timeout(60):
            for i in range(150):  # up to 30 MB: more than the sockets buffer, so the stuck page's queue fills up
                handle.edit(replace)
                while received < i + 1:  # in step with the reading page
                    assert not follower.done()
                    await asyncio.sleep(0.002)
                if stuck.ws.closed:
                    break
            while (msg := await stuck.ws.receive()).type == WSMsgType.BINARY:
                pass  # what was sent before the end
        assert msg.type == WSMsgType.CLOSE and msg.data == WSCloseCode.TRY_AGAIN_LATER
        assert not follower.done()  # the reading page is still served
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        want = await reader.edit(0, "still here ")
        await reader.until(lambda: reader.acked == want, "the ack")
