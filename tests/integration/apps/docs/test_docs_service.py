"""The documents service between real nodes on loopback: the Python API of the contract (create, open by link,
text in UTF-16 positions, apply_local, subscribe, awareness), live sync, catch-up after being offline, readers and
relays."""

from __future__ import annotations

from pathlib import Path

import pytest
from pycrdt import Doc, Text
from support.docs import link, make_node, until
from support.swarm import node

from peerloom.apps.docs.awareness import AwarenessEntry, encode_awareness
from peerloom.apps.docs.handle import DocHandle, UpdateTooLarge
from peerloom.apps.docs.held import ReadOnlyDocument
from peerloom.apps.docs.updates import MAX_UPDATE_SIZE, UpdateRefused

pytestmark = pytest.mark.timeout(60)


def same(*handles: DocHandle) -> bool:
    return len({h.doc.get_update() for h in handles}) == 1 and len({str(h.text()) for h in handles}) == 1


async def test_two_nodes_edit_one_document_live_with_utf16_positions_and_listeners(tmp_path: Path) -> None:
    async with make_node(tmp_path, "a") as a, make_node(tmp_path, "b") as b:
        doc_a = await a.docs.create("notes")
        assert doc_a.writable and doc_a.link.startswith("peerloom://doc/") and "write=" in doc_a.link
        assert "write=" not in doc_a.read_link and "read=" in doc_a.read_link
        doc_a.text().insert(0, "a😀b")
        doc_a.text().insert(3, "é")  # UTF-16: after the emoji's two units
        assert str(doc_a.text()) == "a😀éb"
        doc_b = await b.docs.open(doc_a.link)
        seen: list[tuple[bytes, str]] = []
        stop = doc_b.subscribe(lambda update, origin: seen.append((update, origin)))
        await link(a, b)
        await until(lambda: str(doc_b.text()) == "a😀éb", what="catch-up")
        doc_b.text().insert(len(doc_b.text()), " 日本")
        await until(lambda: same(doc_a, doc_b) and str(doc_a.text()).endswith("日本"), what="live edit b→a")
        assert {origin for _, origin in seen} == {"remote", "local"}
        replay = Doc()
        for update, _ in seen:
            replay.apply_update(update)
        assert str(replay.get("text", type=Text)) == str(doc_b.text())  # listeners saw every change
        stop()
        assert [i.title for i in a.docs.list()] == ["notes"] and a.docs.list()[0].peers == 1


async def test_apply_local_acknowledges_stores_and_refuses_garbage_oversized_and_read_only(tmp_path: Path) -> None:
    async with make_node(tmp_path, "a") as a, make_node(tmp_path, "b") as b:
        doc_a = await a.docs.create()
        editor = Doc()
        editor.get("text", type=Text).insert(0, "from an editor ✓")
        await doc_a.apply_local(editor.get_update())
        assert str(doc_a.text()) == "from an editor ✓"
        assert doc_a.diff(editor.get_state()) != b"" and doc_a.state_vector() == doc_a.doc.get_state()
        with pytest.raises(UpdateRefused):
            await doc_a.apply_local(b"\x01\x02garbage")
        with pytest.raises(UpdateTooLarge):
            await doc_a.apply_local(bytes(MAX_UPDATE_SIZE))
        reader = await b.docs.open(doc_a.read_link)
        assert not reader.writable
        with pytest.raises(ReadOnlyDocument):
            await reader.apply_local(editor.get_update())
        with pytest.raises(ReadOnlyDocument):
            reader.text().insert(0, "x")
        await link(a, b)
        await until(lambda: str(reader.text()) == "from an editor ✓", what="the reader's copy")


async def test_catch_up_after_offline_edits_on_both_sides_and_through_a_relay_without_the_read_key(
    tmp_path: Path,
) -> None:
    async with make_node(tmp_path, "a") as a, make_node(tmp_path, "b") as b, make_node(tmp_path, "r") as r:
        doc_a = await a.docs.create()
        doc_b = await b.docs.open(doc_a.link)
        relay = await r.docs.open(doc_a.name_link)
        assert not relay.readable
        for i in range(20):
            doc_a.text().insert(0, f"a{i} ")
            doc_b.text().insert(0, f"b{i} ")
        await link(a, r)  # a and b never meet: everything goes through the relay
        await link(b, r)
        await until(lambda: same(doc_a, doc_b), what="convergence through the relay")
        assert "a19" in str(doc_a.text()) and "b19" in str(doc_a.text())
        with pytest.raises(ReadOnlyDocument):
            relay.doc  # noqa: B018


async def test_awareness_is_relayed_to_peers_and_local_listeners_once(tmp_path: Path) -> None:
    async with make_node(tmp_path, "a") as a, make_node(tmp_path, "b") as b:
        doc_a = await a.docs.create()
        doc_b = await b.docs.open(doc_a.link)
        await link(a, b)
        await until(lambda: a.docs.list()[0].peers == 1 and b.docs.list()[0].peers == 1, what="links")
        got: list[bytes] = []
        doc_b.awareness.subscribe(lambda update, origin: got.append(update))
        local: list[tuple[bytes, object]] = []
        doc_a.awareness.subscribe(lambda update, origin: local.append((update, origin)))
        update = encode_awareness([AwarenessEntry(7, 1, '{"user":{"name":"ana"}}')])
        doc_a.awareness.apply(update, "browser")
        await until(lambda: got == [update], what="awareness at b")
        assert local == [(update, "browser")]  # other local editors see it, with the origin to skip their own
        doc_a.awareness.apply(update, "browser")  # the same clock again: nothing new goes out
        reply = encode_awareness([AwarenessEntry(9, 3, '{"user":{"name":"bo"}}')])
        doc_b.awareness.apply(reply, "browser")
        await until(lambda: len(local) == 2, what="awareness back at a")
        assert local[1] == (reply, "remote") and got == [update, reply]


async def test_two_nodes_that_share_only_a_dht_bootstrap_node_find_each_other_by_the_documents_topic(
    tmp_path: Path,
) -> None:
    dht = dict(dht=True, public_bootstrap=False)
    async with node(tmp_path, "boot", pubsub=False, **dht) as boot:
        assert boot.dht is not None
        bootstrap = [("127.0.0.1", boot.dht.port)]
        async with node(tmp_path, "a", bootstrap=bootstrap, **dht) as a, \
                node(tmp_path, "b", bootstrap=bootstrap, **dht) as b:
            assert a.pubsub is not None and a.pubsub.rendezvous is not None
            a.pubsub.rendezvous.interval = 0.2
            doc_a = await a.docs.create()
            doc_a.text().insert(0, "found through the DHT")
            topic = "peerloom-doc/" + doc_a.id
            await until(lambda: a.pubsub.rendezvous.announced.get(topic, 0) >= 1, what="a announced the document")
            assert b.identity.peer_id not in a.secure_host.connections
            doc_b = await b.docs.open(doc_a.read_link)  # no --peer: b looks the document's topic up
            await until(lambda: str(doc_b.text()) == "found through the DHT", what="b found a and synced")
