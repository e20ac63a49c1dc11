"""peerloom nodes exchanging torrents on loopback: versions, magnets, selection, bad peers, churn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.swarm import assert_same_files, corrupt_copy, make_multi, make_single, node, wait_done

from peerloom.torrent import wire
from peerloom.torrent.create import create
from peerloom.torrent.magnet import Magnet
from peerloom.torrent.resume import pack_bits, unpack_bits


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
@pytest.mark.parametrize("layout", ["single", "multi"])
async def test_peerloom_to_peerloom(tmp_path: Path, version: str, layout: str) -> None:
    data = make_single(tmp_path / "src") if layout == "single" else make_multi(tmp_path / "src")
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        shared = await seeder.share(data, version=version, piece_length=65536)
        meta = shared.meta
        assert meta is not None
        t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        await wait_done(t)
        st = t.status()
        assert st.progress == 1.0 and st.hash_failures == 0
        assert shared.status().uploaded >= meta.total_length
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


@pytest.mark.parametrize("version", ["v1", "hybrid", "v2"])
async def test_magnet_with_peer_address_fetches_metadata_then_data(tmp_path: Path, version: str) -> None:
    data = make_multi(tmp_path / "src")
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        shared = await seeder.share(data, version=version, piece_length=32768)
        assert shared.meta is not None
        magnet = Magnet.from_metainfo(shared.meta, peers=(("127.0.0.1", seeder.port),))
        t = await leecher.add(str(magnet), tmp_path / "dst")
        await wait_done(t)
        assert t.meta is not None and t.meta.info_bytes == shared.meta.info_bytes
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")


async def test_file_selection_downloads_only_the_chosen_files(tmp_path: Path) -> None:
    data = make_multi(tmp_path / "src")
    meta = create(data, version="hybrid", piece_length=32768)
    names = ["/".join(f.path) for f in meta.data_files]
    chosen = [names.index("album/disc 2/deep/b.bin"), names.index("album/cover.jpg")]
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech") as leecher:
        await seeder.add(meta, tmp_path / "src", trusted_complete=True)
        t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)], files=chosen)
        await wait_done(t)
        assert t.status().downloaded < meta.total_length
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst", only=chosen)
    assert not (tmp_path / "dst" / "album" / "disc 1" / "a.bin").exists()


async def test_existing_complete_data_is_verified_and_seeded_without_download(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src")
    meta = create(data, version="hybrid", piece_length=65536)
    async with node(tmp_path, "again") as n:
        t = await n.add(meta, tmp_path / "src")  # no resume data: a full recheck
        await wait_done(t, 30)
        st = t.status()
        assert st.state == "seeding" and st.downloaded == 0 and st.checked_pieces == meta.num_pieces


async def test_a_piece_is_in_the_resume_record_before_the_torrent_reports_it(tmp_path: Path) -> None:
    """What status() shows as had survives a kill -9 at that moment: the record is written when the piece passes."""
    data = make_single(tmp_path / "src", size=3 * 1024 * 1024)
    meta = create(data, version="v1", piece_length=32768)
    async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech", download_rate_limit=4_000_000) as leecher:
        await seeder.add(meta, tmp_path / "src", trusted_complete=True)
        t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", seeder.port)])
        checks = 0
        while not t.finished.is_set():
            reported = t.status().have_bytes
            record = leecher.resume.load(t.id)
            if record is not None and record.have:
                recorded = sum(unpack_bits(record.have, meta.num_pieces)) * meta.piece_length
                assert recorded >= reported, "a piece was reported before it was recorded"
                checks += 1
            await asyncio.sleep(0)
        await wait_done(t)
        assert checks > 50
        record = leecher.resume.load(t.id)
        assert record is not None and t.picker is not None and record.have == pack_bits(t.picker.have)


async def test_corrupt_peer_is_banned_and_download_completes(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=2 * 1024 * 1024)
    meta = create(data, version="v1", piece_length=65536)
    corrupt_copy(data, tmp_path / "bad" / data.name)
    async with (
        node(tmp_path, "honest") as honest,
        node(tmp_path, "liar") as liar,
        node(tmp_path, "leech") as leecher,
    ):
        await honest.add(meta, tmp_path / "src", trusted_complete=True)
        await liar.add(meta, tmp_path / "bad", trusted_complete=True)  # claims every piece, serves garbage
        # the honest seeder is slow, so the liar surely serves pieces (and earns its ban) before the honest one has all
        honest.upload_bucket.rate = 512 * 1024
        t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", liar.port), ("127.0.0.1", honest.port)])
        await wait_done(t)
        st = t.status()
        assert st.hash_failures >= 1
        assert st.banned == 1
        assert leecher.is_banned(("127.0.0.1", liar.port))
        assert not leecher.is_banned(("127.0.0.1", honest.port))
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


async def test_stalling_peer_is_snubbed_and_its_requests_reissued(tmp_path: Path) -> None:
    """A peer that unchokes, takes requests and never answers must not hold the download up."""
    data = make_single(tmp_path / "src", size=1024 * 1024)
    meta = create(data, version="v1", piece_length=65536)
    requests_seen = 0

    async def staller(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests_seen
        hs = wire.parse_handshake(await reader.readexactly(wire.HANDSHAKE_LENGTH))
        writer.write(wire.encode_handshake(wire.Handshake(hs.info_hash, b"-XX0000-stallstallst", wire.make_reserved())))
        writer.write(wire.encode(wire.HaveAll()) + wire.encode(wire.Unchoke()))
        parser = wire.WireParser()
        while chunk := await reader.read(65536):
            requests_seen += sum(isinstance(m, wire.Request) for m in parser.feed(chunk))
        writer.close()

    server = await asyncio.start_server(staller, "127.0.0.1", 0)
    stall_port = server.sockets[0].getsockname()[1]
    try:
        async with node(tmp_path, "seed") as seeder, node(tmp_path, "leech", snub_timeout=1.0) as leecher:
            t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", stall_port)])
            for _ in range(100):
                if t.snubs:
                    break
                await asyncio.sleep(0.05)
            assert requests_seen > 0 and t.snubs == 1
            stalled = [p for p in t.peers if p.snubbed]
            assert len(stalled) == 1 and not stalled[0].outstanding  # its requests were taken back
            await seeder.add(meta, tmp_path / "src", trusted_complete=True)
            t.add_peers([("127.0.0.1", seeder.port)])
            await wait_done(t, 30)
    finally:
        server.close()
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


async def test_churn_download_survives_losing_two_of_three_seeders(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=6 * 1024 * 1024)
    meta = create(data, version="hybrid", piece_length=65536)
    seeders = [node(tmp_path, f"seed{i}") for i in range(3)]
    running = []
    try:
        for s in seeders:
            await s.start()
            running.append(s)
            await s.add(meta, tmp_path / "src", trusted_complete=True)
        # 4 MB/s: the 6 MiB take about 1.5 s, time to kill seeders at 30% and 60%
        async with node(tmp_path, "leech", download_rate_limit=4_000_000) as leecher:
            t = await leecher.add(meta, tmp_path / "dst", peers=[("127.0.0.1", s.port) for s in seeders])
            killed = []
            while t.status().progress < 1.0 and t.status().error is None:
                progress = t.status().progress
                if (len(killed) == 0 and progress >= 0.3) or (len(killed) == 1 and progress >= 0.6):
                    victim = running.pop(0)
                    await victim.stop()
                    killed.append(progress)
                await asyncio.sleep(0.02)
            await wait_done(t)
            assert len(killed) == 2 and killed[1] < 0.95, killed
    finally:
        for s in running:
            await s.stop()
    assert_same_files(meta, tmp_path / "src", tmp_path / "dst")


async def test_peer_exchange_introduces_a_peer_we_were_not_told_of(tmp_path: Path) -> None:
    """B knows only A; A tells B about the seeder over ut_pex (BEP 11)."""
    data = make_single(tmp_path / "src")
    async with (
        node(tmp_path, "seed", pex_interval=0.2) as seeder,
        node(tmp_path, "a", pex_interval=0.2, download_rate_limit=2_000_000) as a,
        node(tmp_path, "b", pex_interval=0.2, download_rate_limit=1_000_000) as b,
    ):  # rate limits keep both downloading long enough for the exchange
        shared = await seeder.share(data, version="hybrid", piece_length=65536)
        assert shared.meta is not None
        ta = await a.add(shared.meta, tmp_path / "dst-a", peers=[("127.0.0.1", seeder.port)])
        tb = await b.add(shared.meta, tmp_path / "dst-b", peers=[("127.0.0.1", a.port)])
        seeder_address = ("127.0.0.1", seeder.port)
        for _ in range(100):
            if seeder_address in tb.peer_table:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("B never learnt of the seeder, which only peer exchange could tell it")
        await wait_done(ta)
        await wait_done(tb)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst-b")


async def test_leechers_of_one_seeder_hear_of_each_other_within_seconds(tmp_path: Path) -> None:
    """The first peer-exchange message goes out as soon as there is a peer to tell of, not a minute later
    (BEP 11 limits the later ones to one a minute): two leechers told only of the seeder find each other and
    trade, as libtorrent's do."""
    data = make_single(tmp_path / "src")
    async with (
        node(tmp_path, "seed") as seeder,
        node(tmp_path, "a", download_rate_limit=1_000_000) as a,
        node(tmp_path, "b", download_rate_limit=1_000_000) as b,
    ):  # the default pex_interval (60 s); rate limits keep both downloading while they meet
        assert seeder.settings.pex_interval == 60.0
        shared = await seeder.share(data, version="v1", piece_length=65536)
        assert shared.meta is not None
        ta = await a.add(shared.meta, tmp_path / "dst-a", peers=[("127.0.0.1", seeder.port)])
        tb = await b.add(shared.meta, tmp_path / "dst-b", peers=[("127.0.0.1", seeder.port)])
        for _ in range(50):
            if ("127.0.0.1", b.port) in ta.peer_table and ("127.0.0.1", a.port) in tb.peer_table:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the leechers were not told of each other within 5 s")
        for _ in range(50):
            if any(p.address in {("127.0.0.1", a.port), ("127.0.0.1", b.port)} for p in ta.peers + tb.peers):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the leechers did not connect to each other")
        await wait_done(ta)
        await wait_done(tb)
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst-a")


async def test_bitfield_comes_first_and_one_after_the_peers_extension_handshake_is_taken(tmp_path: Path) -> None:
    """BEP 3 wants the bitfield first; BEP 10 clients often send their extension handshake before theirs."""
    data = make_single(tmp_path / "src", size=4 * 65536)
    meta = create(data, version="v1", piece_length=65536)
    async with node(tmp_path, "partial") as partial:
        half = tmp_path / "half"
        half.mkdir()
        half.joinpath(data.name).write_bytes(data.read_bytes()[: 2 * 65536])  # the first two pieces
        torrent = await partial.add(meta, half)
        while torrent.status().state != "downloading":
            await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", partial.port)
        try:
            writer.write(wire.encode_handshake(wire.Handshake(meta.info_hash_v1, b"-XX0001-" + bytes(12),
                                                              wire.make_reserved(fast=True, extensions=True))))
            writer.write(wire.encode(wire.Extended(0, b"d1:md11:ut_metadatai3eee")))
            writer.write(wire.encode(wire.Bitfield(bytes([0b11110000]))))  # a seed, after its extension handshake
            await writer.drain()
            await reader.readexactly(68)
            parser, received = wire.WireParser(), []
            while not any(isinstance(m, wire.Interested) for m in received):
                chunk = await asyncio.wait_for(reader.read(65536), 5)
                assert chunk, f"the node closed the connection after {received}"
                received += [m for m in parser.feed(chunk) if not isinstance(m, wire.KeepAlive)]
            assert received[0] == wire.Bitfield(bytes([0b11000000])), received[:2]
            assert isinstance(received[1], wire.Extended) and received[1].ext_id == 0
        finally:
            writer.close()
