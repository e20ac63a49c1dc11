"""Collaborative documents: edit-to-remote-apply latency between two peerloom nodes on loopback against a Yjs pair
over `@y/websocket-server` 0.1.1 measured in the same run, and the time to merge two replicas of 50,000 concurrent
edits each.

- latency: two nodes in this process (one event loop, like the Yjs pair in one Node process), connected on
  127.0.0.1; node A inserts a character into the document's text (signed, stored durably, sent) and the time until
  node B has checked, stored and applied it (its `subscribe` listener fires) is one sample; --samples of them, one
  at a time. The reference: two Yjs 13.6.33 clients (y-websocket 3.0.0 providers) and an @y/websocket-server 0.1.1
  server in one Node process (tests/interop/js_yjs/yws_latency.mjs; `npm ci` there first), the same measurement.
  Note the difference in work: peerloom encrypts, signs, verifies, checks and commits each edit to SQLite.
- merge: two replicas each make --merge-edits edits (text inserts and deletions at random places, map sets, array
  inserts; --batch per transaction, so per signed update) without seeing each other; then replica B receives all of
  A's signed updates (signature, decryption, the strict Yjs check, scratch apply, store, apply): the seconds it
  takes, against pycrdt merging A's whole state as one raw update into a copy of B (no checks).
Prints one JSON line.

    python bench/docs_bench.py [--samples 500] [--merge-edits 50000] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycrdt import Array, Doc, Map, Text

from peerloom.apps.docs.keys import DocKeys, WriterGrant, raw_public
from peerloom.apps.docs.store import DocStore, StoredDoc
from peerloom.node import Node, Settings
from peerloom.state import State

JS_DIR = Path(__file__).resolve().parent.parent / "tests" / "interop" / "js_yjs"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered), 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3)}


async def peerloom_latency(samples: int, root: Path) -> list[float]:
    settings = Settings(dht=False, lsd=False, public_bootstrap=False, pubsub=False)
    async with Node(root / "a", host="127.0.0.1", settings=settings) as a, \
            Node(root / "b", host="127.0.0.1", settings=settings) as b:
        doc_a = await a.docs.create("bench")
        doc_b = await b.docs.open(doc_a.link)
        await a.secure_host.connect(b.secure_addrs[0])
        await a.docs.wait_synced(doc_a, b.identity.peer_id)
        arrived: asyncio.Future[float] | None = None

        def seen(update: bytes, origin: str) -> None:
            if origin == "remote" and arrived is not None and not arrived.done():
                arrived.set_result(time.perf_counter())

        doc_b.subscribe(seen)
        out = []
        text = doc_a.text()
        for _ in range(samples + 20):  # the first 20 warm up
            arrived = asyncio.get_running_loop().create_future()
            start = time.perf_counter()
            text.insert(len(text), "é")
            end = await asyncio.wait_for(arrived, 10)
            out.append((end - start) * 1000)
        return out[20:]


def yjs_latency(samples: int) -> list[float]:
    done = subprocess.run(["node", str(JS_DIR / "yws_latency.mjs"), str(samples)], cwd=JS_DIR, capture_output=True,
                          text=True, timeout=300, check=True)
    return json.loads(done.stdout)["samples"]


def random_edits(rng: random.Random, count: int):
    def change(doc: Doc) -> None:
        text, meta, items = doc.get("text", type=Text), doc.get("meta", type=Map), doc.get("items", type=Array)
        current = str(text)
        for _ in range(count):
            op = rng.random()
            if op < 0.4 or not current:
                at = rng.randint(0, len(current))
                content = rng.choice(["a", "é", "日本", "😀", " "])
                text.insert(len(current[:at].encode()), content)
                current = current[:at] + content + current[at:]
            elif op < 0.55:
                start = rng.randrange(len(current))
                begin = len(current[:start].encode())
                del text[begin:begin + len(current[start].encode())]
                current = current[:start] + current[start + 1:]
            elif op < 0.85:
                meta[f"k{rng.randrange(100)}"] = rng.randrange(1000)
            else:
                items.insert(rng.randint(0, len(items)), rng.choice(["x", 1, 2.5]))
    return change


def merge(edits: int, batch: int, root: Path) -> dict[str, float]:
    keys, doc_key = DocKeys.new()
    devices = [Ed25519PrivateKey.generate() for _ in range(2)]  # each replica writes with its own granted key
    grants = tuple(WriterGrant.issue(doc_key, raw_public(d.public_key())).encode() for d in devices)
    states = [State(root / f"merge-{n}.sqlite") for n in ("a", "b")]
    a, b = (StoredDoc(DocStore(s), DocKeys(keys.doc_id, keys.read_key, d), grants, compact_after=None)
            for s, d in zip(states, devices, strict=True))
    envelopes = []
    for seed, replica in ((1, a), (2, b)):
        rng = random.Random(seed)
        for _ in range(edits // batch):
            data = replica.edit(random_edits(rng, batch))
            if replica is a and data is not None:
                envelopes.append(data)
    raw = Doc()
    raw.apply_update(b.doc.get_update())
    start = time.perf_counter()
    raw.apply_update(a.doc.get_update())
    raw_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for data in envelopes:
        b.receive(data)
    seconds = time.perf_counter() - start
    assert b.doc.get_update() == raw.get_update(), "the checked merge and the raw one differ"
    for s in states:
        s.close()
    return {"merge_seconds": round(seconds, 3), "merge_raw_pycrdt_seconds": round(raw_seconds, 3),
            "merge_updates": len(envelopes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--merge-edits", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="docs-bench-") as folder:
        ours = percentiles(asyncio.run(peerloom_latency(args.samples, Path(folder))))
        yjs = percentiles(yjs_latency(args.samples))
        merged = merge(args.merge_edits, args.batch, Path(folder))
    report = {
        "bench": "docs", "samples": args.samples,
        "latency_p50_ms": ours["p50_ms"], "latency_p99_ms": ours["p99_ms"],
        "yjs_websocket_p50_ms": yjs["p50_ms"], "yjs_websocket_p99_ms": yjs["p99_ms"],
        "p50_ratio": round(ours["p50_ms"] / yjs["p50_ms"], 2), "p99_ratio": round(ours["p99_ms"] / yjs["p99_ms"], 2),
        "p50_goal_ms": 10.0, "merge_edits_each": args.merge_edits, **merged,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())
