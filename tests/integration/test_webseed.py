"""Web seeds (BEP 19) against a local HTTP server: downloads from servers alone and beside a peer, and servers that
send bad data, ignore Range, answer with the wrong range or redirect."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support.swarm import assert_same_files, make_multi, make_single, node, wait_done
from support.web_seed_server import WebSeedServer

from peerloom.torrent.create import create
from peerloom.torrent.state import WebSeedStatus
from peerloom.torrent.swarm import Torrent


def seeds_of(t: Torrent) -> dict[str, WebSeedStatus]:
    return {s.url.split("/")[3]: s for s in t.status().web_seeds}


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(("version", "layout"), [("v1", "single"), ("hybrid", "multi"), ("v2", "multi")])
async def test_a_web_seed_only_torrent_downloads_byte_identical(tmp_path: Path, version: str, layout: str) -> None:
    src = tmp_path / "src"
    data = make_single(src, name="my data (1).bin") if layout == "single" else make_multi(src)
    async with WebSeedServer(src) as server, node(tmp_path, "leech") as leecher:
        meta = create(data, version=version, piece_length=32768, web_seeds=[server.url("files")])  # type: ignore[arg-type]
        t = await leecher.add(meta, tmp_path / "dst")
        await wait_done(t, 20)
        seed = seeds_of(t)["files"]
        assert seed.state == "active" and seed.hash_failures == 0 and seed.downloaded >= meta.total_length
        assert t.status().downloaded >= meta.total_length and t.status().peers == 0
    assert_same_files(meta, src, tmp_path / "dst")
    asked = set(server.paths("files"))
    assert asked == {"/".join(f.path) for f in meta.data_files if f.length}  # each file by its name, quoted and back
    assert all(asked.range is not None and asked.range.startswith("bytes=") for asked in server.requests)


async def test_a_server_sending_bad_data_is_dropped_and_another_completes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = make_single(src)
    async with WebSeedServer(src) as server, node(tmp_path, "leech") as leecher:
        urls = [server.url("corrupt"), server.url("files")]
        meta = create(data, version="hybrid", piece_length=32768, web_seeds=urls)
        t = await leecher.add(meta, tmp_path / "dst")
        await wait_done(t, 20)
        seeds = seeds_of(t)
        assert seeds["corrupt"].state == "dropped" and seeds["corrupt"].hash_failures >= 1
        assert seeds["corrupt"].downloaded == 0 and "hash check" in (seeds["corrupt"].error or "")
        assert seeds["files"].state == "active" and t.status().hash_failures >= 1
    assert_same_files(meta, src, tmp_path / "dst")


async def test_with_only_a_bad_server_the_download_stops_and_says_why(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = make_single(src)
    async with WebSeedServer(src) as server, node(tmp_path, "leech") as leecher:
        meta = create(data, version="v1", piece_length=32768, web_seeds=[server.url("corrupt")])
        t = await leecher.add(meta, tmp_path / "dst")
        await until(lambda: t.status().web_seeds[0].state == "dropped")
        asked = len(server.requests)
        await asyncio.sleep(0.5)
        st = t.status()
        assert len(server.requests) == asked  # never asked again
        assert st.progress == 0.0 and st.hash_failures >= 1 and st.state == "downloading"
        assert "hash check" in (st.web_seeds[0].error or "")


async def test_a_server_ignoring_range_is_dropped_and_another_completes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = make_single(src)  # 3 MiB: more than one request's worth
    async with WebSeedServer(src) as server, node(tmp_path, "leech") as leecher:
        meta = create(data, version="v1", piece_length=32768, web_seeds=[server.url("norange"), server.url("files")])
        t = await leecher.add(meta, tmp_path / "dst")
        await wait_done(t, 20)
        seeds = seeds_of(t)
        assert seeds["norange"].state == "dropped" and "ignores Range" in (seeds["norange"].error or "")
        assert seeds["norange"].downloaded <= 1024 * 1024  # at most a request that began at byte 0 (a 200 fits it)
    assert_same_files(meta, src, tmp_path / "dst")


async def test_a_server_ignoring_range_serves_a_file_asked_for_whole(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = make_single(src, size=300_000)  # within one request: the whole file is asked for, and a 200 is the answer
    async with WebSeedServer(src) as server, node(tmp_path, "leech") as leecher:
        meta = create(data, version="v1", piece_length=32768, web_seeds=[server.url("norange")])
        t = await leecher.add(meta, tmp_path / "dst")
        await wait_done(t, 20)
        assert seeds_of(t)["norange"].state == "active"
    assert_same_files(meta, src, tmp_path / "dst")


async def test_a_server_answering_another_range_backs_off_while_another_completes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = make_single(src)
    async with WebSeedServer(src) as server, node(tmp_path, "leech") as leecher:
        meta = create(data, version="v1", piece_length=32768, web_seeds=[server.url("badrange"), server.url("files")])
        t = await leecher.add(meta, tmp_path / "dst")
        await wait_done(t, 20)
        bad = seeds_of(t)["badrange"]
        assert bad.failures >= 1 and bad.downloaded == 0 and "asked for bytes" in (bad.error or "")
        assert t.status().hash_failures == 0  # refused on its head: nothing reached the hash check
    assert_same_files(meta, src, tmp_path / "dst")


async def test_a_silent_server_times_out_and_its_pieces_go_to_another(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = make_single(src)
    async with WebSeedServer(src) as server, node(tmp_path, "leech", web_seed_timeout=0.5) as leecher:
        meta = create(data, version="v1", piece_length=32768, web_seeds=[server.url("stall"), server.url("files")])
        t = await leecher.add(meta, tmp_path / "dst")
        await wait_done(t, 20)
        stalled = seeds_of(t)["stall"]
        assert stalled.failures >= 1 and stalled.downloaded == 0 and "Timeout" in (stalled.error or "")
    assert_same_files(meta, src, tmp_path / "dst")


async def test_a_file_missing_on_the_server_is_not_asked_again_and_the_rest_arrives(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = make_multi(src)
    served = tmp_path / "served"
    shutil.copytree(src, served)
    (served / "album" / "disc 2" / "deep" / "b.bin").unlink()
    async with WebSeedServer(served) as server, node(tmp_path, "leech") as leecher:
        meta = create(data, version="v2", piece_length=32768, web_seeds=[server.url("files")])  # no piece spans files
        t = await leecher.add(meta, tmp_path / "dst")
        missing = next(i for i, f in enumerate(meta.files) if f.path[-1] == "b.bin")
        pieces = t.pieces
        assert pieces is not None
        others = [i for i in range(pieces.num_pieces) if i not in pieces.pieces_of_file(missing)]
        await until(lambda: t.picker is not None and all(t.picker.have[i] for i in others))
        await asyncio.sleep(0.3)
        seed = seeds_of(t)["files"]
        assert seed.state == "active" and "404" in (seed.error or "")
        assert 1 <= server.paths("files").count("album/disc 2/deep/b.bin") <= 2  # once per worker at most
        assert t.status().progress < 1.0
    got = tmp_path / "dst" / "album" / "cover.jpg"
    assert got.read_bytes() == (src / "album" / "cover.jpg").read_bytes()


async def test_redirects_are_followed_with_the_range(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = make_multi(src)
    async with WebSeedServer(src) as server, node(tmp_path, "leech") as leecher:
        meta = create(data, version="v1", piece_length=32768, web_seeds=[server.url("redirect")])
        t = await leecher.add(meta, tmp_path / "dst")
        await wait_done(t, 20)
    assert_same_files(meta, src, tmp_path / "dst")
    assert server.paths("redirect") and len(server.paths("files")) == len(server.paths("redirect"))
    assert all(asked.range for asked in server.requests if asked.mode == "files")


async def test_a_web_seed_and_a_peer_share_a_download(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = make_single(src, size=12 * 1024 * 1024)
    async with WebSeedServer(src) as server, node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        meta = create(data, version="hybrid", piece_length=65536, web_seeds=[server.url("files")])
        await seeder.add(meta, src, trusted_complete=True)
        t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        await wait_done(t, 30)
        from_seed = seeds_of(t)["files"].downloaded
        st = t.status()
        assert 0 < from_seed < meta.total_length and st.hash_failures == 0
        assert st.downloaded - from_seed > 0  # the rest came from the peer
    assert_same_files(meta, src, tmp_path / "dst")

