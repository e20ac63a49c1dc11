"""The web seeds' driver as the torrent sees it: when its workers ask the picker for pieces, and when they stop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peerloom.settings import Settings
from peerloom.torrent.create import create
from peerloom.torrent.state import State
from peerloom.torrent.storage import PieceMap
from peerloom.torrent.webseed_driver import WebSeeds


class Picker:
    """Records the claims; hands out nothing (so no request is ever made)."""

    def __init__(self) -> None:
        self.claims = 0

    def claim_pieces(self, bits: Any, count: int) -> list[int]:
        self.claims += 1
        return []


@dataclass
class Exchange:
    missing_layers: dict = field(default_factory=dict)


@dataclass
class Host:
    picker: Picker
    pieces: PieceMap
    exchange: Exchange
    name: str = "t"
    state: State = State.DOWNLOADING
    paused: bool = False


class Sink:
    verifying_bytes = 0

    def add_piece(self, index: int, data: memoryview) -> asyncio.Future[bool]:
        raise AssertionError("nothing is fetched")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_workers_claim_only_while_downloading_with_the_piece_layers_in(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(bytes(100_000))
    meta = create(tmp_path / "f", version="v2", piece_length=16384, web_seeds=["http://127.0.0.1:9/"])
    host = Host(Picker(), PieceMap(meta), Exchange({b"root": object()}))
    sink = Sink()
    seeds = WebSeeds(Settings(web_seed_requests=2), host, sink, user_agent="test")  # type: ignore[arg-type]
    seeds.metadata_known(meta, host.pieces, ["http://127.0.0.1:9/other/", "ftp://no/"])
    assert [s.url for s in seeds.seeds] == ["http://127.0.0.1:9/", "http://127.0.0.1:9/other/"]
    seeds.update()
    await settle()
    assert host.picker.claims == 0  # a v2 piece layer is missing: nothing could be verified yet
    host.exchange.missing_layers.clear()
    seeds.update()  # the torrent's next tick
    await settle()
    assert host.picker.claims == 4  # two workers for each of two servers
    sink.verifying_bytes = 10**12  # the piece flow is full: wait
    seeds.update()
    await settle()
    assert host.picker.claims == 4
    sink.verifying_bytes = 0
    host.paused = True
    seeds.update()  # paused: the workers stop
    await settle()
    host.paused = False
    seeds.update()  # and start again
    await settle()
    assert host.picker.claims == 8
    host.state = State.SEEDING
    seeds.update()  # complete: the workers stop, and are not woken again
    await settle()
    seeds.update()
    await settle()
    assert host.picker.claims == 8
    await seeds.stop()
