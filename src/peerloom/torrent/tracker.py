"""Tracker codecs, sans-I/O: HTTP announce (BEP 3, BEP 23 compact peers, BEP 7 peers6) and scrape (BEP 48)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_from_bytes, urlsplit, urlunsplit

from peerloom.codec.bencode import BencodeError, decode
from peerloom.codec.compact import canonical_ip, unpack_peers
from peerloom.errors import PeerloomError, ProtocolError

MAX_BODY = 4 * 1024 * 1024
MAX_PEERS = 5000


class TrackerError(PeerloomError):
    """A tracker refused us, timed out, or answered something we cannot use."""


class TrackerProtocolError(TrackerError, ProtocolError):
    """A malformed tracker response."""


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int
    downloaded: int
    left: int
    event: str = ""
    numwant: int = 50
    key: int = 0
    ipv6: str | None = None  # BEP 7: our IPv6 address, so a tracker reached over IPv4 knows it too (HTTP only)


@dataclass(frozen=True, slots=True)
class AnnounceResponse:
    interval: int
    min_interval: int | None
    peers: list[tuple[str, int]]
    complete: int | None = None
    incomplete: int | None = None
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class ScrapeStats:
    """What a tracker counts for one torrent: seeders, completed downloads, leechers."""

    complete: int
    downloaded: int
    incomplete: int


def http_announce_url(base: str, req: AnnounceRequest) -> str:
    """The GET URL of an announce; binary fields are percent-encoded byte by byte."""
    params = [
        ("info_hash", quote_from_bytes(req.info_hash, safe="")),
        ("peer_id", quote_from_bytes(req.peer_id, safe="")),
        ("port", str(req.port)),
        ("uploaded", str(req.uploaded)),
        ("downloaded", str(req.downloaded)),
        ("left", str(req.left)),
        ("compact", "1"),
        ("numwant", str(req.numwant)),
        ("key", f"{req.key:08x}"),
    ]
    if req.event:
        params.append(("event", req.event))
    if req.ipv6:
        params.append(("ipv6", quote(req.ipv6, safe="")))
    parts = urlsplit(base)
    query = "&".join(f"{k}={v}" for k, v in params)
    return urlunsplit(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))


def _compact(data: bytes, v6: bool) -> list[tuple[str, int]]:
    try:
        return unpack_peers(data, v6, MAX_PEERS)
    except ValueError as exc:
        raise TrackerProtocolError(str(exc)) from exc


def _response_dict(body: bytes, what: str) -> dict[bytes, Any]:
    """The bencoded dictionary of an HTTP tracker reply (bounded), or the tracker's refusal as TrackerError."""
    if len(body) > MAX_BODY:
        raise TrackerProtocolError(f"{what} too large")
    try:
        d: Any = decode(body, strict=False, max_depth=8)
    except BencodeError as exc:
        raise TrackerProtocolError(f"{what} is not bencoded: {exc}") from exc
    if not isinstance(d, dict):
        raise TrackerProtocolError(f"{what} is not a dictionary")
    failure = d.get(b"failure reason")
    if failure is not None:
        reason = failure.decode("utf-8", "replace") if isinstance(failure, bytes) else str(failure)
        raise TrackerError(f"tracker refused: {reason}")
    return d


def parse_http_announce(body: bytes) -> AnnounceResponse:
    d = _response_dict(body, "tracker response")
    interval = d.get(b"interval")
    if type(interval) is not int or interval <= 0:
        raise TrackerProtocolError("tracker response has no interval")
    peers: list[tuple[str, int]] = []
    raw = d.get(b"peers", b"")
    if isinstance(raw, bytes):
        peers += _compact(raw, v6=False)
    elif isinstance(raw, list):
        for entry in raw[:MAX_PEERS]:
            port = entry.get(b"port") if isinstance(entry, dict) else None
            # like a compact entry, an entry without a usable port (0, negative, beyond 65535) is skipped
            if type(port) is int and 0 < port < 65536 and isinstance(entry.get(b"ip"), bytes):
                try:
                    peers.append((canonical_ip(str(ipaddress.ip_address(entry[b"ip"].decode()))), port))
                except ValueError:
                    continue
    raw6 = d.get(b"peers6")
    if isinstance(raw6, bytes):
        peers += _compact(raw6, v6=True)
    min_interval = d.get(b"min interval")
    warning = d.get(b"warning message")

    def count(key: bytes) -> int | None:
        v = d.get(key)
        return v if type(v) is int else None

    return AnnounceResponse(
        interval=interval,
        min_interval=min_interval if type(min_interval) is int else None,
        peers=peers[:MAX_PEERS],
        complete=count(b"complete"),
        incomplete=count(b"incomplete"),
        warning=warning.decode("utf-8", "replace") if isinstance(warning, bytes) else None,
    )


def http_scrape_url(announce_url: str, info_hashes: list[bytes]) -> str:
    """The scrape URL of an HTTP tracker asking about `info_hashes` (BEP 48): the text after the last '/'
    must start with "announce", which becomes "scrape"; any other URL has no scrape and raises TrackerError."""
    if not info_hashes:
        raise ValueError("a scrape names at least one info-hash (a full scrape is never asked)")
    slash = announce_url.rfind("/")
    tail = announce_url[slash + 1 :]
    if slash < 0 or not tail.startswith("announce"):
        raise TrackerError(f"tracker {announce_url} has no scrape URL")
    base = announce_url[: slash + 1] + "scrape" + tail[len("announce") :]
    query = "&".join("info_hash=" + quote_from_bytes(h, safe="") for h in info_hashes)
    return base + ("&" if "?" in base else "?") + query


def parse_http_scrape(body: bytes, info_hashes: list[bytes]) -> dict[bytes, ScrapeStats]:
    """The counts of the asked torrents the tracker knows; torrents it left out are left out here too."""
    d = _response_dict(body, "scrape response")
    files = d.get(b"files")
    if not isinstance(files, dict):
        raise TrackerProtocolError("scrape response has no files dictionary")
    out = {}
    for info_hash in info_hashes:
        entry = files.get(info_hash)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise TrackerProtocolError("scrape entry is not a dictionary")
        counts = []
        for key in (b"complete", b"downloaded", b"incomplete"):
            value = entry.get(key, 0)
            if type(value) is not int or value < 0:
                raise TrackerProtocolError(f"scrape entry has a bad {key.decode()} count")
            counts.append(value)
        out[info_hash] = ScrapeStats(*counts)
    return out
