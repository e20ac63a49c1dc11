"""A strict reader of Yjs binary updates (update format v1) and state vectors, to check an update before pycrdt
sees it.

pycrdt accepts some garbage as a valid update: trailing bytes are ignored, and an update whose items or deletions
refer to changes the document has not seen is kept "pending" forever instead of being refused. This reader walks
the whole update (Yjs `encoding.js`: `writeClientsStructs`, `writeStructs`, `Item.write`, `writeDeleteSet`; lib0
`encoding.js` for the variable-length integers, strings and `writeAny` values), bounds every count and length by
the bytes left, and says what the update adds (a clock range per client), what it refers to (origins and parents)
and what it deletes, so that `missing_dependencies` can tell whether a document is ready to integrate it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peerloom.apps.docs.keys import DocError

MAX_SAFE_INTEGER = 2**53 - 1  # Yjs clients and clocks are JavaScript numbers
MAX_ANY_DEPTH = 64
# info byte of a struct (Yjs: BIT8 origin, BIT7 right origin, BIT6 parentSub, BITS5 content reference)
_ORIGIN, _RIGHT_ORIGIN, _PARENT_SUB, _CONTENT = 0x80, 0x40, 0x20, 0x1F
_GC, _DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY, _DOC, _SKIP = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
_XML_ELEMENT, _XML_HOOK = 3, 5  # ContentType references that carry a node name


class YUpdateError(DocError):
    """Bytes that are not a well-formed Yjs v1 update or state vector."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)  # bytes index faster than a memoryview, and the reader walks every byte
        self.end = len(self.data)
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise YUpdateError("truncated Yjs update")
        self.pos = pos + 1
        return self.data[pos]

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise YUpdateError("truncated Yjs update")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def uint(self) -> int:
        """lib0 varUint: 7 bits a byte, least significant first, high bit set on all but the last."""
        pos = self.pos
        if pos < self.end and self.data[pos] < 0x80:  # the common one-byte case, without the loop
            self.pos = pos + 1
            return self.data[pos]
        value = shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if value > MAX_SAFE_INTEGER:
                raise YUpdateError("Yjs integer above 2^53")
            if b < 0x80:
                return value
            shift += 7

    def count(self, min_size: int = 1) -> int:
        """A number of things that follow, each at least `min_size` bytes: bounded by what is left."""
        n = self.uint()
        if n * min_size > self.left():
            raise YUpdateError(f"Yjs update claims {n} entries in {self.left()} bytes")
        return n

    def int(self) -> None:
        """lib0 varInt (sign in bit 6 of the first byte): only its extent matters here."""
        b = self.byte()
        for _ in range(8):
            if b < 0x80:
                return
            b = self.byte()
        raise YUpdateError("Yjs varInt longer than 9 bytes")

    def string(self) -> str:
        raw = self.take(self.count())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise YUpdateError("Yjs string is not UTF-8") from None

    def any(self, depth: int = 0) -> None:
        """One lib0 `writeAny` value (type tags 116..127)."""
        if depth > MAX_ANY_DEPTH:
            raise YUpdateError("Yjs value nested too deep")
        tag = self.byte()
        if tag in (127, 126, 121, 120):  # undefined, null, false, true
            return
        if tag == 125:
            self.int()
        elif tag in (124, 123, 122):  # float32, float64, bigint64
            self.take(4 if tag == 124 else 8)
        elif tag == 119:
            self.string()
        elif tag == 118:
            for _ in range(self.count(2)):
                self.string()
                self.any(depth + 1)
        elif tag == 117:
            for _ in range(self.count()):
                self.any(depth + 1)
        elif tag == 116:
            self.take(self.count(0))
        else:
            raise YUpdateError(f"unknown Yjs value type {tag}")


def utf16_length(text: str) -> int:
    """Length of `text` in UTF-16 code units (a Yjs string item's clock length)."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(slots=True)
class UpdateShape:
    """What a Yjs update holds: per client the clock range [start, end) of its structs, the ids it refers to
    (origins, right origins, parents: (client, clock)), and the ranges it deletes (client, clock, length)."""

    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    references: set[tuple[int, int]] = field(default_factory=set)
    deletes: list[tuple[int, int, int]] = field(default_factory=list)


def _content_length(r: _Reader, ref: int) -> int:
    """Read an item's content (Yjs `readItemContent`); its length in clock units."""
    if ref == _DELETED:
        return r.uint()
    if ref == _JSON:
        n = r.count()
        for _ in range(n):
            r.string()
        return n
    if ref == _BINARY:
        r.take(r.count(0))
        return 1
    if ref == _STRING:
        return utf16_length(r.string())
    if ref == _EMBED:
        r.string()
        return 1
    if ref == _FORMAT:
        r.string()
        r.string()
        return 1
    if ref == _TYPE:
        if r.uint() in (_XML_ELEMENT, _XML_HOOK):
            r.string()
        return 1
    if ref == _ANY:
        n = r.count()
        for _ in range(n):
            r.any()
        return n
    if ref == _DOC:
        r.string()
        r.any()
        return 1
    raise YUpdateError(f"unknown Yjs content type {ref}")


def parse_update(data: bytes) -> UpdateShape:
    """The shape of a Yjs v1 update; YUpdateError unless the bytes are exactly one well-formed update."""
    r = _Reader(data)
    shape = UpdateShape()
    for _ in range(r.count(3)):
        n_structs, client, clock = r.count(), r.uint(), r.uint()
        if client in shape.ranges:
            raise YUpdateError("Yjs update lists a client twice")
        start = clock
        for _ in range(n_structs):
            info = r.byte()
            ref = info & _CONTENT
            if ref in (_GC, _SKIP):
                length = r.uint()
            else:
                if info & _ORIGIN:
                    shape.references.add((r.uint(), r.uint()))
                if info & _RIGHT_ORIGIN:
                    shape.references.add((r.uint(), r.uint()))
                if not info & (_ORIGIN | _RIGHT_ORIGIN):  # no origin to copy the parent from: it is written
                    if r.uint() == 1:
                        r.string()  # a root type's name
                    else:
                        shape.references.add((r.uint(), r.uint()))
                    if info & _PARENT_SUB:
                        r.string()
                length = _content_length(r, ref)
            if length < 1:
                raise YUpdateError("empty Yjs struct")
            clock += length
            if clock > MAX_SAFE_INTEGER:
                raise YUpdateError("Yjs clock above 2^53")
        shape.ranges[client] = (start, clock)
    for _ in range(r.count(2)):
        client = r.uint()
        for _ in range(r.count(2)):
            clock, length = r.uint(), r.uint()
            if length < 1 or clock + length > MAX_SAFE_INTEGER:
                raise YUpdateError("bad Yjs delete range")
            shape.deletes.append((client, clock, length))
    if r.left():
        raise YUpdateError(f"{r.left()} bytes after the Yjs update")
    return shape


def parse_state_vector(data: bytes) -> dict[int, int]:
    """A Yjs state vector (client → next clock); YUpdateError unless it is exactly one."""
    r = _Reader(data)
    vector: dict[int, int] = {}
    for _ in range(r.count(2)):
        client, clock = r.uint(), r.uint()
        vector[client] = clock
    if r.left():
        raise YUpdateError(f"{r.left()} bytes after the Yjs state vector")
    return vector


def missing_dependencies(shape: UpdateShape, state: dict[int, int]) -> list[str]:
    """Why a document at `state` cannot integrate the update now (empty when it can): a gap before a client's
    structs, a reference to an item it has not seen, a deletion of items it has not seen."""
    problems = []

    def seen(client: int, lo: int, hi: int) -> bool:
        """Whether the document (below its clock) or the update itself (its range) holds [lo, hi) of `client`."""
        have = state.get(client, 0)
        start, end = shape.ranges.get(client, (0, 0))
        return hi <= have or (start <= max(lo, have) and hi <= end)

    for client, (start, _) in shape.ranges.items():
        if start > state.get(client, 0):
            problems.append(f"client {client} starts at clock {start}, the document has {state.get(client, 0)}")
    for client, clock in sorted(shape.references):
        if not seen(client, clock, clock + 1):
            problems.append(f"refers to unseen item {client}:{clock}")
    for client, clock, length in shape.deletes:
        if not seen(client, clock, clock + length):
            problems.append(f"deletes unseen items {client}:{clock}+{length}")
    return problems


def needed_clocks(shape: UpdateShape, state: dict[int, int]) -> dict[int, int]:
    """The clock each client must reach in a document at `state` before the update can be integrated (only the
    clients it still lacks), so that a waiting update is retried when they arrive, not after every change."""
    needs: dict[int, int] = {}

    def need(client: int, lo: int, hi: int) -> None:
        start, end = shape.ranges.get(client, (0, 0))
        have = state.get(client, 0)
        if hi > have and not (start <= max(lo, have) and hi <= end):
            needs[client] = max(needs.get(client, 0), min(hi, start) if start > have and hi > start else hi)

    for client, (start, _) in shape.ranges.items():
        if start > state.get(client, 0):
            needs[client] = max(needs.get(client, 0), start)
    for client, clock in shape.references:
        need(client, clock, clock + 1)
    for client, clock, length in shape.deletes:
        need(client, clock, clock + length)
    return needs
