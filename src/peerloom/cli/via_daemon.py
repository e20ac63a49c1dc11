"""Talking to the daemon that runs for a home: finding it, and the hand-off of `get` and `share` to it (the torrent is
the daemon's from then on; `get` follows its progress)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peerloom.api.runtime import read_runtime
from peerloom.cli.common import (
    err,
    fail,
    guarded,
    human_size,
    out,
    print_json,
    printable,
    progress_label,
    transfer_progress,
)
from peerloom.cli.running import home_or_default
from peerloom.torrent.magnet import format_peer_address

if TYPE_CHECKING:
    from peerloom.api.client import DaemonClient

FOLLOW_EVERY = 0.5  # seconds between progress polls of `get` through the daemon
SHARE_TIMEOUT = 6 * 3600.0  # the daemon answers a share once the path is hashed: big folders take a while


def running_daemon(home: Path | None) -> DaemonClient | None:
    """A client of the daemon running for the home, if one does. (The HTTP client loads only here, not for
    `--help`.)"""
    from peerloom.api.client import DaemonClient

    info = read_runtime(home_or_default(home).expanduser().resolve())
    return None if info is None else DaemonClient(info)


def client_for(home: Path | None) -> DaemonClient:
    """The running daemon of the home, or a one-line error saying how to start one."""
    client = running_daemon(home)
    if client is None:
        resolved = home_or_default(home).expanduser().resolve()
        fail(f"no daemon runs for {resolved}: start one with `peerloom daemon --home {resolved}`")
    return client


def get_via_daemon(client: DaemonClient, link: str, output: Path | None, peers: list[Any],
                   selected: list[int] | None, limit: int, as_json: bool, detach: bool, *,
                   overwrite: bool = False) -> None:
    """`peerloom get` while a daemon runs for the home: hand the torrent to it, then follow it to the end (unless
    `detach`); Ctrl-C stops following, not the download. Without `output` it goes to the daemon's download folder
    (the daemon saves nowhere outside it)."""
    if any(not isinstance(p, tuple) for p in peers):
        fail("secure-layer peers (--peer /ip4/…/p2p/…) are not taken through the daemon; add --no-daemon", 2)
    fields = {} if output is None else {"save_path": str(output.expanduser().resolve())}
    if link.lower().startswith("magnet:?"):
        extra = "".join(f"&x.pe={format_peer_address(peer)}" for peer in peers)
        added = guarded(lambda: client.call("POST", "/api/v1/torrents",
                                            {"magnet": link + extra, **fields, "overwrite": overwrite}))
    else:
        if peers:
            fail("--peer goes with magnet links when a daemon runs (or add --no-daemon)", 2)
        data = guarded(lambda: Path(link).read_bytes())
        added = guarded(lambda: client.upload("/api/v1/torrents", Path(link).name, data,
                                              {**fields, "overwrite": "1" if overwrite else "0"}))
    torrent = added["torrent"]
    tid, save_path = torrent["id"], torrent["save_path"]
    if selected is not None:
        detail = guarded(lambda: client.call("GET", f"/api/v1/torrents/{tid}"))
        if detail["files"]:
            priorities = [1 if f["index"] in selected else 0 for f in detail["files"]]
            guarded(lambda: client.call("PUT", f"/api/v1/torrents/{tid}/files", {"priorities": priorities}))
        else:
            err.print("note: --files applies once the metadata has arrived; set it in the web UI")
    if limit:
        guarded(lambda: client.call("PUT", f"/api/v1/torrents/{tid}/limits", {"download": limit}))
    err.print(f"added to the daemon at {client.info.api}: {printable(torrent['name'])} ({printable(tid[:8])}) "
              f"into {printable(save_path)}")
    if not detach:
        try:
            torrent = follow(client, tid, quiet=as_json)
        except KeyboardInterrupt:
            fail("no longer following; the daemon keeps downloading (see `peerloom ls`)", 130)
    if as_json:
        print_json(torrent)
    elif not detach:
        err.print(f"done: {printable(torrent['name'])} ({human_size(torrent['size'])}) verified in "
                  f"{printable(save_path)}")


def follow(client: DaemonClient, tid: str, *, quiet: bool) -> dict[str, Any]:
    """Show the daemon's progress on a torrent until every selected byte is verified; its last summary."""
    progress = transfer_progress()
    progress.disable = quiet
    with progress:
        task = progress.add_task(printable(tid[:8]), total=None, peers=0)
        while True:
            t = guarded(lambda: client.call("GET", f"/api/v1/torrents/{tid}"))["torrent"]
            progress.update(task, description=progress_label(t["name"], t["state"]), total=t["size"] or None,
                            completed=t["have_bytes"], peers=t["peers"])
            if t["error"]:
                fail(t["error"])
            if t["progress"] >= 1.0 and t["state"] in ("seeding", "paused"):
                return t
            time.sleep(FOLLOW_EVERY)


def share_via_daemon(client: DaemonClient, path: Path, version: str) -> None:
    """`peerloom share` while a daemon runs for the home: the daemon hashes and seeds the path."""
    from peerloom.api.client import DaemonClient

    err.print(f"asking the daemon at {client.info.api} to share {printable(path)} (it hashes it first)")
    hashing = DaemonClient(client.info, timeout=SHARE_TIMEOUT)
    torrent = guarded(lambda: hashing.call("POST", "/api/v1/torrents",
                                          {"path": str(path.expanduser().resolve()), "version": version}))["torrent"]
    out.print(printable(torrent["magnet"]))
    err.print(f"the daemon seeds {printable(torrent['name'])} ({human_size(torrent['size'])}), "
              f"id {printable(torrent['id'][:8])}")
