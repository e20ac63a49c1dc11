"""Raw blocks on disk, one file per block under HOME/btc/NETWORK/blocks/XX/HASH.blk (XX: the hash's first
byte, to keep directories small).

A block is written to a temporary name, flushed with fsync and renamed into place, so a file that exists is a
whole block; the chain state writes it before the database transaction that refers to it commits.
"""

from __future__ import annotations

import os
from pathlib import Path

from .serialize import hash_hex


class BlockFiles:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, block_hash: bytes) -> Path:
        name = hash_hex(block_hash)
        return self.root / name[:2] / f"{name}.blk"

    def has(self, block_hash: bytes) -> bool:
        return self.path(block_hash).is_file()

    def put(self, block_hash: bytes, raw: bytes) -> None:
        """Store a block's wire bytes (a no-op when it is already stored)."""
        path = self.path(block_hash)
        if path.is_file():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def get(self, block_hash: bytes) -> bytes:
        """A stored block's wire bytes; `FileNotFoundError` when it is not stored."""
        return self.path(block_hash).read_bytes()
