"""Regenerate tests/data/bad_torrents/: malformed and hostile .torrent files, one flaw each.

Run from the repository root: python tests/data/make_bad_torrents.py
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

from peerloom.codec.bencode import encode

OUT = Path(__file__).parent / "bad_torrents"
PIECE = 16384


def v1_multi() -> dict[str, Any]:
    return {
        "announce": "http://127.0.0.1:1/announce",
        "info": {
            "name": "album",
            "piece length": PIECE,
            "pieces": hashlib.sha1(b"x").digest(),
            "files": [{"length": 10, "path": ["a.txt"]}, {"length": 5, "path": ["d", "b.txt"]}],
        },
    }


def v2_single() -> dict[str, Any]:
    return {
        "info": {
            "name": "f.bin",
            "piece length": PIECE,
            "meta version": 2,
            "file tree": {"f.bin": {"": {"length": 100, "pieces root": bytes(32)}}},
        }
    }


def with_info(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    torrent = copy.deepcopy(base)
    for key, value in changes.items():
        key = key.replace("_", " ")
        if value is None:
            del torrent["info"][key]
        else:
            torrent["info"][key] = value
    return torrent


def cases() -> dict[str, bytes]:
    good = encode(v1_multi())
    v1 = v1_multi()
    v2 = v2_single()
    hybrid = copy.deepcopy(v2)
    hybrid["info"].update({"pieces": hashlib.sha1(b"y").digest(), "length": 99})  # v1 says 99 bytes
    big_v2 = with_info(
        v2, file_tree={"f.bin": {"": {"length": 3 * PIECE, "pieces root": bytes(32)}}}
    )
    big_v2["piece layers"] = {bytes(32): bytes(96)}
    # a folder `d` holding `f` (3 pieces), hybrid as libtorrent makes it; each case below breaks one agreement
    one_in_folder = {
        "info": {
            "name": "d",
            "piece length": PIECE,
            "meta version": 2,
            "files": [{"length": 40_000, "path": ["f"]}],
            "file tree": {"f": {"": {"length": 40_000, "pieces root": bytes(32)}}},
            "pieces": bytes(60),
        }
    }
    pad = {"length": PIECE, "path": [".pad", str(PIECE)], "attr": "p"}
    return {
        "empty": b"",
        "not_bencode": b"this is not a torrent\n",
        "truncated": good[: len(good) // 2],
        "trailing_garbage": good + b"junk",
        "top_level_list": encode([v1]),
        "no_info": encode({"announce": "http://127.0.0.1:1/announce"}),
        "info_is_a_list": encode({"info": [1, 2, 3]}),
        "huge_claimed_string": b"d4:info999999999999:xe",
        "huge_claimed_integer": b"d4:infoi" + b"9" * 5000 + b"ee",
        "deep_nesting": b"d4:info" + b"l" * 100_000 + b"e" * 100_000 + b"e",
        "huge_file_length": encode(with_info(v1, files=[{"length": 2**62, "path": ["a"]}])),
        "negative_length": encode(with_info(v1, files=[{"length": -5, "path": ["a"]}])),
        "huge_piece_length": encode(with_info(v1, piece_length=2**40)),
        "zero_piece_length": encode(with_info(v1, piece_length=0)),
        "piece_length_is_text": encode(with_info(v1, piece_length="16384")),
        "pieces_is_int": encode(with_info(v1, pieces=5)),
        "pieces_not_multiple_of_20": encode(with_info(v1, pieces=b"x" * 21)),
        "pieces_count_mismatch": encode(with_info(v1, pieces=b"x" * 40)),
        "no_pieces_no_tree": encode(with_info(v1, pieces=None)),
        "missing_name": encode(with_info(v1, name=None)),
        "files_empty_list": encode(with_info(v1, files=[])),
        "files_entry_not_dict": encode(with_info(v1, files=["a"])),
        "path_not_list": encode(with_info(v1, files=[{"length": 15, "path": "a.txt"}])),
        "path_empty": encode(with_info(v1, files=[{"length": 15, "path": []}])),
        "path_component_int": encode(with_info(v1, files=[{"length": 15, "path": [1]}])),
        "path_dotdot": encode(with_info(v1, files=[{"length": 15, "path": ["..", "..", "etc", "passwd"]}])),
        "path_absolute": encode(with_info(v1, files=[{"length": 15, "path": ["/etc/passwd"]}])),
        "path_empty_component": encode(with_info(v1, files=[{"length": 15, "path": ["a", "", "b"]}])),
        "path_dot": encode(with_info(v1, files=[{"length": 15, "path": ["."]}])),
        "path_backslash": encode(with_info(v1, files=[{"length": 15, "path": ["..\\..\\evil.exe"]}])),
        "path_drive_letter": encode(with_info(v1, files=[{"length": 15, "path": ["C:evil"]}])),
        "path_nul": encode(with_info(v1, files=[{"length": 15, "path": ["a\x00b"]}])),
        "name_dotdot": encode(with_info(v1, name="..")),
        "name_with_slash": encode(with_info(v1, name="../../tmp/x")),
        "v2_tree_dotdot": encode(
            with_info(v2, file_tree={"..": {"x": {"": {"length": 100, "pieces root": bytes(32)}}}})
        ),
        "v2_tree_not_dict": encode(with_info(v2, file_tree=[1])),
        "v2_tree_empty": encode(with_info(v2, file_tree={})),
        "v2_empty_directory": encode(with_info(v2, file_tree={"d": {}})),
        "v2_file_and_directory": encode(
            with_info(v2, file_tree={"f": {"": {"length": 1, "pieces root": bytes(32)}, "g": {}}})
        ),
        "v2_pieces_root_short": encode(
            with_info(v2, file_tree={"f.bin": {"": {"length": 100, "pieces root": bytes(31)}}})
        ),
        "v2_pieces_root_missing": encode(with_info(v2, file_tree={"f.bin": {"": {"length": 100}}})),
        "v2_piece_length_not_power_of_two": encode(with_info(v2, piece_length=3 * PIECE)),
        "v2_piece_length_too_small": encode(with_info(v2, piece_length=8192)),
        "v2_meta_version_3": encode(with_info(v2, meta_version=3)),
        "v2_piece_layer_wrong_root": encode(big_v2),
        "v2_piece_layers_bad_type": encode({**v2, "piece layers": {b"short": b""}}),
        "hybrid_v1_v2_disagree": encode(hybrid),
        "hybrid_v1_file_a_piece_late": encode(
            with_info(one_in_folder, files=[pad, {"length": 40_000, "path": ["f"]}], pieces=bytes(80))
        ),
        "hybrid_v1_more_pieces_than_v2": encode(
            with_info(one_in_folder, files=[{"length": 40_000, "path": ["f"]}, pad], pieces=bytes(80))
        ),
        "hybrid_v1_single_file_v2_in_folder": encode(with_info(one_in_folder, files=None, length=40_000)),
        "v2_too_many_pieces": encode(
            with_info(v2, file_tree={"f.bin": {"": {"length": 2**50, "pieces root": bytes(32)}}})
        ),
        "path_twice": encode(with_info(v1, files=[{"length": 10, "path": ["a"]}, {"length": 5, "path": ["a"]}])),
        "path_file_over_folder": encode(
            with_info(v1, files=[{"length": 10, "path": ["a"]}, {"length": 5, "path": ["a", "b"]}])
        ),
        "name_too_long": encode(with_info(v1, name="n" * 256)),
        "path_component_too_long": encode(with_info(v1, files=[{"length": 15, "path": ["é" * 128]}])),
        "v2_tree_key_too_long": encode(
            with_info(v2, file_tree={"x" * 256: {"": {"length": 100, "pieces root": bytes(32)}}})
        ),
    }


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.torrent"):
        old.unlink()
    for name, data in cases().items():
        (OUT / f"{name}.torrent").write_bytes(data)
    print(f"wrote {len(cases())} files to {OUT}")
