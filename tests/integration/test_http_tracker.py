"""peerloom nodes that meet only through an HTTP tracker (BEP 3/23), with a hybrid announced twice."""

from __future__ import annotations

from pathlib import Path

from support.swarm import assert_same_files, make_single, node, wait_done
from support.trackers import HttpTracker

from peerloom.torrent.create import create


async def test_hybrid_is_announced_under_both_info_hashes(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=1024 * 1024)
    async with HttpTracker(interval=1) as tracker:
        meta = create(data, version="hybrid", piece_length=65536, trackers=[tracker.announce_url])
        assert meta.info_hash_v1 is not None and meta.info_hash_v2 is not None
        async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
            await seeder.add(meta, tmp_path / "src", trusted_complete=True)
            t = await leecher.add(meta, tmp_path / "dst")  # no peers given: the tracker is the only source
            await wait_done(t)
            for info_hash in (meta.info_hash_v1, meta.info_hash_v2[:20]):
                ports = {port for _, port in tracker.swarms.get(info_hash, {})}
                assert {seeder.port, leecher.port} <= ports, f"{info_hash.hex()} announced by {ports}"
        assert tracker.events.count("completed") == 2  # the leecher, once per info-hash
        assert tracker.events.count("stopped") == 4  # both nodes, both hashes, on shutdown
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")
