"""What one peer has, as its bitfield, have, have_all and have_none messages say (BEP 3, BEP 6); sans-I/O.

The messages are taken in any order and any number of times, before or after the torrent's metadata is known:
deployed clients send a bitfield after `interested` when they resume a partial download, some send another one
mid-connection after `have` messages, and a fast-extension peer may send have_all or have_none late. libtorrent
takes each bitfield, have_all or have_none as the peer's whole new set of pieces (`peer_connection.cpp`,
`incoming_bitfield`); so do we, and a peer that finds its connection closed for it may ban us for good.

While the piece counts (the picker) exist, every piece the peer has is counted there exactly once: a new set is
counted after the old one is taken off, and `forget` takes it off when the peer leaves. Before the metadata is
known the announcements are kept, packed, and counted the first time the counts are handed in.
"""

from __future__ import annotations

from typing import Protocol

from peerloom.torrent.resume import unpack_bits
from peerloom.torrent.wire import WireError

# A `have` for a piece beyond this, before we know how many pieces there are, is ignored rather than kept
# (libtorrent's default `max_piece_count`); with the metadata, any piece beyond the torrent's is an error.
MAX_EARLY_PIECES = 1 << 21


class PieceCounts(Protocol):
    """How many connected peers have each piece: the picker."""

    num_pieces: int

    def add_peer_pieces(self, bits: bytearray) -> None: ...

    def remove_peer_pieces(self, bits: bytearray) -> None: ...

    def peer_has(self, index: int) -> None: ...


class PeerPieces:
    """The pieces one peer has. Every method taking `counts` gets the picker, or None while the metadata is
    unknown; the first call with the picker counts what was announced before it."""

    __slots__ = ("_counted", "_early", "_early_exact", "bits", "count", "is_seed")

    def __init__(self) -> None:
        self.bits = bytearray()  # once counted: one byte per piece, 1 if the peer has it; empty: it told us nothing
        self.count = 0  # pieces set in `bits`
        self.is_seed = False  # it has every piece (have_all before the metadata: it will have)
        self._counted = False  # whether `bits` is counted in the picker (the picker exists)
        self._early: bytearray | None = None  # before the metadata: packed bits of its bitfield and haves
        self._early_exact = False  # `_early` is a bitfield: its length must fit the piece count

    @property
    def told(self) -> bool:
        """Whether the peer has said what it has (a bitfield, have, have_all or have_none)."""
        return bool(self.bits) or self.is_seed

    def bitfield(self, data: bytes, counts: PieceCounts | None) -> None:
        """A bitfield message: the peer's whole set of pieces, replacing what it said before."""
        if counts is None:
            self._early, self._early_exact, self.is_seed = bytearray(data), True, False
            return
        self._count_early(counts)
        self._replace(counts, _unpack_bitfield(data, counts.num_pieces))

    def have(self, index: int, counts: PieceCounts | None) -> bool:
        """A have message; True when the piece is new from this peer (the caller may become interested)."""
        if counts is None:
            if index < MAX_EARLY_PIECES and not self.is_seed:
                early = self._early if self._early is not None else bytearray()
                if len(early) <= index >> 3:
                    early += bytes((index >> 3) + 1 - len(early))
                early[index >> 3] |= 0x80 >> (index & 7)
                self._early = early
            return False
        self._count_early(counts)
        n = counts.num_pieces
        if not 0 <= index < n:
            raise WireError(f"have for piece {index} of a torrent of {n} pieces")
        if not self.bits:
            self.bits = bytearray(n)
        if self.bits[index]:
            return False
        self.bits[index] = 1
        self.count += 1
        self.is_seed = self.count == n
        counts.peer_has(index)
        return True

    def have_all(self, counts: PieceCounts | None) -> None:
        """BEP 6 have_all: every piece, whenever it comes."""
        if counts is None:
            self._early, self._early_exact, self.is_seed = None, False, True
            return
        self._count_early(counts)
        self._replace(counts, bytearray(b"\x01" * counts.num_pieces))

    def have_none(self, counts: PieceCounts | None) -> None:
        """BEP 6 have_none: no piece, whenever it comes."""
        if counts is None:
            self._early, self._early_exact, self.is_seed = bytearray(), False, False
            return
        self._count_early(counts)
        self._replace(counts, bytearray(counts.num_pieces))

    def metadata_known(self, counts: PieceCounts) -> None:
        """The picker now exists: count what the peer announced before (a bad bitfield size raises WireError)."""
        self._count_early(counts)

    def forget(self, counts: PieceCounts | None) -> None:
        """The peer left: take its pieces off the counts."""
        if self._counted and counts is not None and self.bits:
            counts.remove_peer_pieces(self.bits)
        self.bits = bytearray()
        self.count = 0

    def _count_early(self, counts: PieceCounts) -> None:
        if self._counted:
            return
        self._counted = True
        n = counts.num_pieces
        early, self._early = self._early, None
        if self.is_seed:
            self._replace(counts, bytearray(b"\x01" * n))
        elif early is not None:
            if self._early_exact:
                bits = _unpack_bitfield(bytes(early), n)
            elif len(early) > (n + 7) // 8 or (n % 8 and len(early) == (n + 7) // 8 and early[-1] & (0xFF >> n % 8)):
                raise WireError(f"have for a piece beyond the torrent's {n} pieces")
            else:
                bits = unpack_bits(bytes(early) + bytes((n + 7) // 8 - len(early)), n)
            self._replace(counts, bits)

    def _replace(self, counts: PieceCounts, bits: bytearray) -> None:
        if self.bits:
            counts.remove_peer_pieces(self.bits)
        self.bits = bits
        self.count = bits.count(1)
        self.is_seed = self.count == counts.num_pieces
        counts.add_peer_pieces(bits)


def _unpack_bitfield(data: bytes, n: int) -> bytearray:
    """The pieces of a bitfield message for a torrent of `n` pieces. Its length must fit (BEP 3); spare bits past
    the last piece are ignored, as libtorrent does (`bt_peer_connection::on_bitfield` reads only `n` bits)."""
    if len(data) != (n + 7) // 8:
        raise WireError(f"a bitfield of {len(data)} bytes for a torrent of {n} pieces")
    return unpack_bits(data, n)
