"""A download into a folder that already holds files: pieces that verify are reused, a finished file has exactly the
torrent's length and bytes, and a user's file that is not the torrent's is never overwritten without --overwrite."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path

import pytest
from support.swarm import assert_same_files, make_multi, make_single, node, wait_done

from peerloom.errors import PeerloomError
from peerloom.torrent.create import create
from peerloom.torrent.metainfo import Metainfo

NOTES = b"my precious notes, not from the torrent\n"
REFUSED = "already exists and is not this torrent's data; move it away or use --overwrite"


def make_album(root: Path) -> Path:
    top = root / "album"
    top.mkdir(parents=True)
    (top / "readme.txt").write_bytes(b"hello\n")
    (top / "big.bin").write_bytes(random.Random(1).randbytes(300_000))
    return top


async def cli_get(cwd: Path, torrent: Path, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "peerloom", "get", str(torrent), "-o", "o", "--peer", f"127.0.0.1:{port}",
            "--listen", "127.0.0.1", "--home", str(cwd / "home"), "--no-dht", "--no-lsd", "--no-daemon", *extra]
    return await asyncio.to_thread(subprocess.run, args, cwd=cwd, capture_output=True, text=True, timeout=120)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


async def test_get_over_a_users_file_refuses_in_one_line_then_overwrite_gives_the_torrents_bytes(
    tmp_path: Path,
) -> None:
    """The issue's reproduction: `get` used to end "done … verified" with the user's 40-byte readme.txt half
    overwritten and not cut to the torrent's 6 bytes."""
    album = make_album(tmp_path / "src")
    meta = create(album)  # the default: hybrid
    torrent = tmp_path / "album.torrent"
    torrent.write_bytes(meta.to_bytes())
    notes = tmp_path / "o" / "album" / "readme.txt"
    notes.parent.mkdir(parents=True)
    notes.write_bytes(NOTES)
    async with node(tmp_path, "seed") as seeder:
        await seeder.add(meta, album.parent, trusted_complete=True)
        refused = await cli_get(tmp_path, torrent, seeder.port)
        assert refused.returncode == 1, refused.stderr
        assert error_lines(refused.stderr) == [f"error: o/album/readme.txt {REFUSED}"]
        assert notes.read_bytes() == NOTES
        assert not (tmp_path / "o" / "album" / "big.bin").exists(), "a refused download creates nothing"

        done = await cli_get(tmp_path, torrent, seeder.port, "--overwrite")
        assert done.returncode == 0, done.stderr
        assert error_lines(done.stderr) == []
    assert_same_files(meta, tmp_path / "src", tmp_path / "o")


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
@pytest.mark.parametrize("layout", ["single", "multi"])
async def test_a_longer_file_holding_the_torrents_data_is_reused_and_cut(
    tmp_path: Path, version: str, layout: str,
) -> None:
    """single: the whole file is there plus trailing junk (complete at once, nothing fetched); multi: one file with
    junk after it, one exact, the rest missing. Either way every file ends with exactly the torrent's bytes."""
    data = make_single(tmp_path / "src") if layout == "single" else make_multi(tmp_path / "src")
    meta = create(data, version=version, piece_length=32768)
    dst = tmp_path / "dst"
    junk = random.Random(2).randbytes(70_000)
    longer = ("data.bin",) if layout == "single" else ("album", "disc 2", "deep", "b.bin")
    copies = [longer] + ([] if layout == "single" else [("album", "cover.jpg")])
    for rel in copies:
        dst.joinpath(*rel).parent.mkdir(parents=True, exist_ok=True)
        dst.joinpath(*rel).write_bytes((tmp_path / "src").joinpath(*rel).read_bytes())
    with dst.joinpath(*longer).open("ab") as f:
        f.write(junk)
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        await seeder.add(meta, tmp_path / "src", trusted_complete=True)
        t = await leecher.add(meta, dst, peers=[("127.0.0.1", seeder.port)])
        await wait_done(t)
        st = t.status()
        if layout == "single":
            assert st.downloaded == 0 and st.checked_pieces == meta.num_pieces
        else:
            assert 0 < st.downloaded < meta.total_length - 1_000_000, "the existing files' pieces were reused"
    assert_same_files(meta, tmp_path / "src", dst)


async def test_partial_data_followed_by_garbage_is_reused_and_the_rest_fetched(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=2 * 1024 * 1024)
    meta = create(data, version="hybrid", piece_length=65536)
    target = tmp_path / "dst" / data.name
    target.parent.mkdir()
    half = data.read_bytes()[: 1024 * 1024]
    target.write_bytes(half + random.Random(3).randbytes(1024 * 1024 + 5000))  # a longer file, only half of it right
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        await seeder.add(meta, tmp_path / "src", trusted_complete=True)
        t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        await wait_done(t)
        assert t.status().downloaded <= meta.total_length // 2 + 65536
    assert target.read_bytes() == data.read_bytes()


async def test_zero_filled_sparse_and_empty_files_are_reused(tmp_path: Path) -> None:
    """What a previous run's preallocation leaves (sparse or zero-filled, even longer than needed) holds no user
    data: the download writes over it without asking."""
    top = make_multi(tmp_path / "src")
    meta = create(top, version="v1", piece_length=32768)
    dst = tmp_path / "dst" / "album"
    (dst / "disc 2" / "deep").mkdir(parents=True)
    (dst / "disc 1").mkdir()
    (dst / "cover.jpg").write_bytes(bytes(300_000))
    with (dst / "disc 2" / "deep" / "b.bin").open("wb") as f:
        f.truncate(5_000_000)
    (dst / "disc 1" / "a.bin").write_bytes(b"")
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        await seeder.add(meta, tmp_path / "src", trusted_complete=True)
        t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        await wait_done(t)
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


async def add_and_wait_for_refusal(leecher: object, meta: Metainfo, dst: Path, **options: object) -> str:
    t = await leecher.add(meta, dst, **options)  # type: ignore[attr-defined]
    with pytest.raises(PeerloomError) as refused:
        await wait_done(t, 30)
    await leecher.remove(t)  # type: ignore[attr-defined]
    return str(refused.value)


async def test_a_users_file_where_the_torrent_has_an_empty_file_is_refused_unless_overwrite(tmp_path: Path) -> None:
    top = make_multi(tmp_path / "src")
    meta = create(top, version="hybrid", piece_length=32768)
    mine = tmp_path / "dst" / "album" / "disc 1" / "empty.txt"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(NOTES)
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        await seeder.add(meta, tmp_path / "src", trusted_complete=True)
        message = await add_and_wait_for_refusal(leecher, meta, tmp_path / "dst")
        assert message == f"{mine} {REFUSED}"
        assert mine.read_bytes() == NOTES
        t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)], overwrite=True)
        await wait_done(t)
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


async def test_v1_pieces_across_files(tmp_path: Path) -> None:
    """v1 pieces straddle files. A small file of the torrent's exact length whose pieces all need a missing neighbour
    cannot be checked at all: it is reused (the download then proves it). A file of another length in that place is
    not the torrent's: refused."""
    top = make_multi(tmp_path / "src")
    meta = create(top, version="v1", piece_length=65536)
    small = ("album", "disc 2", "ünïcode.txt")  # 3000 bytes at the end of a piece that starts in b.bin
    dst = tmp_path / "dst"
    dst.joinpath(*small).parent.mkdir(parents=True)
    dst.joinpath(*small).write_bytes(NOTES)
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        await seeder.add(meta, tmp_path / "src", trusted_complete=True)
        message = await add_and_wait_for_refusal(leecher, meta, dst)
        assert message == f"{dst.joinpath(*small)} {REFUSED}"
        assert dst.joinpath(*small).read_bytes() == NOTES

        dst.joinpath(*small).write_bytes((tmp_path / "src").joinpath(*small).read_bytes())
        t = await leecher.add(meta, dst, peers=[("127.0.0.1", seeder.port)])
        await wait_done(t)
    assert_same_files(meta, tmp_path / "src", dst)


async def test_files_not_selected_are_never_touched(tmp_path: Path) -> None:
    top = make_multi(tmp_path / "src")
    meta = create(top, version="hybrid", piece_length=32768)
    names = ["/".join(f.path) for f in meta.data_files]
    chosen = [names.index("album/disc 2/deep/b.bin")]
    dst = tmp_path / "dst" / "album"
    (dst / "disc 1").mkdir(parents=True)
    (dst / "cover.jpg").write_bytes(NOTES * 10_000)  # not selected: longer than the torrent's, and not its data
    (dst / "disc 1" / "a.bin").write_bytes((top / "disc 1" / "a.bin").read_bytes() + NOTES)  # the torrent's + more
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        await seeder.add(meta, tmp_path / "src", trusted_complete=True)
        t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)], files=chosen)
        await wait_done(t)
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst", only=chosen)
    assert (dst / "cover.jpg").read_bytes() == NOTES * 10_000
    assert (dst / "disc 1" / "a.bin").read_bytes() == (top / "disc 1" / "a.bin").read_bytes() + NOTES
    assert not (dst / "disc 1" / "empty.txt").exists()


async def test_seeding_a_users_folder_never_changes_it(tmp_path: Path) -> None:
    """A shared folder (as the daemon brings it back after a restart: checked, not trusted) is the user's: a file
    that grew since is served as far as it still matches and never cut; one that changed stops the torrent with a
    clear error instead of being fetched over."""
    data = make_single(tmp_path / "src", size=1024 * 1024)
    meta = create(data, version="hybrid", piece_length=65536)
    with data.open("ab") as f:
        f.write(NOTES)
    grown = data.read_bytes()
    async with node(tmp_path, "seed") as n:
        t = await n.add(meta, tmp_path / "src", seed_only=True)
        await wait_done(t)
        assert t.status().state == "seeding"
        await n.remove(t)
        assert data.read_bytes() == grown

        changed = bytearray(grown)
        changed[300_000] ^= 1
        data.write_bytes(bytes(changed))
        message = await add_and_wait_for_refusal(n, meta, tmp_path / "src", seed_only=True)
        assert message.startswith(f"{data} changed since it was shared")
        assert data.read_bytes() == bytes(changed)
