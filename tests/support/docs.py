"""Helpers for document tests: quick nodes on loopback, linking them, random concurrent edits."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from pycrdt import Array, Doc, Map, Text
from support.jsgossip import wait_until as until  # noqa: F401 - the documents tests' name for it
from support.swarm import fast_settings

from peerloom.apps.docs.handle import DocHandle
from peerloom.node import Node


def make_node(tmp: Path, name: str) -> Node:
    return Node(tmp / name, host="127.0.0.1", settings=fast_settings(pubsub=False))


async def link(a: Node, b: Node) -> None:
    """Connect a to b (as `--peer` does); their document streams open once identify has run."""
    await a.secure_host.connect(b.secure_addrs[0])


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
            if op < 0.25 or not current:
                at = rng.randint(0, len(current))
                content = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 4)))
                text.insert(len(current[:at].encode()), content)
                current = current[:at] + content + current[at:]
            elif op < 0.4:  # about as much deleted as inserted: the text stays a few thousand characters long
                start = rng.randrange(len(current))
                end = min(len(current), start + rng.randint(1, 5))
                begin = len(current[:start].encode())
                del text[begin:begin + len(current[start:end].encode())]
                current = current[:start] + current[end:]
            elif op < 0.75:
                meta[f"k{rng.randrange(50)}"] = rng.choice([rng.random(), "välue 😀", rng.randrange(1000), None])
            elif op < 0.9 or len(items) == 0:
                items.insert(rng.randint(0, len(items)), rng.choice(["ü", 42, 1.5, "日本"]))
            else:
                del items[rng.randrange(len(items))]
    return change


async def edit(handle: DocHandle, seed: int, edits: int) -> None:
    rng = random.Random(seed)
    for _ in range(edits // BATCH):
        handle.edit(random_edits(rng, BATCH))
        await asyncio.sleep(0)  # let the sync run between batches: edits cross while others are made
