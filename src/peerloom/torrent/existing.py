"""Files already on disk where a download is about to write: reuse what is this torrent's, never destroy the rest.

Like libtorrent, a download first checks the data it finds and keeps every piece that verifies. Unlike a plain
"write over whatever is there", a user's file that cannot be the torrent's is not silently destroyed: the download
refuses to start, naming the file, unless the user asked to overwrite.

The rule, for each file the download would write into (a selected file, or a file sharing a wanted v1 piece
with one) that exists, is not empty, and that the resume record does not vouch for (a record means peerloom
created the files it had selected), given the check's outcome for every piece covering the file — verified,
failed (read whole, wrong hash), or unreadable (some of its bytes are missing: this file or a neighbour is
absent or short):

1. a covering piece verifies: the file is (at least partly) this torrent's data. Reused; bytes past its length
   are cut.
2. it holds no byte that is not zero (sparse, zero-filled: a preallocation): there is nothing to lose. Reused.
3. every covering piece is unreadable, and the file has exactly the torrent's length: nothing could be checked,
   because each of its pieces also needs bytes of a neighbour that is missing (a small file inside a v1 piece
   that straddles files). A legitimate file in that place looks exactly like this, so it is reused; writing
   the fetched piece over it changes nothing if it was the torrent's. Requiring the exact length keeps a
   user's unrelated file (which almost never has that length) safe.
4. anything else — a failed piece and no verified one, or a length that differs with nothing verified — is
   not this torrent's data: refused.

Rule 3 matters because a failed piece only says that *some* file under it is wrong: a legitimate file whose
neighbour is missing must not be blamed for it; once the user moves a refused neighbour away, the legitimate
file's pieces become unreadable rather than failed, and rule 3 takes it (no refusal loop). v2 and hybrid
torrents align every file to a piece (BEP 47 pad files, BEP 52), so only v1 torrents without padding need it.
"""

from __future__ import annotations

from collections.abc import Sequence

from peerloom.torrent.storage import PieceMap, Storage, StorageError


class ExistingFileError(StorageError):
    """A file where the download would write holds data that is not this torrent's."""


def reusable(length: int, size: int, outcomes: Sequence[bool | None], storage: Storage, file_index: int) -> bool:
    """Whether an existing file of `size` bytes (`length` in the torrent) may be written into, given the check's
    outcome for each piece covering it: True verified, False failed, None unreadable (see the module's rule).
    Reads the file only when the outcomes cannot decide (rule 2)."""
    if size <= 0 or True in outcomes:
        return True
    if outcomes and size == length and all(o is None for o in outcomes):
        return True
    return not storage.holds_data(file_index)


def files_written(pieces: PieceMap, selected: Sequence[bool], wanted: Sequence[int], have: Sequence[int]) -> list[int]:
    """The files a download writes into: the selected ones, and any other whose bytes share a wanted piece that
    is not had yet (v1 pieces straddle files; a piece is written whole)."""
    out = []
    for index, f in enumerate(pieces.files):
        if f.is_pad:
            continue
        if selected[index] or any(wanted[p] and not have[p] for p in pieces.pieces_of_file(index)):
            out.append(index)
    return out


def refuse_foreign_files(storage: Storage, candidates: Sequence[int], sizes: Sequence[int],
                         outcomes: Sequence[bool | None]) -> None:
    """Raise `ExistingFileError` naming the first of `candidates` (existing files the record does not vouch for)
    that is not this torrent's data. Blocking: reads files."""
    pieces = storage.pieces
    refused = [
        index for index in candidates
        if not reusable(pieces.files[index].length, sizes[index],
                        [outcomes[p] for p in pieces.pieces_of_file(index)], storage, index)
    ]
    if refused:
        more = f" (and {len(refused) - 1} more such files)" if len(refused) > 1 else ""
        raise ExistingFileError(f"{storage.path_of(refused[0])} already exists and is not this torrent's data{more}; "
                                "move it away or use --overwrite")
