"""Metainfo parsing: valid torrents of every kind, and a corpus of hostile ones."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerloom.codec.bencode import decode, encode
from peerloom.torrent.create import create
from peerloom.torrent.metainfo import Metainfo, MetainfoError

DATA = Path(__file__).resolve().parents[2] / "data"  # tests/data
BAD = sorted((DATA / "bad_torrents").glob("*.torrent"))
LIBTORRENT = json.loads((DATA / "libtorrent_torrents" / "manifest.json").read_text())


def test_corpus_is_present():
    assert len(BAD) >= 40


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_hostile_torrent_is_refused_cleanly(path: Path):
    with pytest.raises(MetainfoError):
        Metainfo.parse(path.read_bytes())


def v1_single_info(**extra) -> dict:
    return {"name": "file.bin", "piece length": 16384, "length": 20000, "pieces": b"a" * 40, **extra}


def test_v1_single_file():
    meta = Metainfo.parse(encode({"announce": "http://t/a", "info": v1_single_info()}))
    assert meta.version == "v1"
    assert meta.single_file
    assert meta.files[0].path == ("file.bin",)
    assert meta.total_length == 20000
    assert meta.num_pieces == 2
    assert meta.trackers == (("http://t/a",),)
    assert meta.info_hash_v1 == hashlib.sha1(encode(v1_single_info())).digest()
    assert meta.info_hash_v2 is None


def test_info_hash_is_over_the_raw_bytes_even_when_keys_are_unsorted():
    raw_info = b"d6:lengthi20000e4:name8:file.bin12:piece lengthi16384e6:pieces40:" + b"a" * 40 + b"e"
    unsorted = b"d6:pieces40:" + b"a" * 40 + b"4:name8:file.bin6:lengthi20000e12:piece lengthi16384ee"
    for info in (raw_info, unsorted):
        meta = Metainfo.parse(b"d4:info" + info + b"e")
        assert meta.info_hash_v1 == hashlib.sha1(info).digest()
        assert meta.info_bytes == info


def test_utf8_variants_are_preferred():
    info = v1_single_info(**{"name": b"\xe9t\xe9", "name.utf-8": "été".encode()})
    assert Metainfo.parse(encode({"info": info})).name == "été"


def test_tiers_private_comment_and_round_trip():
    torrent = {
        "announce": "http://a/1",
        "announce-list": [["http://a/1", "http://a/2"], [], ["udp://b:80"], [5]],
        "comment": "hello",
        "creation date": 1700000000,
        "url-list": "http://seed/",
        "info": v1_single_info(private=1),
    }
    meta = Metainfo.parse(encode(torrent))
    assert meta.trackers == (("http://a/1", "http://a/2"), ("udp://b:80",))
    assert meta.private
    assert meta.comment == "hello"
    assert meta.web_seeds == ("http://seed/",)
    again = Metainfo.parse(meta.to_bytes())
    assert again == meta


def test_hybrid_with_trailing_pad_and_missing_piece_layers(tmp_path: Path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"1" * 40000)
    (tmp_path / "d" / "b").write_bytes(b"2" * 50000)
    meta = create(tmp_path / "d", piece_length=16384)
    assert [f.is_pad for f in meta.files] == [False, True, False, True]
    assert meta.files[2].offset % 16384 == 0
    assert meta.num_pieces == 3 + 4
    # Magnet downloads get the info dict without piece layers: still a valid torrent.
    bare = Metainfo.from_info(meta.info_bytes)
    assert bare.piece_layers == {}
    assert bare.info_hash_v2 == meta.info_hash_v2


def test_piece_layer_that_does_not_match_its_root_is_refused(tmp_path: Path):
    (tmp_path / "big").write_bytes(b"z" * 100_000)
    meta = create(tmp_path / "big", version="v2", piece_length=16384)
    ((root, layer),) = meta.piece_layers.items()
    with pytest.raises(MetainfoError, match="does not match"):
        Metainfo.from_info(meta.info_bytes, piece_layers={root: bytes(len(layer))})
    with pytest.raises(MetainfoError, match="wrong length"):
        Metainfo.from_info(meta.info_bytes, piece_layers={root: layer + bytes(32)})


def test_v2_multi_file_paths_and_offsets():
    info = {
        "name": "top",
        "piece length": 16384,
        "meta version": 2,
        "file tree": {
            "b": {"": {"length": 20000, "pieces root": b"r" * 32}},
            "a": {"x": {"": {"length": 0}}, "y": {"": {"length": 1, "pieces root": b"s" * 32}}},
        },
    }
    meta = Metainfo.from_info(encode(info))
    assert meta.version == "v2"
    assert [(f.path, f.offset) for f in meta.files] == [
        (("top", "a", "x"), 0),
        (("top", "a", "y"), 0),
        (("top", "b"), 16384),
    ]
    assert meta.num_pieces == 3
    assert meta.files[0].pieces_root is None


def test_to_bytes_keeps_outer_keys_sorted_around_info(tmp_path: Path):
    (tmp_path / "f").write_bytes(b"q" * 70000)
    meta = create(tmp_path / "f", trackers=["http://t/a"], comment="c", web_seeds=["http://w/"])
    data = meta.to_bytes()
    assert list(decode(data)) == sorted(decode(data))  # strict decode succeeded: canonical
    assert Metainfo.parse(data) == meta


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_metainfo_error(data):
    try:
        Metainfo.parse(data)
    except MetainfoError:
        pass


@settings(max_examples=300)
@given(st.data())
def test_mutated_valid_torrent_raises_only_metainfo_error(data):
    good = bytearray(encode({"announce": "http://t/a", "info": v1_single_info()}))
    for _ in range(data.draw(st.integers(1, 4))):
        good[data.draw(st.integers(0, len(good) - 1))] = data.draw(st.integers(0, 255))
    try:
        Metainfo.parse(bytes(good))
    except MetainfoError:
        pass


def hybrid_one_file_in_folder_info(**extra) -> dict:
    """libtorrent's hybrid of a folder `d` holding one file `f` of 3 pieces: a v1 `files` list of one
    entry and no pad (libtorrent pads only torrents of several files), a v2 tree of one leaf."""
    return {
        "name": "d",
        "piece length": 16384,
        "meta version": 2,
        "files": [{"length": 40000, "path": ["f"]}],
        "file tree": {"f": {"": {"length": 40000, "pieces root": b"r" * 32}}},
        "pieces": b"h" * 60,
        **extra,
    }


def test_hybrid_of_a_folder_holding_one_file():
    meta = Metainfo.from_info(encode(hybrid_one_file_in_folder_info()))
    assert meta.version == "hybrid"
    assert not meta.single_file  # the v1 `files` list says so: the file goes into the folder
    assert [(f.path, f.length, f.pieces_root) for f in meta.files] == [(("d", "f"), 40000, b"r" * 32)]
    assert meta.num_pieces == 3


def test_v2_tree_of_one_leaf_without_a_v1_list_is_a_single_file():
    """BEP 52 has no single/multi flag; libtorrent reads a tree of one file at its top as a single file
    saved by the tree's key (not by `name`), and so do we, or the two would save it to different paths."""
    info = hybrid_one_file_in_folder_info()
    for key in ("files", "pieces"):
        del info[key]
    meta = Metainfo.from_info(encode(info))
    assert meta.single_file
    assert [f.path for f in meta.files] == [("f",)]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        # v1 says "a single file named d", v2 says "a file named f"
        ({"files": None, "length": 40000}, "different files"),
        # the v1 stream puts f a whole piece later than the v2 layout does
        ({"files": [{"length": 16384, "path": [".pad", "16384"], "attr": "p"}, {"length": 40000, "path": ["f"]}],
          "pieces": b"h" * 80}, "offset"),
    ],
)
def test_hybrid_whose_v1_and_v2_disagree_is_refused(change: dict, match: str):
    info = hybrid_one_file_in_folder_info()
    for key, value in change.items():
        if value is None:
            del info[key]
        else:
            info[key] = value
    with pytest.raises(MetainfoError, match=match):
        Metainfo.from_info(encode(info))


@pytest.mark.parametrize(
    ("info", "match"),
    [
        (v1_single_info(**{"piece length": 1 << 40}), "piece length"),
        (v1_single_info(**{"piece length": (1 << 28) + 16384}), "piece length"),
        # 2**21 + 1 pieces, each hash present: bounded like libtorrent's default max_pieces
        (v1_single_info(**{"length": (2**21 + 1) * 16384, "pieces": bytes(20 * (2**21 + 1))}), "pieces"),
        # a v2 file claiming 2**50 bytes in 16 KiB pieces: 2**36 pieces, no hash list to give it away
        ({"name": "f", "piece length": 16384, "meta version": 2,
          "file tree": {"f": {"": {"length": 1 << 50, "pieces root": b"r" * 32}}}}, "pieces"),
        (v1_single_info(name="n" * 256), "too long"),
        ({"name": "d", "piece length": 16384, "pieces": bytes(20),
          "files": [{"length": 5, "path": ["ok", "é" * 128]}]}, "too long"),
        ({"name": "d", "piece length": 16384, "meta version": 2,
          "file tree": {"x" * 256: {"": {"length": 5, "pieces root": b"r" * 32}}}}, "too long"),
    ],
    ids=["piece_length_2_40", "piece_length_over_256M", "v1_too_many_pieces", "v2_too_many_pieces",
         "long_name", "long_v1_component", "long_v2_component"],
)
def test_claimed_sizes_are_bounded_before_use(info: dict, match: str):
    with pytest.raises(MetainfoError, match=match):
        Metainfo.from_info(encode(info))


def test_largest_accepted_piece_length():
    meta = Metainfo.from_info(encode(v1_single_info(**{"piece length": 1 << 28, "pieces": bytes(20)})))
    assert meta.piece_length == 1 << 28 and meta.num_pieces == 1


def test_hybrid_with_extra_pieces_of_padding_at_the_end_is_refused():
    info = hybrid_one_file_in_folder_info(
        files=[{"length": 40000, "path": ["f"]}, {"length": 8768 + 16384, "path": [".pad", "25152"], "attr": "p"}],
        pieces=b"h" * 80,
    )
    with pytest.raises(MetainfoError, match="4 pieces in v1, 3 in v2"):
        Metainfo.from_info(encode(info))


@pytest.mark.parametrize("name", sorted(LIBTORRENT))
def test_libtorrent_torrents_are_read_as_libtorrent_reads_them(name: str):
    """libtorrent 2.1.1's torrents of every shape (tests/data/make_libtorrent_torrents.py), and what it saw."""
    meta = Metainfo.parse((DATA / "libtorrent_torrents" / name).read_bytes())
    want = LIBTORRENT[name]
    assert (meta.info_hash_v1 or b"").hex() == (want["info_hash_v1"] or "")
    assert (meta.info_hash_v2 or b"").hex() == (want["info_hash_v2"] or "")
    assert meta.num_pieces == want["num_pieces"] and meta.piece_length == want["piece_length"]
    assert [[list(f.path), f.length] for f in meta.data_files] == want["files"]
    assert Metainfo.parse(meta.to_bytes()) == meta


@pytest.mark.parametrize(
    "info",
    [
        {"name": "d", "piece length": 16384, "pieces": bytes(20),
         "files": [{"length": 5, "path": ["a"]}, {"length": 6, "path": ["a"]}]},
        {"name": "d", "piece length": 16384, "pieces": bytes(20),
         "files": [{"length": 5, "path": ["a"]}, {"length": 6, "path": ["a", "b"]}]},
        # two keys that are different bytes but the same text once undecodable bytes are replaced
        {"name": "d", "piece length": 16384, "meta version": 2, "file tree": {
            b"\xff": {"": {"length": 5, "pieces root": b"r" * 32}},
            b"\xfe": {"": {"length": 5, "pieces root": b"s" * 32}}}},
    ],
    ids=["v1_same_path_twice", "v1_file_over_a_folder", "v2_names_equal_once_decoded"],
)
def test_two_files_at_one_path_are_refused(info: dict):
    """Both would be written to one place on disk (or one under the other, which cannot be created)."""
    with pytest.raises(MetainfoError, match=r"two files|file and a folder"):
        Metainfo.from_info(encode(info))


def test_pad_files_may_share_a_path():
    """libtorrent names pads by their size (.pad/N): two files with the same tail get two equal pads."""
    info = {"name": "d", "piece length": 16384, "pieces": bytes(60), "files": [
        {"length": 100, "path": ["a"]}, {"length": 16284, "path": [".pad", "16284"], "attr": "p"},
        {"length": 100, "path": ["b"]}, {"length": 16284, "path": [".pad", "16284"], "attr": "p"},
        {"length": 100, "path": ["c"]}]}
    assert [f.path[-1] for f in Metainfo.from_info(encode(info)).data_files] == ["a", "b", "c"]
