"""`peerloom get` and `peerloom share`: the commands that run a node of their own (or hand the work to the
daemon that runs for the home)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from peerloom.cli.common import (
    UserError,
    err,
    fail,
    guarded,
    hashing_progress,
    human_size,
    out,
    parse_host_port,
    parse_multiaddr,
    parse_size,
    print_json,
    printable,
    progress_label,
    report_skipped,
    torrent_version,
    transfer_progress,
    usage,
)
from peerloom.cli.options import (
    AllowOption,
    BootstrapOption,
    DhtPortOption,
    EncryptionOption,
    HomeOption,
    HostOption,
    HybridOption,
    NoDaemonOption,
    NoDhtOption,
    NoLsdOption,
    NoMdnsOption,
    PortOption,
    PrivateOption,
    PublicBootstrapOption,
    StatusLines,
    TrackerOption,
    TransportOption,
    V1Option,
    V2Option,
)
from peerloom.cli.running import home_or_default, node_settings, run, sleep_or_stop
from peerloom.cli.via_daemon import get_via_daemon, running_daemon, share_via_daemon
from peerloom.files import write_atomically
from peerloom.torrent.create import scan
from peerloom.torrent.magnet import Magnet

if TYPE_CHECKING:
    from peerloom.codec.multiaddr import Multiaddr
    from peerloom.identity import PeerId
    from peerloom.node import Node
    from peerloom.torrent.swarm import Torrent, TorrentStatus


def parse_peers(values: list[str] | None) -> list[tuple[str, int] | Multiaddr]:
    """HOST:PORT for plain BitTorrent, or a multiaddr (/ip4/…/tcp/…/p2p/…) of the secure layer."""
    return [parse_multiaddr(v, "--peer") if v.startswith("/") else parse_host_port(v, "--peer") for v in values or []]


def parse_allow(values: list[str] | None) -> list[PeerId]:
    from peerloom.identity import PeerId, PeerIdError

    try:
        return [PeerId.from_string(v) for v in values or []]
    except PeerIdError as exc:
        raise UserError(f"--allow takes PeerIds (as `peerloom id` prints them): {exc}") from exc


def announce_listening(node: Node, status_lines: bool, **extra: str) -> None:
    secure = str(node.secure_addrs[0]) if node.secure_addrs else ""
    dht_port = node.dht.port if node.dht is not None else None
    dht = f"DHT on UDP port {dht_port}" if dht_port else "no DHT"
    err.print(f"listening on port {node.port} ({dht}); secure layer at {secure}")
    if status_lines:
        print(json.dumps({"event": "listening", "port": node.port, "dht_port": dht_port, "secure_addr": secure,
                          **extra}), flush=True)


def status_line(st: TorrentStatus) -> str:
    return json.dumps({"event": "status", **asdict(st)})


def get(
    link: Annotated[str, typer.Argument(help="Magnet link or .torrent file.")],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Directory to save into [., or a daemon's download folder].")] = None,
    peer: Annotated[
        list[str] | None, typer.Option("--peer", help="A peer: HOST:PORT, or /ip4/…/tcp/…/p2p/… (secure layer).")
    ] = None,
    port: PortOption = 0,
    listen: HostOption = "0.0.0.0",
    files: Annotated[str | None, typer.Option("--files", help="Only these files (numbers from `info`): 0,2")] = None,
    sequential: Annotated[bool, typer.Option("--sequential", help="Fetch pieces in order (streaming).")] = False,
    seed: Annotated[bool, typer.Option("--seed/--no-seed", help="Keep seeding when done.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write over existing files that are not the torrent's data.")
    ] = False,
    limit_rate: Annotated[str | None, typer.Option("--limit-rate", help="Cap the download rate (bytes/s): 5M")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final status as JSON.")] = False,
    private: PrivateOption = False,
    allow: AllowOption = None,
    home: HomeOption = None,
    status_lines: StatusLines = False,
    bootstrap: BootstrapOption = None,
    public_bootstrap: PublicBootstrapOption = True,
    no_dht: NoDhtOption = False,
    no_lsd: NoLsdOption = False,
    no_mdns: NoMdnsOption = False,
    encryption: EncryptionOption = "prefer",
    dht_port: DhtPortOption = 0,
    transport: TransportOption = "tcp",
    no_daemon: NoDaemonOption = False,
    detach: Annotated[bool, typer.Option("--detach", help="With a daemon: hand it the torrent and return.")] = False,
) -> None:
    """Download a torrent; exits 0 only when every selected byte is verified. With a bare magnet link, peers are
    found through the DHT (and the LAN). When a daemon runs for the home, the torrent is handed to it."""
    peers = usage(lambda: parse_peers(peer))
    settings = usage(lambda: node_settings(no_dht=no_dht, no_lsd=no_lsd, no_mdns=no_mdns, bootstrap=bootstrap,
                                           public_bootstrap=public_bootstrap, dht_port=dht_port,
                                           encryption=encryption, transport=transport))
    allowed = guarded(lambda: parse_allow(allow))
    if private and not any(not isinstance(p, tuple) for p in peers):  # a multiaddr: the secure layer
        fail("--private needs the seeder's secure address: --peer /ip4/HOST/tcp/PORT/p2p/PEERID", 2)
    if allowed and not private:
        fail("--allow goes with --private", 2)
    selected = guarded(lambda: parse_files(files))
    limit = guarded(lambda: parse_size(limit_rate)) if limit_rate else 0
    if not link.lower().startswith("magnet:?") and not Path(link).is_file():
        fail(f"no such torrent file: {link}")
    client = None if no_daemon else running_daemon(home)
    if client is not None:
        if private or sequential or seed or status_lines:
            fail("--private, --sequential, --seed and --status-lines run their own node: add --no-daemon", 2)
        get_via_daemon(client, link, output, peers, selected, limit, as_json, detach, overwrite=overwrite)
        return
    save_to = output or Path(".")
    from peerloom.node import Node  # the node's modules load only for the commands that run one

    async def main(stop: asyncio.Event) -> int:
        async with Node(home_or_default(home), port=port, host=listen, settings=settings) as node:
            torrent = await node.add(
                link, save_to, peers=peers, files=selected, sequential=sequential, overwrite=overwrite,
                allow=allowed if private else None,
            )
            torrent.download_bucket.rate = limit
            announce_listening(node, status_lines)
            await watch(torrent, stop, seed=seed, status_lines=status_lines, quiet=as_json)
            final = torrent.status()
            refused = refusal(torrent, node.identity.peer_id) if torrent.refused_everywhere else None
        if as_json:
            print_json(asdict(final))
        if final.error:
            fail(final.error)
        if refused:
            fail(refused)
        if final.progress < 1.0:
            fail("stopped before the download was complete", 130)
        if not as_json:
            err.print(f"done: {printable(final.name)} ({human_size(final.wanted_bytes)}) verified in "
                      f"{printable(save_to)}")
        return 0

    guarded(lambda: run(main))


def refusal(torrent: Torrent, ours: PeerId) -> str:
    """The one line for a private get that every given peer refused (see `Torrent.refused_everywhere`)."""
    from peerloom.codec.multiaddr import Multiaddr

    keys = sorted({str(addr.peer_id) for addr in torrent.refusals if isinstance(addr, Multiaddr)})
    who = f"peer {keys[0]}" if len(keys) == 1 else f"peers {', '.join(keys)}"
    return (f"{who} refused our key {ours} (not on its allow-list): ask its owner to allow it "
            f"(peerloom share ... --private --allow {ours})")


def parse_files(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--files takes file numbers like 0,2 (got {printable(repr(text))})") from None


async def watch(torrent: Torrent, stop: asyncio.Event, *, seed: bool, status_lines: bool, quiet: bool) -> None:
    """Show progress until done (or, when seeding, until stopped)."""
    progress = transfer_progress()
    progress.disable = quiet or status_lines
    with progress:
        task = progress.add_task(printable(torrent.name), total=None, peers=0)
        while not stop.is_set():
            st = torrent.status()
            if status_lines:
                print(status_line(st), flush=True)
            progress.update(
                task, description=progress_label(st.name, st.state), total=st.wanted_bytes or None,
                completed=st.have_bytes, peers=st.peers,
            )
            if st.error or torrent.refused_everywhere or (st.progress >= 1.0 and st.state == "seeding" and not seed):
                break
            # a download that is not to be seeded ends the moment it completes, not at the next refresh
            done = torrent.finished
            await sleep_or_stop(stop, 0.5, *(() if seed or done.is_set() else (done,)))
    if seed and not stop.is_set() and not torrent.error:
        await seed_until_stopped(torrent, stop, status_lines)


async def seed_until_stopped(torrent: Torrent, stop: asyncio.Event, status_lines: bool) -> None:
    with err.status("") as line:
        while not stop.is_set():
            st = torrent.status()
            if status_lines:
                print(status_line(st), flush=True)
            line.update(Text(  # a str would be read as markup
                f"seeding {printable(st.name)}: {st.peers} peers, up {human_size(int(st.upload_rate))}/s, "
                f"uploaded {human_size(st.uploaded)}"
            ))
            await sleep_or_stop(stop, 1.0)


def share(
    path: Annotated[Path, typer.Argument(help="File or directory to share.")],
    port: PortOption = 0,
    listen: HostOption = "0.0.0.0",
    torrent_out: Annotated[Path | None, typer.Option("--torrent", help="Also write the .torrent here.")] = None,
    tracker: TrackerOption = None,
    v1: V1Option = False,
    v2: V2Option = False,
    hybrid: HybridOption = False,
    private: PrivateOption = False,
    allow: AllowOption = None,
    home: HomeOption = None,
    status_lines: StatusLines = False,
    bootstrap: BootstrapOption = None,
    public_bootstrap: PublicBootstrapOption = True,
    no_dht: NoDhtOption = False,
    no_lsd: NoLsdOption = False,
    no_mdns: NoMdnsOption = False,
    encryption: EncryptionOption = "prefer",
    dht_port: DhtPortOption = 0,
    no_daemon: NoDaemonOption = False,
) -> None:
    """Make a torrent of PATH and seed it until Ctrl-C; prints the magnet link (found through the DHT by others).
    When a daemon runs for the home, it seeds PATH instead."""
    settings = usage(lambda: node_settings(no_dht=no_dht, no_lsd=no_lsd, no_mdns=no_mdns, bootstrap=bootstrap,
                                           public_bootstrap=public_bootstrap, dht_port=dht_port,
                                           encryption=encryption))
    version = torrent_version(v1, v2, hybrid)
    allowed = guarded(lambda: parse_allow(allow))
    if private and not allowed:
        fail("--private needs at least one --allow PEERID (each downloader's `peerloom id`)", 2)
    if allowed and not private:
        fail("--allow goes with --private", 2)
    if not path.exists():
        fail(f"no such file or directory: {path}")
    source = guarded(lambda: scan(path))
    report_skipped(source)
    client = None if no_daemon else running_daemon(home)
    if client is not None:
        if private or tracker or torrent_out or status_lines:
            fail("--private, --tracker, --torrent and --status-lines run their own node: add --no-daemon", 2)
        share_via_daemon(client, path, version)
        return
    from peerloom.node import Node

    async def main(stop: asyncio.Event) -> int:
        async with Node(home_or_default(home), port=port, host=listen, settings=settings) as node:
            total = source.total_length
            with hashing_progress(total) as bar:
                task = bar.add_task(f"hashing {printable(path.name)}", total=total)
                loop = asyncio.get_running_loop()
                torrent = await node.share(
                    path, version=version, trackers=tracker or [], allow=allowed if private else None,
                    progress=lambda n: loop.call_soon_threadsafe(lambda: bar.advance(task, n)),
                )
            meta = torrent.meta
            assert meta is not None
            if torrent_out is not None:
                write_atomically(torrent_out, meta.to_bytes())
            magnet = str(Magnet.from_metainfo(meta))
            announce_listening(node, status_lines, magnet=magnet)
            out.print(magnet)
            err.print(f"seeding {printable(meta.name)} ({human_size(meta.total_length)}) on port {node.port}")
            if private:
                err.print(f"private swarm of {len(allowed)} key(s); they fetch it with:\n  peerloom get '{magnet}' "
                          f"--private --peer {node.secure_addrs[0]}")
            await seed_until_stopped(torrent, stop, status_lines)
        return 0

    guarded(lambda: run(main))


def register(app: typer.Typer) -> None:
    app.command()(get)
    app.command()(share)
