"""A content-addressed store of modules and work-unit inputs: each blob is a file named by its SHA-256.

Modules and inputs come from other peers, so nothing read back is trusted: a blob is hashed again on every `get`
(a file changed on disk is removed and reported, never used), sizes are bounded before anything is read or
written, and names are checked to be hashes before they touch a path. Writes are atomic (a temporary file then a
rename), so a crash leaves either the whole blob or none of it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from peerloom.errors import PeerloomError, ProtocolError

DEFAULT_MAX_BLOB = 64 * 1024 * 1024
_HASH = re.compile(r"[0-9a-f]{64}")


class BlobError(PeerloomError):
    """A blob could not be stored or given back."""


class BlobMissing(BlobError):
    """No blob with that hash is in the store."""


class BadBlob(BlobError, ProtocolError):
    """A blob (or a name for one) that breaks the store's rules: not a SHA-256 in hex, over the size bound, or
    content that does not hash to its name."""


def blob_hash(data: bytes) -> str:
    """The name of `data` in the store: its SHA-256, in lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def check_hash(name: str) -> str:
    """`name` if it is a SHA-256 in lower-case hex, else `BadBlob` (so a name can never become another path)."""
    if not isinstance(name, str) or not _HASH.fullmatch(name):
        raise BadBlob(f"not a SHA-256 in hex: {name!r:.80}")
    return name


class BlobStore:
    """Blobs of at most `max_size` bytes, in `directory` (created if missing)."""

    def __init__(self, directory: Path | str, max_size: int = DEFAULT_MAX_BLOB) -> None:
        self.directory = Path(directory)
        self.max_size = max_size
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.directory / check_hash(name)

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store `data` and return its hash; with `expected`, refuse data that does not hash to it (a blob fetched
        from a peer under that name)."""
        if len(data) > self.max_size:
            raise BadBlob(f"a blob of {len(data)} bytes is over the {self.max_size}-byte bound")
        name = blob_hash(data)
        if expected is not None and check_hash(expected) != name:
            raise BadBlob(f"the data hashes to {name}, not to {expected}")
        target = self.directory / name
        if target.exists():
            return name
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        return name

    def has(self, name: str) -> bool:
        return self.path(name).is_file()

    def get(self, name: str) -> bytes:
        """The blob named `name`, verified against its hash; `BlobMissing` if absent, `BadBlob` (and the file is
        removed) if it is oversized or its content no longer matches its name."""
        path = self.path(name)
        try:
            with path.open("rb") as f:
                oversized = os.fstat(f.fileno()).st_size > self.max_size
                data = None if oversized else f.read(self.max_size + 1)  # +1: a file that grew since is seen
        except FileNotFoundError:
            raise BlobMissing(f"no blob {name} in the store") from None
        if data is None or len(data) > self.max_size:
            path.unlink(missing_ok=True)
            raise BadBlob(f"blob {name} is over the {self.max_size}-byte bound; removed")
        if blob_hash(data) != name:
            path.unlink(missing_ok=True)
            raise BadBlob(f"blob {name} does not match its hash (changed on disk); removed")
        return data

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)
