"""multistream-select 1.0 (`/multistream/1.0.0`): protocol negotiation on a connection or stream, sans-I/O.

Every message is a UTF-8 line ending in "\\n", prefixed with its length (newline included) as an unsigned
varint (libp2p connections spec, "multistream-select"). Both sides send the header; the dialer then proposes
protocol ids, and the listener echoes one it supports (agreement) or answers `na`. `ls` asks the listener for
its protocols. Bytes that arrive after the agreement belong to the next protocol: `leftover()` hands them on.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Sequence

from peerloom.codec.varint import VarintError, encode_frame, read_frame
from peerloom.errors import ProtocolError

PROTOCOL_ID = "/multistream/1.0.0"
NA = "na"
LS = "ls"
MAX_MESSAGE = 1024  # bound on one message (length prefix value, newline included)
MAX_LIST_MESSAGE = 64 * 1024  # bound on an `ls` response, which holds every protocol id of the listener
MAX_ATTEMPTS = 32  # proposals plus `ls` requests a listener answers before giving up on the dialer


class MultistreamError(ProtocolError):
    """The remote broke multistream-select: bad framing, wrong header, unexpected answer, too many attempts."""


class NegotiationFailed(MultistreamError):
    """The listener answered `na` to every protocol the dialer offered."""


def encode_message(text: str) -> bytes:
    """One multistream message: varint length, the UTF-8 text, "\\n" (the length counts the newline)."""
    return encode_frame(text.encode() + b"\n")


def encode_list(protocols: Sequence[str]) -> bytes:
    """The `ls` response: one message holding each protocol as its own length-prefixed line (go/rust format)."""
    return encode_frame(b"".join(encode_message(protocol) for protocol in protocols) + b"\n")


def _check_protocol_id(protocol: str) -> None:
    """Our own protocol ids: they start with '/', hold no newline and fit in one message."""
    if not protocol.startswith("/") or "\n" in protocol or len(protocol.encode()) + 1 > MAX_MESSAGE:
        raise ValueError(f"invalid protocol id {protocol!r}: it must start with '/' and fit {MAX_MESSAGE} bytes")


class _Reader:
    """Bounded buffer of received bytes that yields one message body (newline stripped) at a time."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data

    def next_body(self, max_length: int) -> bytes | None:
        """The next whole message without its newline, or None until it has arrived."""
        try:
            frame = read_frame(self._buffer, max_length)
        except VarintError as exc:
            raise MultistreamError(f"bad multistream message length: {exc}") from None
        if frame is None:  # read_frame refuses a length over the bound, so at most one message waits here
            return None
        body, end = frame
        del self._buffer[:end]
        if not body.endswith(b"\n"):
            raise MultistreamError("multistream message without its trailing newline")
        return body[:-1]

    def next_line(self) -> str | None:
        body = self.next_body(MAX_MESSAGE)
        if body is None:
            return None
        try:
            return body.decode()
        except UnicodeDecodeError:
            raise MultistreamError("multistream message is not UTF-8") from None

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def _parse_list(inner: bytes) -> list[str]:
    """The protocol ids of an `ls` response body (outer newline already stripped): length-prefixed lines."""
    protocols: list[str] = []
    offset = 0
    while offset < len(inner):
        try:
            frame = read_frame(inner, MAX_MESSAGE, offset)
        except VarintError as exc:
            raise MultistreamError(f"bad line in the multistream ls response: {exc}") from None
        if frame is None:
            raise MultistreamError("truncated line in the multistream ls response")
        line, offset = frame
        if not line.endswith(b"\n"):
            raise MultistreamError("line of the multistream ls response without its trailing newline")
        try:
            protocols.append(line[:-1].decode())
        except UnicodeDecodeError:
            raise MultistreamError("protocol id in the multistream ls response is not UTF-8") from None
    return protocols


class DialerState(enum.Enum):
    START = "start"  # initiate() not called yet
    AWAIT_HEADER = "await header"  # our header is out, the listener's has not arrived
    AWAIT_LIST = "await ls response"
    AWAIT_ANSWER = "await answer"  # a proposal is out
    DONE = "done"  # a protocol is agreed
    LISTED = "listed"  # ls only: the listener's protocols are known, nothing proposed
    FAILED = "failed"


class Dialer:
    """The initiator: offers `protocols` in order until the listener echoes one.

    `initiate()` gives the first bytes to send (header and first proposal together when `pipeline`);
    `receive()` takes the listener's bytes in any split and returns what to send next (the next proposal
    after an `na`). When `state` is DONE, `protocol` is the agreement and `leftover()` the next layer's bytes.
    With `list_first`, the dialer asks `ls` before proposing and offers only the protocols the listener listed;
    with no protocols at all it stops in LISTED with `remote_protocols` set. With `lazy` (one protocol only),
    the application may send its data right after `initiate()`, saving the round trip; an `na` then raises.
    """

    def __init__(
        self,
        protocols: Sequence[str],
        *,
        pipeline: bool = True,
        list_first: bool = False,
        lazy: bool = False,
    ) -> None:
        for protocol in protocols:
            _check_protocol_id(protocol)
        if not protocols and not list_first:
            raise ValueError("a dialer needs a protocol to offer or list_first=True")
        if lazy and (len(protocols) != 1 or list_first or not pipeline):
            raise ValueError("a lazy dialer offers exactly one protocol, pipelined, without ls")
        self._pending = list(protocols)
        self._had_protocols = bool(protocols)
        self._pipeline = pipeline
        self._list_first = list_first
        self._lazy = lazy
        self._reader = _Reader()
        self._header_seen = False
        self.state = DialerState.START
        self.proposal: str | None = None  # the protocol id currently awaiting an answer
        self.protocol: str | None = None
        self.remote_protocols: list[str] | None = None

    @property
    def ready_to_send(self) -> bool:
        """True once application data may follow: after agreement, or right after initiate() when lazy."""
        if self._lazy:
            return self.state not in (DialerState.START, DialerState.FAILED)
        return self.state is DialerState.DONE

    def initiate(self) -> bytes:
        """The header, and unless `pipeline` is off, the first request (`ls` or a proposal) with it."""
        if self.state is not DialerState.START:
            raise RuntimeError("Dialer.initiate() called twice")
        self.state = DialerState.AWAIT_HEADER
        out = encode_message(PROTOCOL_ID)
        if self._pipeline:
            out += self._next_request()
        return out

    def _next_request(self) -> bytes:
        """Ask `ls` or propose the next protocol, moving to the state that awaits the answer."""
        if self._list_first and self.remote_protocols is None:
            self.state = DialerState.AWAIT_LIST
            return encode_message(LS)
        if not self._pending:
            if not self._had_protocols:
                self.state = DialerState.LISTED
                return b""
            self.state = DialerState.FAILED
            raise NegotiationFailed("the listener supports none of the offered protocols")
        self.proposal = self._pending.pop(0)
        self.state = DialerState.AWAIT_ANSWER
        return encode_message(self.proposal)

    def receive(self, data: bytes | bytearray | memoryview) -> bytes:
        """Take the listener's bytes; return the bytes to send next (possibly b"")."""
        if self.state is DialerState.START:
            raise RuntimeError("call Dialer.initiate() before receive()")
        if self.state in (DialerState.DONE, DialerState.LISTED):
            raise RuntimeError("multistream negotiation is over; use leftover()")
        if self.state is DialerState.FAILED:
            raise MultistreamError("multistream negotiation has already failed")
        self._reader.feed(data)
        out = []
        try:
            while self.state not in (DialerState.DONE, DialerState.LISTED):
                step = self._step()
                if step is None:
                    break
                out.append(step)
        except MultistreamError:
            self.state = DialerState.FAILED
            raise
        return b"".join(out)

    def _step(self) -> bytes | None:
        """The dialer's transitions: one message from the listener in, the bytes to send out (None: need more)."""
        if self.state is DialerState.AWAIT_LIST and self._header_seen:
            body = self._reader.next_body(MAX_LIST_MESSAGE)
            if body is None:
                return None
            self.remote_protocols = _parse_list(body)
            listed = set(self.remote_protocols)
            self._pending = [protocol for protocol in self._pending if protocol in listed]
            return self._next_request()
        line = self._reader.next_line()
        if line is None:
            return None
        if not self._header_seen:
            if line != PROTOCOL_ID:
                raise MultistreamError(f"expected the multistream header, got {line[:64]!r}")
            self._header_seen = True
            return b"" if self._pipeline else self._next_request()
        if self.state is not DialerState.AWAIT_ANSWER:
            raise MultistreamError("unexpected multistream message from the listener")
        if line == self.proposal:
            self.protocol = self.proposal
            self.state = DialerState.DONE
            return b""
        if line == NA:
            if self._lazy:
                raise NegotiationFailed(f"the listener does not support {self.proposal}")
            return self._next_request()
        raise MultistreamError(f"expected {self.proposal!r} or 'na', got {line[:64]!r}")

    def leftover(self) -> bytes:
        """Bytes received after the agreement (the next protocol's); handed over once."""
        if self.state not in (DialerState.DONE, DialerState.LISTED):
            raise RuntimeError("multistream negotiation is not finished")
        return self._reader.take()


class ListenerState(enum.Enum):
    AWAIT_HEADER = "await header"
    AWAIT_REQUEST = "await request"  # header exchanged; waiting for a proposal or `ls`
    DONE = "done"
    FAILED = "failed"


class Listener:
    """The responder: echoes the first proposal it supports, answers `na` to others and `ls` with its list.

    `supported` is a collection of protocol ids, or a predicate (then `ls` answers an empty list). The
    header may be sent first with `initiate()`; otherwise it goes out as the answer to the dialer's header.
    After `max_attempts` proposals and `ls` requests without agreement, the dialer is given up on.
    """

    def __init__(
        self,
        supported: Collection[str] | Callable[[str], bool],
        *,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        if callable(supported):
            self._supports: Callable[[str], bool] = supported
            self._listed: list[str] = []
        else:
            self._listed = list(supported)
            for protocol in self._listed:
                _check_protocol_id(protocol)
            self._supports = frozenset(self._listed).__contains__
        self._max_attempts = max_attempts
        self._attempts = 0
        self._header_sent = False
        self._reader = _Reader()
        self.state = ListenerState.AWAIT_HEADER
        self.protocol: str | None = None

    def initiate(self) -> bytes:
        """Our header, sent without waiting for the dialer's (optional)."""
        if self._header_sent:
            return b""
        self._header_sent = True
        return encode_message(PROTOCOL_ID)

    def receive(self, data: bytes | bytearray | memoryview) -> bytes:
        """Take the dialer's bytes; return the answers to send (header, `na`, list, or the echo)."""
        if self.state is ListenerState.DONE:
            raise RuntimeError("multistream negotiation is over; use leftover()")
        if self.state is ListenerState.FAILED:
            raise MultistreamError("multistream negotiation has already failed")
        self._reader.feed(data)
        out = []
        try:
            while self.state is not ListenerState.DONE:
                line = self._reader.next_line()
                if line is None:
                    break
                out.append(self._on_line(line))
        except MultistreamError:
            self.state = ListenerState.FAILED
            raise
        return b"".join(out)

    def _on_line(self, line: str) -> bytes:
        """The listener's transitions: one message from the dialer in, the answer out."""
        if self.state is ListenerState.AWAIT_HEADER:
            if line != PROTOCOL_ID:
                raise MultistreamError(f"expected the multistream header, got {line[:64]!r}")
            self.state = ListenerState.AWAIT_REQUEST
            return self.initiate()
        self._attempts += 1
        if self._attempts > self._max_attempts:
            raise MultistreamError(f"no agreement after {self._max_attempts} multistream requests")
        if line == LS:
            return encode_list(self._listed)
        if not line.startswith("/"):
            raise MultistreamError(f"multistream protocol ids start with '/', got {line[:64]!r}")
        if self._supports(line):
            self.protocol = line
            self.state = ListenerState.DONE
            return encode_message(line)
        return encode_message(NA)

    def leftover(self) -> bytes:
        """Bytes received after the agreement (the next protocol's); handed over once."""
        if self.state is not ListenerState.DONE:
            raise RuntimeError("multistream negotiation is not finished")
        return self._reader.take()
