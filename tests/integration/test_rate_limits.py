"""Upload limits hold in the engine: the seeder's node-wide bucket, then the torrent's own."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from support.swarm import make_single, node

MB = 1_000_000


async def rate_seen(torrent: object, seconds: float) -> float:
    first, start = torrent.session_downloaded, time.monotonic()  # type: ignore[attr-defined]
    await asyncio.sleep(seconds)
    assert torrent.status().progress < 1.0, "done inside the window: use more data"  # type: ignore[attr-defined]
    return (torrent.session_downloaded - first) / (time.monotonic() - start)  # type: ignore[attr-defined]


async def test_upload_limits_of_the_node_and_of_a_torrent(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", 48 * 1024 * 1024, "up.bin")
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        shared = await seeder.share(data)
        seeder.upload_bucket.rate = 3 * MB
        assert shared.meta is not None
        got = await leecher.add(shared.meta, tmp_path / "out", peers=[("127.0.0.1", seeder.port)])
        while got.session_downloaded < MB:
            await asyncio.sleep(0.05)
        node_rate = await rate_seen(got, 4.0)
        seeder.upload_bucket.rate = 0
        shared.upload_bucket.rate = 2 * MB
        await asyncio.sleep(1.0)
        torrent_rate = await rate_seen(got, 4.0)
    assert abs(node_rate - 3 * MB) <= 0.1 * 3 * MB, node_rate
    assert abs(torrent_rate - 2 * MB) <= 0.1 * 2 * MB, torrent_rate
