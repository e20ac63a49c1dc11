"""A torrent's lifecycle states and the status snapshot it reports."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.Enum):
    METADATA = "fetching metadata"
    CHECKING = "checking"
    DOWNLOADING = "downloading"
    SEEDING = "seeding"
    STOPPED = "stopped"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class WebSeedStatus:
    """One web seed (BEP 19) of a torrent, as its status shows it."""

    url: str
    state: str  # "active", "backing off" or "dropped"
    downloaded: int  # bytes of pieces from it that passed their hash check
    failures: int  # failed requests in a row
    hash_failures: int
    error: str | None  # its last failure, or why it was dropped


@dataclass(frozen=True, slots=True)
class TorrentStatus:
    """A snapshot for progress bars, `--json` output and the API."""

    name: str
    info_hash: str
    state: str
    progress: float  # of the selected data, 0..1
    wanted_bytes: int
    have_bytes: int
    download_rate: float
    upload_rate: float
    downloaded: int  # payload bytes received this session (incl. wasted)
    uploaded: int
    wasted: int
    hash_failures: int
    peers: int
    seeds: int
    banned: int
    snubs: int
    checked_pieces: int
    error: str | None
    paused: bool = False
    first_peer_after: float | None = None  # seconds from the start to the first connected peer (discovery time)
    web_seeds: tuple[WebSeedStatus, ...] = ()
