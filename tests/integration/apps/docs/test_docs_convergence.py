"""Three nodes apply 10,000 random concurrent edits each (text with multi-byte characters, maps, arrays), partly
while partitioned, and converge to byte-identical documents (the state encoded as one Yjs update)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pycrdt import Doc
from support.docs import edit, link, make_node, until

pytestmark = pytest.mark.timeout(120)
EDITS = 10_000


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
        assert len({str(h.text()) for h in handles}) == 1 and len(str(doc_a.text())) > 100
        assert doc_b.map("meta").to_py() == doc_a.map("meta").to_py() and len(doc_c.array("items")) > 0
        # a fresh replica of the merged state encodes to the same bytes
        fresh = Doc()
        fresh.apply_update(state)
        assert fresh.get_update() == state
        for n in (a, b, c):
            assert n.docs.counters["refused"] == 0
