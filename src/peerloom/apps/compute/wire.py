"""The messages of `/peerloom/compute/1.0.0`: what a submitter and a volunteer say to each other (sans-I/O).

An exchange is one request and its answer, each message one frame; a stream carries exchanges one after another
(a submitter keeps a few streams to each volunteer open, so a unit costs no new stream). A frame is an unsigned-varint
length, a type byte, then the type's fields in a fixed order (integers big-endian, byte strings and texts with a
4-byte length, SHA-256 names as 32 raw bytes). The frame length is checked against `MAX_FRAME` (or the smaller bound
the reader gives) before its body is read, and every field's length against the room left, so a peer can make the
reader hold no more than one bounded frame; anything malformed raises `ComputeWireError`.

    submitter -> volunteer   QueryCapacity            -> Capacity
    submitter -> volunteer   RunUnit                  -> UnitDone | UnitFailed | Refused
    volunteer -> submitter   GetBlob                  -> Blob | NoBlob
    submitter -> volunteer   Credits (at a job's end) -> Credits (an empty one: received)

A `RunUnit` carries its input when it is small (verified against `input_hash` before use), else the volunteer fetches
it with `GetBlob`; it also carries the credit granted to this volunteer since the last message (`credits`), so that
credit costs no exchange of its own while work flows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from peerloom.codec.varint import VarintError, encode_varint, read_frame
from peerloom.errors import ProtocolError

PROTOCOL = "/peerloom/compute/1.0.0"
MAX_FRAME = 72 * 1024 * 1024  # a blob of the store's bound (64 MiB) and its framing
MAX_CONTROL_FRAME = 64 * 1024  # every message but Blob, RunUnit and UnitDone fits in this
MAX_TEXT = 1024  # an error's message, a refusal's reason
MAX_KIND = 64  # an error's kind (a class name)
MAX_CREDITS = 256  # credit entries in one message
JOB_ID_SIZE = 16
HASH_SIZE = 32


class ComputeWireError(ProtocolError):
    """A compute message that breaks the format or its bounds."""


@dataclass(frozen=True)
class Credit:
    """`fuel` credited for unit `unit` of job `job` (a validated unit this volunteer agreed on)."""

    job: bytes
    unit: int
    fuel: int


@dataclass(frozen=True)
class QueryCapacity:
    pass


@dataclass(frozen=True)
class Capacity:
    """What a volunteer offers the asking submitter: task slots (cores), memory per task, CPU seconds left today,
    and whether it takes work from this submitter at all."""

    slots: int
    memory_bytes: int
    cpu_seconds_left: int
    accepts: bool


@dataclass(frozen=True)
class RunUnit:
    job: bytes
    unit: int
    module_hash: bytes
    input_hash: bytes
    fuel: int
    memory_bytes: int
    wall_ms: int
    max_output: int
    input: bytes | None  # inline when small; None: fetch it with GetBlob
    credits: tuple[Credit, ...] = ()


@dataclass(frozen=True)
class UnitDone:
    output: bytes
    fuel: int
    wall_ms: int


@dataclass(frozen=True)
class UnitFailed:
    """The unit failed in the sandbox: `kind` is the error's class name (deterministic kinds are voted on)."""

    kind: str
    message: str
    fuel: int = 0


@dataclass(frozen=True)
class Refused:
    """The volunteer did not run the unit (busy, over its daily budget, not taking this submitter's work)."""

    reason: str


@dataclass(frozen=True)
class GetBlob:
    name: bytes


@dataclass(frozen=True)
class Blob:
    data: bytes


@dataclass(frozen=True)
class NoBlob:
    pass


@dataclass(frozen=True)
class Credits:
    credits: tuple[Credit, ...]


Message = (QueryCapacity | Capacity | RunUnit | UnitDone | UnitFailed | Refused | GetBlob | Blob | NoBlob | Credits)
_TYPES: dict[type, int] = {QueryCapacity: 1, Capacity: 2, RunUnit: 3, UnitDone: 4, UnitFailed: 5, Refused: 6,
                           GetBlob: 7, Blob: 8, NoBlob: 9, Credits: 10}


# -- encoding ---------------------------------------------------------------------------------------------------
def _bytes(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _credits(credits: tuple[Credit, ...]) -> bytes:
    if len(credits) > MAX_CREDITS:
        raise ValueError(f"at most {MAX_CREDITS} credits in one message")
    return struct.pack(">H", len(credits)) + b"".join(
        _fixed(c.job, JOB_ID_SIZE) + struct.pack(">IQ", c.unit, c.fuel) for c in credits)


def _fixed(data: bytes, size: int) -> bytes:
    if len(data) != size:
        raise ValueError(f"expected {size} bytes, got {len(data)}")
    return data


def _text(text: str, bound: int) -> bytes:
    return _bytes(text.encode("utf-8", "replace")[:bound])


def encode(message: Message) -> bytes:
    """One frame: the varint length, the type byte and the fields."""
    body = _body(message)
    payload = bytes([_TYPES[type(message)]]) + body
    return encode_varint(len(payload)) + payload


def _body(m: Message) -> bytes:
    if isinstance(m, (QueryCapacity, NoBlob)):
        return b""
    if isinstance(m, Capacity):
        return struct.pack(">HQQ?", m.slots, m.memory_bytes, m.cpu_seconds_left, m.accepts)
    if isinstance(m, RunUnit):
        head = _fixed(m.job, JOB_ID_SIZE) + struct.pack(">I", m.unit) + _fixed(m.module_hash, HASH_SIZE) \
            + _fixed(m.input_hash, HASH_SIZE) + struct.pack(">QQII", m.fuel, m.memory_bytes, m.wall_ms, m.max_output)
        inline = b"\x00" if m.input is None else b"\x01" + _bytes(m.input)
        return head + inline + _credits(m.credits)
    if isinstance(m, UnitDone):
        return struct.pack(">QI", m.fuel, m.wall_ms) + _bytes(m.output)
    if isinstance(m, UnitFailed):
        return struct.pack(">Q", m.fuel) + _text(m.kind, MAX_KIND) + _text(m.message, MAX_TEXT)
    if isinstance(m, Refused):
        return _text(m.reason, MAX_TEXT)
    if isinstance(m, GetBlob):
        return _fixed(m.name, HASH_SIZE)
    if isinstance(m, Blob):
        return _bytes(m.data)
    if isinstance(m, Credits):
        return _credits(m.credits)
    raise TypeError(f"not a compute message: {m!r}")


# -- decoding ---------------------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise ComputeWireError(f"message cut short: {n} bytes wanted, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def blob(self, bound: int) -> bytes:
        (n,) = self.unpack(">I")
        if n > bound:
            raise ComputeWireError(f"a field of {n} bytes is over its {bound}-byte bound")
        return self.take(n)

    def text(self, bound: int) -> str:
        try:
            return self.blob(bound).decode("utf-8")
        except UnicodeDecodeError:
            raise ComputeWireError("a text field is not UTF-8") from None

    def credits(self) -> tuple[Credit, ...]:
        (count,) = self.unpack(">H")
        if count > MAX_CREDITS:
            raise ComputeWireError(f"{count} credits in one message (at most {MAX_CREDITS})")
        out = []
        for _ in range(count):
            job = self.take(JOB_ID_SIZE)
            unit, fuel = self.unpack(">IQ")
            out.append(Credit(job, unit, fuel))
        return tuple(out)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ComputeWireError(f"{len(self.data) - self.pos} stray bytes after the message")


def decode(payload: bytes, max_field: int = MAX_FRAME) -> Message:
    """The message in one frame's payload (type byte and fields); byte fields are bounded by `max_field` as well."""
    if not payload:
        raise ComputeWireError("an empty message")
    r = _Reader(payload)
    kind = r.take(1)[0]
    m: Message
    if kind == 1:
        m = QueryCapacity()
    elif kind == 2:
        slots, memory, left, accepts = r.unpack(">HQQB")
        if accepts > 1:
            raise ComputeWireError("a flag that is neither 0 nor 1")
        m = Capacity(slots, memory, left, bool(accepts))
    elif kind == 3:
        job = r.take(JOB_ID_SIZE)
        (unit,) = r.unpack(">I")
        module_hash, input_hash = r.take(HASH_SIZE), r.take(HASH_SIZE)
        fuel, memory, wall_ms, max_output = r.unpack(">QQII")
        flag = r.take(1)[0]
        if flag > 1:
            raise ComputeWireError("a flag that is neither 0 nor 1")
        inline = r.blob(max_field) if flag else None
        m = RunUnit(job, unit, module_hash, input_hash, fuel, memory, wall_ms, max_output, inline, r.credits())
    elif kind == 4:
        fuel, wall_ms = r.unpack(">QI")
        m = UnitDone(r.blob(max_field), fuel, wall_ms)
    elif kind == 5:
        (fuel,) = r.unpack(">Q")
        m = UnitFailed(r.text(MAX_KIND), r.text(MAX_TEXT), fuel)
    elif kind == 6:
        m = Refused(r.text(MAX_TEXT))
    elif kind == 7:
        m = GetBlob(r.take(HASH_SIZE))
    elif kind == 8:
        m = Blob(r.blob(max_field))
    elif kind == 9:
        m = NoBlob()
    elif kind == 10:
        m = Credits(r.credits())
    else:
        raise ComputeWireError(f"unknown message type {kind}")
    r.end()
    return m


class FrameReader:
    """Frames from a byte stream: `feed` bytes, then `next()` gives each whole message (None until one is whole).
    A length over `max_frame` raises as soon as its prefix arrives, so calling `next()` after each `feed` keeps the
    buffer within one frame and one read."""

    def __init__(self, max_frame: int = MAX_CONTROL_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> bytes | None:
        try:
            frame = read_frame(self._buffer, self.max_frame)
        except VarintError as exc:
            raise ComputeWireError(str(exc)) from None
        if frame is None:
            return None
        payload, end = frame
        del self._buffer[:end]
        return payload

    def next(self) -> Message | None:
        payload = self.next_frame()
        return None if payload is None else decode(payload, self.max_frame)

    def leftover(self) -> bytes:
        """Bytes received past the frames taken (the start of the next message on the stream)."""
        data, self._buffer = bytes(self._buffer), bytearray()
        return data

    @property
    def empty(self) -> bool:
        return not self._buffer
