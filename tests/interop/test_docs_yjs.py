"""pycrdt (behind peerloom's text-position conversion and update checks) against a real Yjs 13.6.33 client
(tests/interop/js_yjs/yjs_peer.mjs): edits at UTF-16 positions after accents, CJK and emoji land where Yjs puts
them, each side integrates the other's updates fully (nothing left pending), and both converge on the same text."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycrdt import Array, Doc, Map, Text
from support.docs import edit, link, make_node, until  # the same random edits as the 3-node test
from support.yjs_bridge import YjsBridge

from peerloom.apps.docs.keys import DocKeys, WriterGrant
from peerloom.apps.docs.textpos import delete_utf16, insert_utf16, utf16_length
from peerloom.apps.docs.updates import Replica, UpdateRefused, decode_envelope, seal
from peerloom.apps.docs.yupdate import parse_state_vector, parse_update

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]  # the first run may `npm ci`
JS_DIR = Path(__file__).parent / "js_yjs"


class YjsPeer:
    """The Node process holding one Y.Doc; `call` sends a command and returns its answer."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["node", str(JS_DIR / "yjs_peer.mjs")], cwd=JS_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, encoding="utf-8")

    def call(self, **cmd: object) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def apply(self, update: bytes) -> dict:
        return self.call(op="apply", update=base64.b64encode(update).decode())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def yjs_installed() -> None:
    if all((JS_DIR / "node_modules" / name / "package.json").exists() for name in ("yjs", "y-protocols")):
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("Yjs interop needs Node.js and npm on PATH")
    done = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=JS_DIR,
                          capture_output=True, text=True, timeout=240)
    if done.returncode != 0:
        if os.environ.get("CI"):
            raise RuntimeError(done.stderr)
        pytest.skip(f"npm ci failed: {done.stderr.strip()[-200:]}")


@pytest.fixture
def yjs(yjs_installed: None) -> Iterator[YjsPeer]:
    peer = YjsPeer()
    yield peer
    peer.close()


def local_edit(replica: Replica, change) -> bytes:
    """Apply `change` to the replica's Text and return the plain Yjs update it made (through a signed envelope)."""
    before = replica.doc.get_state()
    change(replica.doc.get("t", type=Text))
    data = replica.commit_local(before)
    assert data is not None and replica.keys.read_key is not None
    return decode_envelope(data).open(replica.keys.read_key)


def splice(text: str, index: int, remove: int, insert: str) -> str:
    """What Yjs makes of `text` after delete(index, remove) and insert(index, insert): UTF-16 units."""
    units = text.encode("utf-16-le")
    return (units[:2 * index] + insert.encode("utf-16-le") + units[2 * (index + remove):]).decode("utf-16-le")


def test_pycrdt_edits_at_utf16_positions_land_where_yjs_puts_them(yjs: YjsPeer) -> None:
    keys, _ = DocKeys.new()
    replica = Replica(keys)
    expected = ""
    for index, content in [(0, "a😀b"), (3, "日本語"), (1, "héllo"), (8, "😀"), (utf16_length("héllo") + 1, "!")]:
        yjs.call(op="insert", index=index, text=content)  # the same edit made natively in Yjs, for reference
        expected = splice(expected, index, 0, content)
        local_edit(replica, lambda t, i=index, c=content: insert_utf16(t, i, c))
        assert str(replica.doc.get("t", type=Text)) == expected
    reference = yjs.call(op="update")["text"]
    assert reference == expected  # Yjs put the edits at the same places
    other = YjsPeer()
    try:
        answer = other.apply(replica.doc.get_update())
        assert answer == {"text": expected, "length": utf16_length(expected), "pending": False}
    finally:
        other.close()


def test_concurrent_edits_at_emoji_and_cjk_positions_converge(yjs: YjsPeer) -> None:
    keys, doc_key = DocKeys.new()
    replica = Replica(keys)
    js_writer = DocKeys(keys.doc_id, keys.read_key, Ed25519PrivateKey.generate())  # the Yjs side's signer
    assert js_writer.writer_id is not None
    replica.gate.grant(WriterGrant.issue(doc_key, js_writer.writer_id).encode())
    base = local_edit(replica, lambda t: insert_utf16(t, 0, "héllo 日本語 a😀b"))
    assert yjs.apply(base)["pending"] is False
    for round_ in range(3):
        before_state = replica.doc.get_state()
        before_py, before_js = str(replica.doc.get("t", type=Text)), yjs.call(op="update")["text"]
        assert before_py == before_js
        # each side edits without seeing the other, in UTF-16 units: Yjs right after the first emoji and on a CJK
        # character, pycrdt at the start and inside the CJK run
        emoji_at = len(before_py[:before_py.index("😀")].encode("utf-16-le")) // 2
        yjs.call(op="insert", index=emoji_at + 2, text=f"J{round_}😀")
        yjs.call(op="delete", index=7, length=1)
        py_update = local_edit(replica, lambda t, r=round_: (delete_utf16(t, 0, 1), insert_utf16(t, 7, f"P{r}日")))
        assert str(replica.doc.get("t", type=Text)) == splice(splice(before_py, 0, 1, ""), 7, 0, f"P{round_}日")
        js_update = base64.b64decode(yjs.call(op="update", since=base64.b64encode(before_state).decode())["update"])
        # Yjs's update, signed for the envelope, passes the strict reader and the scratch check
        replica.receive(seal(js_writer, round_, js_update))
        answer = yjs.apply(py_update)
        assert answer["pending"] is False
        assert answer["text"] == str(replica.doc.get("t", type=Text))
        assert answer["length"] == utf16_length(answer["text"])
    assert "😀" in answer["text"] and "P2日" in answer["text"] and "J2😀" in answer["text"]


def test_every_kind_of_yjs_content_passes_the_checks_and_what_pycrdt_cannot_read_is_refused(yjs: YjsPeer) -> None:
    keys, _ = DocKeys.new()
    replica = Replica(keys)
    yjs.call(op="insert", index=0, text="a😀b")
    summary = yjs.call(op="rich")["summary"]
    replica.receive(seal(keys, 0, base64.b64decode(yjs.call(op="update")["update"])))
    assert sorted(replica.doc.get("m", type=Map).keys()) == summary["keys"] == ["big", "bin", "obj", "sub"]
    array = replica.doc.get("a", type=Array)
    assert len(array) == summary["length"] and str(array[len(array) - 1]) == summary["nested"] == "nested 😀"
    before = parse_state_vector(replica.doc.get_state())
    yjs.call(op="hook")  # well-formed Yjs that pycrdt 0.14.13 fails to decode: the scratch copy catches it
    hook = base64.b64decode(yjs.call(op="update", since=base64.b64encode(replica.doc.get_state()).decode())["update"])
    with pytest.raises(UpdateRefused, match="pycrdt refused"):
        replica.receive(seal(keys, 1, hook))
    assert parse_state_vector(replica.doc.get_state()) == before and 1 not in replica.gate.sequences(keys.doc_id)


# -- a Yjs client as one of three peers ------------------------------------------------------------------------
# A real Yjs 13.6.33 client (y-protocols 1.0.7, tests/interop/js_yjs/yjs_sync_peer.mjs) as one of three peers:
# two peerloom nodes and the Yjs client each make 10,000 random concurrent edits (text with multi-byte characters in
# UTF-16 positions, a map, an array), partly partitioned, and all three converge on the same document.
#
# The Yjs client talks y-protocols to node C (tests/support/yjs_bridge.py: the node checks and signs its updates);
# nodes A, B and C sync over /peerloom/doc/1.0.0 with signed envelopes. Yjs and Yrs may order the same state
# differently in their encodings, so "byte-identical" is checked on the state each side encodes, read into a fresh
# pycrdt document and encoded again, plus the state vectors and the text, map and array as both see them.
SYNC_EDITS = 10_000
SYNC_BATCH = 100


def shape_of(update: bytes) -> tuple[dict[int, tuple[int, int]], list[tuple[int, int, int]]]:
    """The clock ranges an update holds per client and the deletions it carries, merged and sorted."""
    shape = parse_update(update)
    merged: list[tuple[int, int, int]] = []
    for client, clock, length in sorted(shape.deletes):
        if merged and merged[-1][0] == client and merged[-1][1] + merged[-1][2] >= clock:
            last = merged.pop()
            length = max(last[1] + last[2], clock + length) - last[1]
            clock = last[1]
        merged.append((client, clock, length))
    return shape.ranges, merged


def normalized(update: bytes) -> tuple[bytes, dict[str, object]]:
    doc = Doc()
    doc.apply_update(update)
    content = {"text": str(doc.get("text", type=Text)), "meta": doc.get("meta", type=Map).to_py(),
               "items": doc.get("items", type=Array).to_py()}
    return doc.get_update(), content


async def test_two_nodes_and_a_yjs_client_converge_after_10000_concurrent_edits_each(
    tmp_path: Path, yjs_installed: None
) -> None:
    a, b, c = make_node(tmp_path, "a"), make_node(tmp_path, "b"), make_node(tmp_path, "c")
    async with a, b, c:
        doc_a = await a.docs.create("with yjs")
        doc_b, doc_c = await b.docs.open(doc_a.link), await c.docs.open(doc_a.link)
        bridge = YjsBridge(doc_c)
        port = await bridge.start()
        js = await asyncio.create_subprocess_exec(
            "node", str(JS_DIR / "yjs_sync_peer.mjs"), str(port), "7", str(SYNC_EDITS), str(SYNC_BATCH), cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=64 << 20)
        assert js.stdin is not None and js.stdout is not None
        try:
            await link(a, b)  # c and its Yjs client are partitioned from a and b
            await asyncio.gather(edit(doc_a, 1, SYNC_EDITS // 2), edit(doc_b, 2, SYNC_EDITS // 2))
            assert json.loads(await asyncio.wait_for(js.stdout.readline(), 120)) == {"done": True}
            await link(c, b)
            await asyncio.gather(edit(doc_a, 3, SYNC_EDITS // 2), edit(doc_b, 4, SYNC_EDITS // 2))
            await link(a, c)
            await until(lambda: len({h.doc.get_update() for h in (doc_a, doc_b, doc_c)}) == 1, timeout=90,
                        what="the nodes' convergence")
            for _ in range(300):
                js.stdin.write(b"state\n")
                answer = json.loads(await asyncio.wait_for(js.stdout.readline(), 30))
                if parse_state_vector(base64.b64decode(answer["sv"])) == parse_state_vector(doc_a.state_vector()):
                    break
                await asyncio.sleep(0.2)
            yjs_state, yjs_content = normalized(base64.b64decode(answer["update"]))
            ours, our_content = normalized(doc_a.doc.get_update())
            assert yjs_content == our_content and answer["text"] == our_content["text"]
            assert ours == doc_a.doc.get_update()
            # the same items from the same clients, and the same deletions (Yjs garbage-collects deleted content,
            # which changes how a deleted item is encoded, not what the document is)
            assert shape_of(yjs_state) == shape_of(ours)
            assert bridge.applied > 0 and len(our_content["text"]) > 100  # type: ignore[arg-type]
        finally:
            js.stdin.close()
            await asyncio.wait_for(js.wait(), 10)
            await bridge.close()
