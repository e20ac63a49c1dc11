"""Three nodes apply 10,000 random concurrent edits each (text with multi-byte characters, maps, arrays), partly
while partitioned, and converge to byte-identical documents (the state encoded as one Yjs update)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from pycrdt import Array, Doc, Map, Text
from support.docs import link, make_node, until

from peerloom.apps.docs.handle import DocHandle

pytestmark = pytest.mark.timeout(120)
EDITS = 10_000
BATCH = 100  # edits per signed update: one local transaction, as an editor batches keystrokes
ALPHABET = "abc xyz é ñ ü 日本語 中文 한국어 😀🎉👍🏽 \n"


def random_edits(rng: random.Random, count: int):
    """`count` random edits in one transaction. Positions are picked on character boundaries of a mirror of the text
    (reading a pycrdt Text back costs O(length) per edit) and given to pycrdt in its unit, UTF-8 bytes."""

    def change(doc: Doc) -> None:
        text, meta, items = doc.get("text", type=Text), doc.get("meta", type=Map), doc.get("items", type=Array)
        current = str(text)
        for _ in range(count):
            op = rng.random()
            if op < 0.45 or not current:
                at = rng.randint(0, len(current))
                content = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 4)))
                text.insert(len(current[:at].encode()), content)
                current = current[:at] + content + current[at:]
            elif op < 0.6:
                start = rng.randrange(len(current))
                end = min(len(current), start + rng.randint(1, 3))
                begin = len(current[:start].encode())
                del text[begin:begin + len(current[start:end].encode())]
                current = current[:start] + current[end:]
            elif op < 0.8:
                meta[f"k{rng.randrange(50)}"] = rng.choice([rng.random(), "välue 😀", rng.randrange(1000), None])
            elif op < 0.93 or len(items) == 0:
                items.insert(rng.randint(0, len(items)), rng.choice(["ü", 42, 1.5, "日本"]))
            else:
                del items[rng.randrange(len(items))]
    return change


async def edit(handle: DocHandle, seed: int, edits: int) -> None:
    rng = random.Random(seed)
    for _ in range(edits // BATCH):
        handle.edit(random_edits(rng, BATCH))
        await asyncio.sleep(0)  # let the sync run between batches: edits cross while others are made


async def test_three_nodes_converge_byte_identically_after_10000_concurrent_edits_each_partly_partitioned(
    tmp_path: Path,
) -> None:
    a, b, c = make_node(tmp_path, "a"), make_node(tmp_path, "b"), make_node(tmp_path, "c")
    async with a, b, c:
        doc_a = await a.docs.create("convergence")
        doc_b, doc_c = await b.docs.open(doc_a.link), await c.docs.open(doc_a.link)
        handles = (doc_a, doc_b, doc_c)
        await link(a, b)  # c is partitioned from both
        half = EDITS // 2
        await asyncio.gather(*(edit(h, seed, half) for seed, h in enumerate(handles)))
        await link(c, b)  # c joins through b only, while everyone keeps editing
        await asyncio.gather(*(edit(h, 10 + seed, half) for seed, h in enumerate(handles)))
        await link(a, c)
        await until(lambda: len({h.doc.get_update() for h in handles}) == 1, timeout=60, what="convergence")
        state = doc_a.doc.get_update()
        assert len({str(h.text()) for h in handles}) == 1 and len(str(doc_a.text())) > 1000
        assert doc_b.map("meta").to_py() == doc_a.map("meta").to_py() and len(doc_c.array("items")) > 0
        # a fresh replica of the merged state encodes to the same bytes
        fresh = Doc()
        fresh.apply_update(state)
        assert fresh.get_update() == state
        for n in (a, b, c):
            assert n.docs.counters["refused"] == 0
