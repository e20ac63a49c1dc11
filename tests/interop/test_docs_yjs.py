"""pycrdt (behind peerloom's text-position conversion and update checks) against a real Yjs 13.6.33 client
(tests/interop/js_yjs/yjs_peer.mjs): edits at UTF-16 positions after accents, CJK and emoji land where Yjs puts
them, each side integrates the other's updates fully (nothing left pending), and both converge on the same text."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycrdt import Array, Map, Text

from peerloom.apps.docs.keys import DocKeys, WriterGrant
from peerloom.apps.docs.textpos import delete_utf16, insert_utf16, utf16_length
from peerloom.apps.docs.updates import Replica, UpdateRefused, decode_envelope, seal
from peerloom.apps.docs.yupdate import parse_state_vector

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
    if (JS_DIR / "node_modules" / "yjs" / "package.json").exists():
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
