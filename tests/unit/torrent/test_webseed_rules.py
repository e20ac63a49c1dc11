"""Web seeds (BEP 19), the sans-I/O part: file URLs, the byte ranges of a run of pieces, checking an answer's head,
a server's standing (backoff, dropping), and the picker's claims of whole pieces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peerloom.torrent.create import create
from peerloom.torrent.metainfo import Metainfo
from peerloom.torrent.picker import PiecePicker
from peerloom.torrent.storage import PieceMap, PieceVerifier
from peerloom.torrent.webseed import (
    BACKOFF_BASE,
    MAX_FAILURES,
    MAX_HASH_FAILURES,
    MAX_WEB_SEEDS,
    Fault,
    RangeRequest,
    WebSeed,
    WebSeedError,
    check_response,
    file_url,
    parse_content_range,
    plan_ranges,
    seed_urls,
)

PIECE = 16384
ODD = "a b#?%&+ü(1)$;'.bin"  # space, URL delimiters, a percent sign, non-ASCII, libtorrent's kept `()`
ODD_QUOTED = "a%20b%23%3F%25%26%2B%C3%BC(1)%24%3B%27.bin"


def single(tmp_path: Path, name: str = ODD, size: int = PIECE * 3 + 100, version: str = "v1") -> Metainfo:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return create(path, version=version, piece_length=PIECE)  # type: ignore[arg-type]


def tree(tmp_path: Path, version: str = "v1") -> tuple[Metainfo, Path]:
    top = tmp_path / "my set"
    (top / "sub dir").mkdir(parents=True)
    (top / "a.bin").write_bytes(os.urandom(PIECE + 1000))  # ends inside piece 1
    (top / "empty").write_bytes(b"")
    (top / "sub dir" / ODD).write_bytes(os.urandom(5000))  # wholly inside piece 1
    (top / "sub dir" / "z.bin").write_bytes(os.urandom(PIECE * 2 + 7))
    return create(top, version=version, piece_length=PIECE), tmp_path  # type: ignore[arg-type]


# -- URLs -------------------------------------------------------------------------------------------------------
def test_a_single_file_url_is_the_file_unless_it_ends_in_a_slash(tmp_path: Path) -> None:
    meta = single(tmp_path)
    assert file_url("http://h:8080/files/x.iso", meta, 0) == "http://h:8080/files/x.iso"
    assert file_url("http://h:8080/files/", meta, 0) == f"http://h:8080/files/{ODD_QUOTED}"
    assert file_url("http://h/", meta, 0) == f"http://h/{ODD_QUOTED}"
    assert file_url("https://h/dl/?token=a%20b", meta, 0) == f"https://h/dl/{ODD_QUOTED}?token=a%20b"


def test_a_multi_file_url_is_base_name_and_path_each_part_quoted(tmp_path: Path) -> None:
    meta, _ = tree(tmp_path)
    paths = {f.path[-1]: i for i, f in enumerate(meta.files)}
    odd = paths[ODD]
    assert file_url("http://h/seeds/", meta, odd) == f"http://h/seeds/my%20set/sub%20dir/{ODD_QUOTED}"
    # a multi-file URL without its trailing slash is a folder all the same (as libtorrent takes it)
    assert file_url("http://h/seeds", meta, paths["a.bin"]) == "http://h/seeds/my%20set/a.bin"


def test_only_http_urls_are_used_each_once_and_boundedly_many() -> None:
    urls = ["ftp://h/x", "http://h/a", "http://h/a", "https://h/b", "http:///nohost", "not a url", "http://[::1/",
            "\x00http://h/c", "http://h/d e"]
    assert seed_urls(urls) == ["http://h/a", "https://h/b"]
    assert len(seed_urls(f"http://h/{i}" for i in range(100))) == MAX_WEB_SEEDS


# -- ranges -----------------------------------------------------------------------------------------------------
def test_a_run_of_pieces_in_one_file_is_one_request(tmp_path: Path) -> None:
    meta = single(tmp_path)
    pieces = PieceMap(meta)
    assert plan_ranges(pieces, 0, 4) == [RangeRequest(0, 0, PIECE * 3 + 100, 0)]
    assert plan_ranges(pieces, 1, 2) == [RangeRequest(0, PIECE, 2 * PIECE, 0)]
    last = plan_ranges(pieces, 3, 1)
    assert last == [RangeRequest(0, 3 * PIECE, 100, 0)]
    assert last[0].range_header == f"bytes={3 * PIECE}-{3 * PIECE + 99}"


def test_a_piece_spanning_files_takes_a_request_per_file(tmp_path: Path) -> None:
    meta, _ = tree(tmp_path)
    pieces = PieceMap(meta)
    names = [meta.files[r.file_index].path[-1] for r in plan_ranges(pieces, 1, 1)]
    assert names == ["a.bin", ODD, "z.bin"]  # the empty file asks for nothing
    reqs = plan_ranges(pieces, 1, 1)
    assert [(r.start, r.length, r.offset) for r in reqs] == [
        (PIECE, 1000, 0), (0, 5000, 1000), (0, PIECE - 6000, 6000)]


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
def test_every_run_filled_from_its_ranges_verifies(tmp_path: Path, version: str) -> None:
    """The ranges put every byte where its piece wants it: fetched from the files as a server would, each piece
    of each run passes the torrent's hash check (v2: files aligned to pieces; hybrid: pad files left as zeros)."""
    meta, root = tree(tmp_path, version)
    pieces = PieceMap(meta)
    verifier = PieceVerifier(meta, pieces)
    files = [root.joinpath(*f.path).read_bytes() if not f.is_pad else None for f in meta.files]
    if version == "hybrid":
        assert any(f.is_pad for f in meta.files)
    n = pieces.num_pieces
    for first in range(n):
        for count in range(1, n - first + 1):
            sizes = [pieces.piece_size(i) for i in range(first, first + count)]
            buf = bytearray(sum(sizes))
            for r in plan_ranges(pieces, first, count):
                data = files[r.file_index]
                assert data is not None and r.start + r.length <= len(data)
                buf[r.offset : r.offset + r.length] = data[r.start : r.start + r.length]
            at = 0
            for i, size in zip(range(first, first + count), sizes, strict=True):
                assert verifier.verify(i, buf[at : at + size]), (first, count, i)
                at += size


# -- answers ----------------------------------------------------------------------------------------------------
REQ = RangeRequest(0, 100, 50, 0)


def check(status: int, req: RangeRequest = REQ, file_length: int = 1000, **headers: str | None) -> None:
    fields = {"content_range": None, "content_length": None, "content_encoding": None, "retry_after": None}
    fields.update(headers)
    check_response(req, file_length, status, **fields)  # type: ignore[arg-type]


def fault(status: int, req: RangeRequest = REQ, file_length: int = 1000, **headers: str | None) -> WebSeedError:
    with pytest.raises(WebSeedError) as info:
        check(status, req, file_length, **headers)
    return info.value


def test_a_206_with_exactly_the_range_asked_for_is_taken() -> None:
    check(206, content_range="bytes 100-149/1000", content_length="50")
    check(206, content_range="bytes 100-149/*", content_encoding="identity")
    check(200, RangeRequest(0, 0, 1000, 0), content_length="1000")  # the whole file was asked for


@pytest.mark.parametrize(("status", "headers", "expected"), [
    (206, {"content_range": "bytes 100-150/1000"}, Fault.BROKEN),  # one byte too many
    (206, {"content_range": "bytes 0-49/1000"}, Fault.BROKEN),  # another range
    (206, {}, Fault.BROKEN),  # no Content-Range
    (206, {"content_range": "bytes 100-149/999"}, Fault.MISSING),  # another file by that name
    (206, {"content_range": "bytes 100-149/1000", "content_length": "51"}, Fault.BROKEN),
    (206, {"content_range": "bytes 100-149/1000", "content_encoding": "gzip"}, Fault.BROKEN),
    (206, {"content_range": "items 100-149/1000"}, Fault.BROKEN),
    (206, {"content_range": "bytes 149-100/1000"}, Fault.BROKEN),
    (206, {"content_range": "bytes 100-149/100"}, Fault.BROKEN),  # past its own total
    (206, {"content_range": "bytes -1-149/1000"}, Fault.BROKEN),
    (206, {"content_range": "bytes 100-" + "9" * 30 + "/*"}, Fault.BROKEN),
    (200, {"content_length": "1000"}, Fault.NO_RANGES),  # Range ignored: the whole file for a part
    (404, {}, Fault.MISSING), (410, {}, Fault.MISSING), (403, {}, Fault.MISSING),
    (503, {}, Fault.TRANSIENT), (429, {}, Fault.TRANSIENT),
    (302, {}, Fault.BROKEN),  # a redirect not followed (too many)
    (416, {}, Fault.BROKEN),
])
def test_answers_that_are_not_the_range_are_refused_by_kind(status: int, headers: dict, expected: Fault) -> None:
    assert fault(status, **headers).fault is expected


def test_retry_after_is_read_and_bounded() -> None:
    assert fault(503, retry_after="7").retry_after == 7.0
    assert fault(503, retry_after="99999999").retry_after == 3600.0
    assert fault(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT").retry_after is None


def test_content_range_parsing() -> None:
    assert parse_content_range("bytes 0-0/1") == (0, 0, 1)
    assert parse_content_range(" BYTES 5-9/* ") == (5, 9, None)
    for bad in ["", "bytes", "bytes 5-9", "bytes 5/9", "bytes a-9/10", "bytes 5-9/x", "bytes ５-9/10"]:
        with pytest.raises(WebSeedError):
            parse_content_range(bad)


# -- a server's standing ----------------------------------------------------------------------------------------
def err(fault_: Fault, retry_after: float | None = None) -> WebSeedError:
    return WebSeedError("boom", fault_, retry_after)


def test_failures_back_off_exponentially_then_drop(tmp_path: Path) -> None:
    meta = single(tmp_path)
    seed = WebSeed("http://h/", meta, PieceMap(meta))
    now = 100.0
    assert seed.ready(now)
    waits = []
    for _ in range(MAX_FAILURES - 1):
        seed.request_failed(now, err(Fault.TRANSIENT))
        seed.request_failed(now, err(Fault.BROKEN))  # a request under way at the same time: counted once
        assert not seed.ready(now) and seed.status(now).state == "backing off"
        waits.append(seed.retry_at - now)
        now = seed.retry_at
        assert seed.ready(now)
    assert waits == [BACKOFF_BASE * 2**i for i in range(MAX_FAILURES - 1)]
    seed.request_failed(now, err(Fault.TRANSIENT))
    assert seed.dropped and not seed.ready(now + 1e6)
    assert seed.status(now).state == "dropped" and "failed requests in a row" in (seed.error or "")


def test_a_success_resets_the_count_and_retry_after_sets_the_wait(tmp_path: Path) -> None:
    meta = single(tmp_path)
    seed = WebSeed("http://h/", meta, PieceMap(meta))
    seed.request_failed(0.0, err(Fault.TRANSIENT))
    seed.request_succeeded()
    assert seed.failures == 0
    seed.request_failed(10.0, err(Fault.TRANSIENT, retry_after=60.0))
    assert seed.retry_at == 70.0 and seed.status(20.0).failures == 1


def test_a_server_ignoring_range_is_dropped_at_once(tmp_path: Path) -> None:
    meta = single(tmp_path)
    seed = WebSeed("http://h/", meta, PieceMap(meta))
    seed.request_failed(0.0, err(Fault.NO_RANGES))
    assert seed.dropped


def test_a_bad_piece_in_one_file_marks_that_file_missing_on_that_server(tmp_path: Path) -> None:
    meta, _ = tree(tmp_path)
    pieces = PieceMap(meta)
    seed = WebSeed("http://h/", meta, pieces)
    last = pieces.num_pieces - 1  # wholly inside z.bin
    seed.hash_failed(last)
    z = next(i for i, f in enumerate(meta.files) if f.path[-1] == "z.bin")
    assert [seed.available[i] for i in range(pieces.num_pieces)] == [
        0 if i in pieces.pieces_of_file(z) else 1 for i in range(pieces.num_pieces)]
    assert not seed.dropped and seed.status(0.0).hash_failures == 1
    seed.hash_failed(0)  # wholly inside a.bin: all of a.bin's pieces go too
    assert not any(seed.available) and seed.dropped  # nothing left to ask it for
    reason = seed.error
    assert reason is not None and "none of the torrent's pieces" in reason
    seed.hash_failed(1)  # a run under way when it was dropped: counted, but the reason stays
    seed.request_failed(0.0, err(Fault.TRANSIENT))
    assert seed.error == reason and seed.hash_failures == 3


def test_a_bad_piece_spanning_files_marks_only_that_piece(tmp_path: Path) -> None:
    meta, _ = tree(tmp_path)
    pieces = PieceMap(meta)
    seed = WebSeed("http://h/", meta, pieces)
    seed.hash_failed(1)
    assert list(seed.available) == [1 if i != 1 else 0 for i in range(pieces.num_pieces)]


def test_repeated_bad_pieces_drop_a_server(tmp_path: Path) -> None:
    meta = single(tmp_path, size=PIECE * 10)
    seed = WebSeed("http://h/", meta, PieceMap(meta))
    seed.hash_failed(0)  # a single-file torrent: its one file is the whole server
    assert seed.dropped and "none of the torrent's pieces" in (seed.error or "")
    meta, _ = tree(tmp_path / "t")
    seed = WebSeed("http://h/", meta, PieceMap(meta))
    for _ in range(MAX_HASH_FAILURES):
        assert not seed.dropped
        seed.available[1] = 1
        seed.hash_failed(1)
    assert seed.dropped and "failed their hash check" in (seed.error or "")


def test_a_missing_file_takes_its_pieces_away(tmp_path: Path) -> None:
    meta, _ = tree(tmp_path)
    pieces = PieceMap(meta)
    seed = WebSeed("http://h/", meta, pieces)
    seed.request_failed(0.0, err(Fault.MISSING))
    assert seed.failures == 0 and seed.ready(0.0)  # not a failure of the server as such
    seed.file_missing(0)
    assert seed.available[0] == 0 and seed.available[pieces.num_pieces - 1] == 1


# -- the picker's claims ----------------------------------------------------------------------------------------
def test_claims_are_runs_of_unstarted_pieces_out_of_the_picking_until_done() -> None:
    picker = PiecePicker([PIECE] * 10, sequential=True)
    picker.mark_have(2)
    started = picker.pick("peer", [True] * 10, 1)  # block 0 of piece 0 asked of a peer
    assert started == [(0, 0, PIECE)]
    everything = bytearray(b"\x01" * 10)
    assert picker.claim_pieces(everything, 4) == [1]  # piece 0 is started, 2 is had
    assert picker.claim_pieces(everything, 4) == [3, 4, 5, 6]
    lacking = bytearray(b"\x01" * 10)
    lacking[8] = 0
    assert picker.claim_pieces(lacking, 4) == [7]  # the server lacks piece 8
    assert picker.pick("peer", [True] * 10, 100)[-1][0] == 9  # peers never get claimed pieces
    assert picker.claim_pieces(everything, 4) == []
    picker.piece_failed(4)  # given back (not fetched, or bad)
    picker.piece_passed(3)
    assert picker.have[3] and not picker.have[4]
    assert picker.claim_pieces(everything, 4) == [4]


def test_claims_skip_what_the_server_lacks_and_what_peers_have_started() -> None:
    picker = PiecePicker([PIECE] * 8)
    picker.add_peer_pieces([True] * 8)
    started = {index for index, _, _ in picker.pick("peer", [True] * 8, 3)}  # 3 random pieces of one block
    server = bytearray(b"\x01" * 8)
    server[min(set(range(8)) - started)] = 0
    claimed = picker.claim_pieces(server, 8)
    free = sorted(set(range(8)) - started)
    assert claimed and claimed[0] == free[1] and not set(claimed) & started
    assert claimed == list(range(claimed[0], claimed[0] + len(claimed)))
