"""Magnet links (BEP 9; v2 form of BEP 52; `x.pe` peers; `so` file selection of BEP 53).

A link names a torrent by its info-hash(es): `xt=urn:btih:` carries the v1 SHA-1 (hex or base32),
`xt=urn:btmh:1220` the v2 SHA-256 as a multihash; a hybrid link carries both.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from peerloom.errors import ProtocolError
from peerloom.torrent.metainfo import Metainfo

MAX_LINK_LENGTH = 64 * 1024
MAX_FIELDS = 1000
_SHA256_MULTIHASH = "1220"  # multihash code 0x12 (sha2-256), length 0x20


class MagnetError(ProtocolError):
    """A link that is not a usable magnet link."""


@dataclass(frozen=True, slots=True)
class Magnet:
    """What a magnet link says: the info-hashes and hints for finding and naming the torrent."""

    info_hash_v1: bytes | None = None
    info_hash_v2: bytes | None = None
    name: str | None = None
    trackers: tuple[str, ...] = ()
    peers: tuple[tuple[str, int], ...] = ()
    web_seeds: tuple[str, ...] = ()
    select_only: tuple[tuple[int, int], ...] | None = None  # inclusive ranges of file indices

    @classmethod
    def parse(cls, link: str) -> Magnet:
        if len(link) > MAX_LINK_LENGTH:
            raise MagnetError("magnet link is too long")
        if not link[:8].lower() == "magnet:?":
            raise MagnetError("not a magnet link (it must start with 'magnet:?')")
        try:
            link.encode("utf-8")  # lone surrogates (undecodable bytes of a command line) would pass into fields
        except UnicodeEncodeError as exc:
            raise MagnetError("magnet link is not valid text") from exc
        try:
            fields = parse_qsl(link[8:], keep_blank_values=True, max_num_fields=MAX_FIELDS)
        except ValueError as exc:
            raise MagnetError(f"malformed magnet link: {exc}") from exc
        v1 = v2 = None
        name = None
        trackers: list[str] = []
        peers: list[tuple[str, int]] = []
        seeds: list[str] = []
        select = None
        for raw_key, value in fields:
            key = raw_key.split(".", 1)[0] if raw_key[:3] in ("xt.", "tr.") else raw_key
            if key == "xt":
                lowered = value.lower()
                if lowered.startswith("urn:btih:"):
                    v1 = _parse_btih(value[9:])
                elif lowered.startswith("urn:btmh:"):
                    v2 = _parse_btmh(value[9:])
            elif key == "dn":
                name = value
            elif key == "tr" and value:
                trackers.append(value)
            elif key == "x.pe":
                peers.append(parse_peer_address(value))
            elif key == "ws" and value:
                seeds.append(value)
            elif key == "so":
                select = _parse_select(value)
        if v1 is None and v2 is None:
            raise MagnetError("magnet link has no BitTorrent info-hash (xt=urn:btih: or urn:btmh:)")
        return cls(v1, v2, name, tuple(dict.fromkeys(trackers)), tuple(peers), tuple(seeds), select)

    @classmethod
    def from_metainfo(cls, meta: Metainfo, peers: tuple[tuple[str, int], ...] = ()) -> Magnet:
        trackers = tuple(url for tier in meta.trackers for url in tier)
        return cls(meta.info_hash_v1, meta.info_hash_v2, meta.name, trackers, peers, meta.web_seeds)

    def selects(self, file_index: int) -> bool:
        """Whether the link asks for this file (every file when the link has no `so`)."""
        if self.select_only is None:
            return True
        return any(start <= file_index <= end for start, end in self.select_only)

    def __str__(self) -> str:
        parts = []
        if self.info_hash_v1:
            parts.append("xt=urn:btih:" + self.info_hash_v1.hex())
        if self.info_hash_v2:
            parts.append("xt=urn:btmh:" + _SHA256_MULTIHASH + self.info_hash_v2.hex())
        if self.name:
            parts.append("dn=" + quote(self.name, safe=""))
        parts += ["tr=" + quote(url, safe="") for url in self.trackers]
        parts += ["ws=" + quote(url, safe="") for url in self.web_seeds]
        parts += ["x.pe=" + quote(format_peer_address(peer), safe=":[]") for peer in self.peers]
        if self.select_only is not None:
            ranges = (str(a) if a == b else f"{a}-{b}" for a, b in self.select_only)
            parts.append("so=" + ",".join(ranges))
        return "magnet:?" + "&".join(parts)


def _parse_btih(text: str) -> bytes:
    if len(text) not in (40, 32):
        raise MagnetError(f"btih info-hash must be 40 hex or 32 base32 characters, not {len(text)}")
    try:
        raw = bytes.fromhex(text) if len(text) == 40 else base64.b32decode(text.upper())
    except (ValueError, binascii.Error) as exc:
        raise MagnetError(f"invalid btih info-hash {text!r}") from exc
    if len(raw) != 20:  # fromhex skips spaces and b32decode takes '=' padding: both can yield fewer bytes
        raise MagnetError(f"invalid btih info-hash {text!r}")
    return raw


def _parse_btmh(text: str) -> bytes:
    if not text.lower().startswith(_SHA256_MULTIHASH) or len(text) != 68:
        raise MagnetError("btmh info-hash must be a sha2-256 multihash (1220 + 64 hex digits)")
    try:
        raw = bytes.fromhex(text[4:])
    except ValueError as exc:
        raise MagnetError(f"invalid btmh info-hash {text!r}") from exc
    if len(raw) != 32:  # fromhex skips spaces
        raise MagnetError(f"invalid btmh info-hash {text!r}")
    return raw


def _parse_select(text: str) -> tuple[tuple[int, int], ...]:
    ranges = []
    for item in text.split(","):
        first, _, last = item.partition("-")
        if not item.isascii() or not first.isdigit() or (last and not last.isdigit()) or len(item) > 24:
            raise MagnetError(f"invalid file selection {item!r} in so=")
        start, end = int(first), int(last or first)
        if end < start:
            raise MagnetError(f"invalid file range {item!r} in so=")
        ranges.append((start, end))
    return tuple(ranges)


def parse_peer_address(text: str) -> tuple[str, int]:
    """`host:port` or `[ipv6]:port` into (host, port)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise MagnetError(f"invalid peer address {text!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise MagnetError(f"invalid IPv6 address in {text!r}") from exc
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host or ":" in host:
            raise MagnetError(f"invalid peer address {text!r} (expected HOST:PORT)")
    # ASCII digits only ('²'.isdigit() holds but int() refuses it) and few of them (int() refuses > 4300)
    if not (port.isascii() and port.isdigit()) or len(port) > 5 or not 0 < int(port) < 65536:
        raise MagnetError(f"invalid port in peer address {text!r}")
    return host, int(port)


def format_peer_address(peer: tuple[str, int]) -> str:
    host, port = peer
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
