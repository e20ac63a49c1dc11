"""A libtorrent session on loopback, as a reference peer for interop tests and benchmarks.

uTP, DHT, LSD, UPnP and NAT-PMP are off (uTP crawls on loopback; the rest would leave loopback). DHT tests turn the
DHT on with `loopback_dht_settings`, which points it at loopback nodes only (never the public routers).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libtorrent as lt

LOOPBACK_SETTINGS: dict[str, Any] = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "allow_multiple_connections_per_ip": True,
    "alert_mask": 0,
    "user_agent": "libtorrent-interop",
}


DHT_ALERTS = int(
    lt.alert.category_t.dht_notification | lt.alert.category_t.dht_operation_notification
    | lt.alert.category_t.error_notification
)


def loopback_dht_settings(bootstrap: list[tuple[str, int]]) -> dict[str, Any]:
    """Settings for a DHT that joins through `bootstrap` (loopback nodes) and accepts many nodes on one IP."""
    return {
        "enable_dht": True,
        "dht_bootstrap_nodes": ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                                        for host, port in bootstrap),
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "alert_mask": DHT_ALERTS,
    }


def ed25519_secret_key(seed: bytes) -> bytes:
    """libtorrent's 64-byte form of an Ed25519 private key (its ref10 code keeps the expanded key: SHA-512 of the
    seed, clamped), as `dht_put_mutable_item` wants it."""
    expanded = bytearray(hashlib.sha512(seed).digest())
    expanded[0] &= 248
    expanded[31] &= 63
    expanded[31] |= 64
    return bytes(expanded)


class LibtorrentPeer:
    """One libtorrent session holding torrents; `port` is where it listens on 127.0.0.1."""

    def __init__(self, **settings: Any) -> None:
        self.session = lt.session({**LOOPBACK_SETTINGS, **settings})
        self.handles: list[Any] = []

    @property
    def port(self) -> int:
        return int(self.session.listen_port())

    def add(self, torrent: bytes | str, save_path: Path, *, seed_mode: bool = False, paused: bool = False) -> Any:
        """Add a torrent (bytes of a .torrent file, or a magnet link) saving into `save_path`."""
        if isinstance(torrent, str):
            params = lt.parse_magnet_uri(torrent)
        else:
            params = lt.add_torrent_params()
            params.ti = lt.torrent_info(lt.bdecode(torrent))
        params.save_path = str(save_path)
        if seed_mode:
            params.flags |= lt.torrent_flags.seed_mode
        if paused:
            params.flags |= lt.torrent_flags.paused
        params.flags &= ~lt.torrent_flags.auto_managed
        if not paused:
            params.flags &= ~lt.torrent_flags.paused  # set by default in add_torrent_params
        handle = self.session.add_torrent(params)
        self.handles.append(handle)
        return handle

    async def wait_seeding(self, handle: Any, timeout: float = 60.0) -> None:
        """Wait (without blocking the event loop) until libtorrent has checked the data and seeds it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if handle.status().is_seeding:
                return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"libtorrent did not reach seeding: {handle.status().state}")

    async def wait_finished(self, handle: Any, timeout: float = 120.0) -> None:
        """Wait until a download holds every wanted piece."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = handle.status()
            if status.is_finished or status.is_seeding:
                return
            await asyncio.sleep(0.05)
        status = handle.status()
        raise TimeoutError(f"libtorrent download stuck at {status.progress:.1%} with {status.num_peers} peers")

    async def wait_alert(self, kind: type, match: Callable[[Any], bool] = lambda alert: True,
                         timeout: float = 20.0) -> Any:
        """The first alert of type `kind` that `match`es (other alerts popped meanwhile are dropped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for alert in self.session.pop_alerts():
                if isinstance(alert, kind) and match(alert):
                    return alert
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no {kind.__name__} from libtorrent in {timeout:.0f} s")

    def connect(self, handle: Any, port: int, host: str = "127.0.0.1") -> None:
        handle.connect_peer((host, port))

    def close(self) -> None:
        for handle in self.handles:
            self.session.remove_torrent(handle)
        self.handles.clear()
        self.session.pause()
        del self.session

    def __enter__(self) -> LibtorrentPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
