"""Web seeds (BEP 19, "GetRight style"): the sans-I/O part.

A torrent's `url-list` names HTTP servers that hold its files under their plain names. We fetch whole pieces (or runs
of consecutive pieces) from them with range requests and verify each piece as if a peer had sent it. This module
knows, without any I/O: the URL of each file (`file_url`), the byte ranges of files that make up a run of pieces
(`plan_ranges`: one request per file the run touches), whether an answer is the one asked for (`check_response`),
and one server's standing (`WebSeed`: which pieces it can give, its failures, backoff, and why it was dropped).
`webseed_driver` does the HTTP.

Rules taken from libtorrent's `web_peer_connection` where BEP 19 is silent: a single-file torrent's URL is the file
itself unless it ends in '/', then the name is appended; each path component is percent-encoded, keeping only
alphanumerics and `-_!.~*()` (libtorrent's `escape_path`); a 206 must carry exactly the range asked for, and a 200 is
accepted only when the whole file was asked for; a piece that fails its hash check marks the one file it lies in as
not on that server (the server may hold an older copy of one file), a piece spanning files only that piece.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from peerloom.errors import ProtocolError
from peerloom.torrent.state import WebSeedStatus

if TYPE_CHECKING:
    from peerloom.torrent.metainfo import Metainfo
    from peerloom.torrent.storage import PieceMap

MAX_WEB_SEEDS = 16  # servers used per torrent; a torrent naming more gets the first ones
MAX_URL_LENGTH = 4096
RUN_BYTES = 1024 * 1024  # bytes asked of a server at once (libtorrent: 1 MiB, or 4 MiB without keep-alive)
MAX_FAILURES = 5  # failed requests in a row (each after a backoff) before a server is dropped
MAX_HASH_FAILURES = 3  # pieces that failed their hash check before a server is dropped
BACKOFF_BASE = 2.0  # seconds after the first failure, doubled after each further one
BACKOFF_MAX = 300.0
MAX_RETRY_AFTER = 3600.0  # the longest wait a server's Retry-After may ask for
_MAX_NUMBER_DIGITS = 19  # byte offsets and lengths in headers: below 2**63
_PATH_SAFE = "!*()"  # kept unencoded besides what `quote` always keeps (alphanumerics and `_.-~`)


class Fault(enum.Enum):
    """How a failed request counts against its server."""

    MISSING = "missing"  # the server lacks this file (404, 410, 401, 403, another length): never asked for it again
    TRANSIENT = "transient"  # may work later (5xx, 408, 429, timeouts, refused connections): back off
    BROKEN = "broken"  # an answer that breaks the rules (wrong range or length, encoded body): back off
    NO_RANGES = "no ranges"  # the server ignores Range (a 200 to a part of a file): it cannot serve pieces


class WebSeedError(ProtocolError):
    """A web seed's request failed, or its answer is not the one asked for."""

    def __init__(self, message: str, fault: Fault, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.fault = fault
        self.retry_after = retry_after


def seed_urls(urls: Iterable[str]) -> list[str]:
    """The usable web seeds among a torrent's (and a magnet's) URLs: http(s) with a host, each once, at most
    `MAX_WEB_SEEDS` (others, like ftp:// or a URL with spaces or control characters, are skipped)."""
    out: list[str] = []
    for url in urls:
        if len(url) > MAX_URL_LENGTH or url in out or any(c <= " " or c == "\x7f" for c in url):
            continue  # a raw space or control character has no place in a URL (and urlsplit would strip some)
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        if parts.scheme.lower() in ("http", "https") and parts.hostname:
            out.append(url)
            if len(out) == MAX_WEB_SEEDS:
                break
    return out


def file_url(base: str, meta: Metainfo, file_index: int) -> str:
    """The URL of one of the torrent's files on the server at `base` (BEP 19): a single-file torrent's URL is the
    file unless it ends in '/'; a multi-file torrent's files are under base/name/path... A query string is kept."""
    parts = urlsplit(base)
    path = parts.path
    if meta.single_file and path.endswith("/"):
        path += quote(meta.name, safe=_PATH_SAFE)
    elif not meta.single_file:
        if not path.endswith("/"):
            path += "/"  # libtorrent takes a multi-file URL without its trailing slash as a folder too
        path += "/".join(quote(part, safe=_PATH_SAFE) for part in meta.files[file_index].path)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """`length` bytes at `start` of file `file_index`, which go at `offset` of the run's buffer."""

    file_index: int
    start: int
    length: int
    offset: int

    @property
    def range_header(self) -> str:
        """The Range header's value (RFC 9110 14.1.2: the last byte position is inclusive)."""
        return f"bytes={self.start}-{self.start + self.length - 1}"


def plan_ranges(pieces: PieceMap, first: int, count: int) -> list[RangeRequest]:
    """The requests that fetch pieces first..first+count-1 into one buffer (each piece after the one before it):
    one per file the run touches; pad files (BEP 47) are not asked for (they are zeros, and never on a server)."""
    out: list[RangeRequest] = []
    offset = 0
    for index in range(first, first + count):
        pos = offset
        for seg in pieces.segments(index):
            if seg.file_index >= 0 and seg.length:
                last = out[-1] if out else None
                if (last is not None and last.file_index == seg.file_index
                        and last.start + last.length == seg.file_offset and last.offset + last.length == pos):
                    out[-1] = replace(last, length=last.length + seg.length)
                else:
                    out.append(RangeRequest(seg.file_index, seg.file_offset, seg.length, pos))
            pos += seg.length
        offset += pieces.piece_size(index)
    return out


def parse_number(text: str, what: str) -> int:
    """A decimal header value: digits only, bounded (a header may say anything)."""
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_NUMBER_DIGITS:
        raise WebSeedError(f"bad {what}: {text[:40]!r}", Fault.BROKEN)
    return int(text)


def parse_content_range(value: str) -> tuple[int, int, int | None]:
    """`bytes FIRST-LAST/TOTAL` (RFC 9110 14.4; TOTAL may be `*`) as (first, last, total or None)."""
    unit, _, rest = value.strip().partition(" ")
    span, slash, total = rest.partition("/")
    first, dash, last = span.partition("-")
    if unit.lower() != "bytes" or not slash or not dash:
        raise WebSeedError(f"bad Content-Range: {value[:60]!r}", Fault.BROKEN)
    a = parse_number(first, "Content-Range")
    b = parse_number(last, "Content-Range")
    n = None if total.strip() == "*" else parse_number(total, "Content-Range")
    if b < a or (n is not None and b >= n):
        raise WebSeedError(f"bad Content-Range: {value[:60]!r}", Fault.BROKEN)
    return a, b, n


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After in seconds (an HTTP date is not read: the default backoff applies), bounded."""
    if value is None or not value.strip().isascii() or not value.strip().isdigit() or len(value.strip()) > 10:
        return None
    return min(float(value.strip()), MAX_RETRY_AFTER)


def check_response(req: RangeRequest, file_length: int, status: int, *, content_range: str | None,
                   content_length: str | None, content_encoding: str | None, retry_after: str | None = None) -> None:
    """Raise `WebSeedError` unless the answer's head says its body is exactly the bytes `req` asked for."""
    if status in (401, 403, 404, 410):
        raise WebSeedError(f"HTTP {status}: the server does not give out file {req.file_index}", Fault.MISSING)
    if status in (408, 429) or 500 <= status <= 599:
        raise WebSeedError(f"HTTP {status}", Fault.TRANSIENT, parse_retry_after(retry_after))
    if status == 206:
        if content_range is None:
            raise WebSeedError("HTTP 206 without Content-Range", Fault.BROKEN)
        first, last, total = parse_content_range(content_range)
        if total is not None and total != file_length:
            raise WebSeedError(f"the server's file {req.file_index} is {total} bytes, the torrent's {file_length}",
                               Fault.MISSING)
        if (first, last + 1) != (req.start, req.start + req.length):
            raise WebSeedError(f"asked for bytes {req.start}-{req.start + req.length - 1}, got {first}-{last}",
                               Fault.BROKEN)
    elif status == 200:
        # a 200 is the whole file (RFC 9110 14.2: a server may ignore Range): usable only when that is what we asked
        if req.start != 0 or req.length != file_length:
            raise WebSeedError("HTTP 200 to a range request: the server ignores Range", Fault.NO_RANGES)
    else:
        raise WebSeedError(f"HTTP {status}", Fault.BROKEN)
    if content_length is not None and parse_number(content_length, "Content-Length") != req.length:
        raise WebSeedError(f"Content-Length {content_length.strip()[:20]}, expected {req.length}", Fault.BROKEN)
    if content_encoding is not None and content_encoding.strip().lower() not in ("", "identity"):
        raise WebSeedError(f"body sent with Content-Encoding {content_encoding[:20]!r}", Fault.BROKEN)


class WebSeed:
    """One server's standing with a torrent: which pieces it can give (`available`), and its health: failed
    requests in a row back it off (exponentially, or as its Retry-After asks), too many drop it, as do repeated hash
    failures or a server that ignores Range. Times are the caller's monotonic seconds."""

    def __init__(self, url: str, meta: Metainfo, pieces: PieceMap) -> None:
        self.url = url
        self.meta = meta
        self.pieces = pieces
        self.available = bytearray(b"\x01" * pieces.num_pieces)
        self.run_length = max(1, RUN_BYTES // meta.piece_length)  # pieces asked for at once
        self._urls: dict[int, str] = {}
        self.failures = 0  # failed requests in a row
        self.hash_failures = 0
        self.retry_at = -math.inf
        self.dropped = False
        self.error: str | None = None  # the last failure, or why it was dropped
        self.downloaded = 0  # bytes of pieces that passed their hash check

    def url_of(self, file_index: int) -> str:
        url = self._urls.get(file_index)
        if url is None:
            url = self._urls[file_index] = file_url(self.url, self.meta, file_index)
        return url

    def ready(self, now: float) -> bool:
        """Whether it may be asked for pieces now (not dropped, not backing off)."""
        return not self.dropped and now >= self.retry_at

    def piece_passed(self, size: int) -> None:
        self.downloaded += size

    def request_succeeded(self) -> None:
        self.failures = 0

    def request_failed(self, now: float, error: WebSeedError) -> None:
        """Count a failed request by its kind of fault. Failures while already backing off (requests that were under
        way together) count once; a dropped server keeps the reason it was dropped for."""
        if self.dropped:
            return
        self.error = str(error)
        if error.fault is Fault.MISSING:
            return  # `file_missing` is told which file
        if error.fault is Fault.NO_RANGES:
            self.drop(str(error))
            return
        if now < self.retry_at:
            return
        self.failures += 1
        if self.failures >= MAX_FAILURES:
            self.drop(f"{self.failures} failed requests in a row, the last: {error}")
            return
        backoff = min(BACKOFF_BASE * 2 ** (self.failures - 1), BACKOFF_MAX)
        self.retry_at = now + (backoff if error.retry_after is None else max(error.retry_after, 1.0))

    def file_missing(self, file_index: int) -> None:
        """The server does not have this file (or has another one by its name): none of its pieces are asked of it."""
        for index in self.pieces.pieces_of_file(file_index):
            self.available[index] = 0
        self._drop_if_empty()

    def hash_failed(self, index: int) -> None:
        """A piece from this server failed its hash check: the file it lies in is taken to differ from the torrent's
        (a piece spanning files: that piece); after `MAX_HASH_FAILURES` the server is dropped."""
        self.hash_failures += 1
        if self.dropped:
            return
        self.error = f"piece {index} failed its hash check"
        files = {s.file_index for s in self.pieces.segments(index) if s.file_index >= 0}
        if len(files) == 1:
            self.file_missing(files.pop())
        else:
            self.available[index] = 0
            self._drop_if_empty()
        if self.hash_failures >= MAX_HASH_FAILURES and not self.dropped:
            self.drop(f"{self.hash_failures} pieces failed their hash check")

    def _drop_if_empty(self) -> None:
        if not self.dropped and not any(self.available):
            self.drop(f"it has none of the torrent's pieces left to give ({self.error})")

    def drop(self, reason: str) -> None:
        self.dropped = True
        self.error = reason

    def status(self, now: float) -> WebSeedStatus:
        state = "dropped" if self.dropped else "backing off" if now < self.retry_at else "active"
        return WebSeedStatus(self.url, state, self.downloaded, self.failures, self.hash_failures, self.error)
