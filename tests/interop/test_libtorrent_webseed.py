"""Web seeds (BEP 19) with libtorrent: a peerloom download fed by a web seed and a libtorrent peer at once, and
libtorrent downloading from the same web seed as peerloom, asking for the same URLs.

libtorrent runs with uTP, DHT, LSD, UPnP and NAT-PMP off (see tests/support/libtorrent_peer.py).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from support.swarm import assert_same_files, make_multi, make_single, node, wait_done
from support.web_seed_server import WebSeedServer

from peerloom.torrent.create import create

pytest.importorskip("libtorrent", reason="libtorrent Python bindings are not installed")
from support.libtorrent_peer import LibtorrentPeer

pytestmark = pytest.mark.interop

ODD_NAMES = ["it's #1 & (more) 100%.bin", "ünï cöde;=@$+,.bin"]


def odd_set(root: Path) -> Path:
    """A multi-file set whose names need quoting in URLs in every way (see `webseed.file_url`)."""
    top = make_multi(root)
    rng = random.Random(5)
    for i, name in enumerate(ODD_NAMES):
        (top / "disc 2" / name).write_bytes(rng.randbytes(40_000 + i * 70_000))
    return top


def escapes_upper(path: str) -> str:
    return re.sub("%[0-9a-fA-F]{2}", lambda m: m.group().upper(), path)


async def test_a_web_seed_and_a_libtorrent_peer_feed_one_peerloom_download(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = make_single(src, size=12 * 1024 * 1024)
    async with WebSeedServer(src) as server:
        meta = create(data, version="hybrid", piece_length=65536, web_seeds=[server.url("files")])
        with LibtorrentPeer() as lt_peer:
            handle = lt_peer.add(meta.to_bytes(), src, seed_mode=True)
            await lt_peer.wait_seeding(handle)
            async with node(tmp_path, "leech") as leecher:
                t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", lt_peer.port)])
                await wait_done(t, 60)
                st = t.status()
                from_web = st.web_seeds[0].downloaded
                assert st.hash_failures == 0 and 0 < from_web < meta.total_length
                assert st.downloaded - from_web > 0  # the rest from libtorrent
    assert_same_files(meta, src, tmp_path / "dst")


@pytest.mark.parametrize("version", ["v1", "hybrid"])
async def test_libtorrent_and_peerloom_ask_a_web_seed_for_the_same_urls(tmp_path: Path, version: str) -> None:
    """Both download a multi-file torrent from the web seed alone, byte-identical; the paths they ask for, as sent
    (percent-encoded), are the same set: the same characters escaped. libtorrent writes the escapes' hex digits in
    lower case, we in upper case (RFC 3986 2.1: equivalent, upper case preferred), so the case of those is not
    compared."""
    src = tmp_path / "src"
    data = odd_set(src)
    async with WebSeedServer(src) as server:
        meta = create(data, version=version, piece_length=32768, web_seeds=[server.url("files")])  # type: ignore[arg-type]
        async with node(tmp_path, "leech") as leecher:
            t = await leecher.add(meta, tmp_path / "ours")
            await wait_done(t, 30)
        ours = {escapes_upper(a.raw_path) for a in server.requests}
        server.requests.clear()
        with LibtorrentPeer() as lt_peer:
            handle = lt_peer.add(meta.to_bytes(), tmp_path / "theirs")
            await lt_peer.wait_finished(handle, timeout=60)
        theirs = {escapes_upper(a.raw_path) for a in server.requests if a.mode == "files"}
    assert_same_files(meta, src, tmp_path / "ours")
    assert_same_files(meta, src, tmp_path / "theirs")
    assert ours == theirs
    assert any("%27" in p and "(more)" in p for p in ours)  # libtorrent's escape_path: ' quoted, ( ) kept
