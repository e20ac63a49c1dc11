"""Regenerate tests/data/libtorrent_torrents/: libtorrent's torrents of every input shape, and its reading of them.

Run from the repository root (needs the libtorrent Python bindings): python tests/data/make_libtorrent_torrents.py
Each shape of tests/support/torrent_shapes.py gives a v1, a v2 and a hybrid torrent, and a hybrid in the layout of
older libtorrent versions (no pad after the last file). manifest.json records libtorrent's own reading of each:
info-hashes, piece count and files (padding left out), so tests check peerloom's reading without libtorrent.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import libtorrent as lt
from support.torrent_shapes import SHAPES, VERSIONS, libtorrent_torrent

OUT = Path(__file__).parent / "libtorrent_torrents"


def reading(data: bytes) -> dict[str, object]:
    info = lt.torrent_info(lt.bdecode(data))
    storage = info.layout()
    hashes = info.info_hashes()
    return {
        "info_hash_v1": hashes.v1.to_bytes().hex() if hashes.has_v1() else None,
        "info_hash_v2": hashes.v2.to_bytes().hex() if hashes.has_v2() else None,
        "num_pieces": info.num_pieces(),
        "piece_length": info.piece_length(),
        "files": [
            [storage.file_path(i).split(os.sep), storage.file_size(i)]
            for i in range(storage.num_files())
            if not storage.file_flags(i) & lt.file_storage.flag_pad_file
        ],
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    manifest = {}
    with tempfile.TemporaryDirectory() as tmp:
        for shape, make in SHAPES.items():
            path = make(Path(tmp, shape))
            kinds = [(version, {}) for version in VERSIONS] + [("hybrid-no-tail-pad", {"tail_padding": False})]
            for kind, options in kinds:
                data = libtorrent_torrent(path, kind.split("-")[0], **options)
                name = f"{shape}-{kind}.torrent"
                (OUT / name).write_bytes(data)
                manifest[name] = reading(data)
    lines = (f" {json.dumps(name)}: {json.dumps(facts, ensure_ascii=False)}" for name, facts in manifest.items())
    (OUT / "manifest.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")


if __name__ == "__main__":
    main()
