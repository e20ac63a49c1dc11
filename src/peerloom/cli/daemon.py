"""`peerloom daemon` and the commands that manage it: `ls`, `pause`, `resume`, `rm`, `stats`, `limit`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from peerloom.api.runtime import read_runtime
from peerloom.apps.compute.cli import (
    DEFAULT_CPU_HOURS,
    DEFAULT_MEMORY,
    AllowOption,
    CoresOption,
    CpuHoursOption,
    MemoryOption,
    volunteer_limits,
)
from peerloom.cli.common import (
    UserError,
    err,
    fail,
    guarded,
    human_rate,
    human_size,
    out,
    parse_host_port,
    parse_multiaddr,
    parse_size,
    print_json,
    printable,
    usage,
)
from peerloom.cli.options import (
    BootstrapOption,
    DhtPortOption,
    EncryptionOption,
    HomeOption,
    HostOption,
    JsonOption,
    NoDhtOption,
    NoLsdOption,
    NoMdnsOption,
    PortOption,
    PublicBootstrapOption,
)
from peerloom.cli.running import home_or_default, node_settings, run
from peerloom.cli.via_daemon import client_for

DEFAULT_API = "127.0.0.1:7881"


def daemon(
    home: HomeOption = None,
    api: Annotated[str, typer.Option("--api", help="Where the HTTP API and web UI listen, HOST:PORT (port 0: any "
                                                    "free port).")] = DEFAULT_API,
    port: PortOption = 0,
    listen: HostOption = "0.0.0.0",
    save_dir: Annotated[Path | None, typer.Option("--save-dir", help="Where downloads go [HOME/downloads]; the API "
                                                                     "saves nowhere else.")] = None,
    share_root: Annotated[list[Path] | None, typer.Option(
        "--share-root", help="A folder whose files the API may share (repeatable); the download folder always is one, "
                             "nothing else is unless given here.")] = None,
    bootstrap: BootstrapOption = None,
    public_bootstrap: PublicBootstrapOption = True,
    no_dht: NoDhtOption = False,
    no_lsd: NoLsdOption = False,
    no_mdns: NoMdnsOption = False,
    encryption: EncryptionOption = "prefer",
    dht_port: DhtPortOption = 0,
    port_mapping: Annotated[bool, typer.Option(
        "--port-mapping",
        help="Map the BitTorrent, DHT and secure ports on the gateway (NAT-PMP or UPnP-IGD); removed on exit.")
    ] = False,
    relay_server: Annotated[bool, typer.Option(
        "--relay-server", help="Relay for other nodes (Circuit Relay v2 hop: reservations and limited circuits).")]
    = False,
    relay: Annotated[list[str] | None, typer.Option(
        "--relay", help="Hold a reservation on this relay, MULTIADDR ending in /p2p/RELAY (repeatable): peers reach "
                        "this node at MULTIADDR/p2p-circuit/p2p/US.")] = None,
    no_hole_punch: Annotated[bool, typer.Option(
        "--no-hole-punch", help="Keep relayed connections relayed (no DCUtR upgrade to a direct one).")] = False,
    relay_circuit_bytes: Annotated[str, typer.Option(
        "--relay-circuit-bytes", help="With --relay-server: bytes one relayed connection may carry each way "
                                      "(K = 1024; 0: no limit).")] = "128K",
    relay_circuit_seconds: Annotated[int, typer.Option(
        "--relay-circuit-seconds", min=0, help="With --relay-server: seconds one relayed connection may last "
                                               "(0: no limit).")] = 120,
    volunteer: Annotated[bool, typer.Option(
        "--volunteer", help="Run other nodes' compute work units in the sandbox, within --cores, --memory, "
                            "--cpu-hours and --allow (as `compute volunteer`).")] = False,
    cores: CoresOption = 0,
    memory: MemoryOption = DEFAULT_MEMORY,
    cpu_hours: CpuHoursOption = DEFAULT_CPU_HOURS,
    allow: AllowOption = None,
) -> None:
    """Run this node as a service: every torrent it manages, an HTTP API and a web UI, until SIGTERM/Ctrl-C.
    Torrents (and their paused state, file selection and limits) come back on the next start. Paths given through
    the API must lie inside the download folder (to save) or a share root (to share), after links and `..`."""
    home = home_or_default(home).expanduser().resolve()
    share_roots = [root.expanduser().resolve() for root in share_root or []]
    for root in share_roots:
        if not root.is_dir():
            fail(f"--share-root {printable(root)}: not a folder", 2)
    api_host, api_port = usage(lambda: parse_host_port(api, "--api", zero="any free port"))
    settings = usage(lambda: node_settings(no_dht=no_dht, no_lsd=no_lsd, no_mdns=no_mdns, bootstrap=bootstrap,
                                           public_bootstrap=public_bootstrap, dht_port=dht_port,
                                           encryption=encryption))
    settings.port_mapping = port_mapping
    settings.relay_server = relay_server
    settings.relays = [str(usage(lambda r=r: parse_multiaddr(r, "--relay"))) for r in relay or []]
    settings.hole_punch = not no_hole_punch
    settings.relay_circuit_bytes = usage(lambda: _size(relay_circuit_bytes, "--relay-circuit-bytes"))
    settings.relay_circuit_seconds = relay_circuit_seconds
    if volunteer:
        volunteer_limits(settings, cores, memory, cpu_hours, allow)
    elif allow or cores or memory != DEFAULT_MEMORY or cpu_hours != DEFAULT_CPU_HOURS:
        fail("--cores, --memory, --cpu-hours and --allow are a volunteer's limits: add --volunteer", 2)
    running = read_runtime(home)
    if running is not None:
        fail(f"a daemon (pid {running.pid}) already runs for {home}: its API is at {running.api}")

    def ready(runtime: dict[str, Any], token: str) -> None:
        err.print(f"peerloom daemon for {printable(home)}: BitTorrent port {runtime['port']}, "
                  f"DHT {runtime['dht_port'] or 'off'}")
        err.print(f"API at {runtime['api']}/api/v1 (token in {printable(home / 'api.token')})")
        err.print(f"web UI: {runtime['api']}/#token={token}")

    async def main(stop: asyncio.Event) -> int:
        from peerloom.api.runner import run_daemon  # the web stack loads only for the daemon itself

        await run_daemon(home, api_host=api_host, api_port=api_port, port=port, listen=listen, settings=settings,
                         save_dir=(save_dir or home / "downloads").expanduser().resolve(), share_roots=share_roots,
                         stop=stop, ready=ready)
        err.print("daemon stopped; state saved")
        return 0

    guarded(lambda: run(main))


def _size(text: str, option: str) -> int:
    try:
        return parse_size(text)
    except UserError as exc:
        raise UserError(f"{option}: {exc}") from None


def _rate(value: float) -> str:
    return f"{human_size(value)}/s" if value >= 1 else "-"


def list_torrents(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """The daemon's torrents: name, size, progress, rates, peers, state."""
    client = client_for(home)
    torrents = guarded(lambda: client.call("GET", "/api/v1/torrents"))["torrents"]
    if as_json:
        print_json(torrents)
        return
    if torrents:
        out.print(torrents_table(torrents))
    else:
        err.print("no torrents (add one with `peerloom get LINK` or `peerloom share PATH`)")


def torrents_table(torrents: list[dict[str, Any]]) -> Table:
    """`peerloom ls`'s table of the daemon's torrent summaries."""
    table = Table(box=None, header_style="bold")
    for column, justify in (("ID", "left"), ("Name", "left"), ("Size", "right"), ("Done", "right"),
                            ("Down", "right"), ("Up", "right"), ("Peers", "right"), ("State", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for t in torrents:
        table.add_row(printable(t["id"][:8]), printable(t["name"]), human_size(t["size"]),
                      f"{100 * t['progress']:.1f}%", _rate(t["download_rate"]), _rate(t["upload_rate"]),
                      str(t["peers"]), printable(t["state"] + (f": {t['error']}" if t["error"] else "")))
    return table


IdArgument = Annotated[str, typer.Argument(help="Torrent id (its info-hash) or the first characters of it.")]


def pause(torrent_id: IdArgument, home: HomeOption = None) -> None:
    """Pause a torrent of the daemon (no peers, no transfer) until `peerloom resume`."""
    t = guarded(lambda: client_for(home).call("POST", f"/api/v1/torrents/{torrent_id}/pause"))["torrent"]
    err.print(f"paused {printable(t['name'])} ({printable(t['id'][:8])})")


def resume(torrent_id: IdArgument, home: HomeOption = None) -> None:
    """Resume a paused torrent of the daemon."""
    t = guarded(lambda: client_for(home).call("POST", f"/api/v1/torrents/{torrent_id}/resume"))["torrent"]
    err.print(f"resumed {printable(t['name'])} ({printable(t['id'][:8])}): {printable(t['state'])}")


def remove(
    torrent_id: IdArgument,
    home: HomeOption = None,
    delete_data: Annotated[bool, typer.Option("--delete-data", help="Also delete its downloaded files.")] = False,
    delete_source: Annotated[bool, typer.Option(
        "--delete-source", help="Also delete the files of a torrent made by `share` (your own, not a download).")]
    = False,
) -> None:
    """Remove a torrent from the daemon (its files stay unless --delete-data; a shared path's files stay unless
    --delete-source)."""
    query = "?delete_data=1&delete_source=1" if delete_source else "?delete_data=1" if delete_data else ""
    removed = guarded(lambda: client_for(home).call("DELETE", f"/api/v1/torrents/{torrent_id}{query}"))["removed"]
    err.print(f"removed {printable(removed[:8])}" + (" and its data" if query else ""))


def stats(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """The daemon's node: PeerId, ports, DHT size, rates, totals, limits."""
    info = guarded(lambda: client_for(home).call("GET", "/api/v1/node"))
    if as_json:
        print_json(info)
        return
    limits = info["limits"]
    lines = [
        ("PeerId", info["peer_id"]),
        ("BitTorrent port", str(info["port"])),
        ("secure layer", ", ".join(info["listen_addrs"]) or "-"),
        ("DHT", f"port {info['dht_port']}, {info['dht_nodes']} nodes" if info["dht_port"] else "off"),
        ("torrents", str(info["torrents"])),
        ("rates", f"down {_rate(info['download_rate'])}, up {_rate(info['upload_rate'])}"),
        ("totals", f"downloaded {human_size(info['downloaded'])}, uploaded {human_size(info['uploaded'])}"),
        ("limits", f"down {human_rate(limits['download'])}, up {human_rate(limits['upload'])}"),
        ("uptime", time.strftime("%H:%M:%S", time.gmtime(info["uptime"]))),
    ]
    for key, value in lines:
        out.print(f"{key:>16}  {printable(value)}")


def limit(
    download: Annotated[str | None, typer.Option("--down", help="Download limit, bytes/s (K = 1024), 0: unlimited: "
                                                                 "5M, 1.5M")] = None,
    upload: Annotated[str | None, typer.Option("--up", help="Upload limit, bytes/s (K = 1024), 0: unlimited: 1M")]
    = None,
    torrent_id: Annotated[str | None, typer.Option("--torrent", help="Limit this torrent only.")] = None,
    home: HomeOption = None,
) -> None:
    """Set the daemon's rate limits, for the whole node or one torrent."""
    body = {k: guarded(lambda v=v: parse_size(v)) for k, v in (("download", download), ("upload", upload)) if v}
    if not body:
        fail("give --down and/or --up", 2)
    path = f"/api/v1/torrents/{torrent_id}/limits" if torrent_id else "/api/v1/limits"
    answer = guarded(lambda: client_for(home).call("PUT", path, body))
    limits = answer["torrent"]["limits"] if torrent_id else answer["limits"]
    err.print(f"limits now: down {human_rate(limits['download'])}, up {human_rate(limits['upload'])}")


def register(app: typer.Typer) -> None:
    app.command()(daemon)
    app.command("ls")(list_torrents)
    app.command()(pause)
    app.command()(resume)
    app.command("rm")(remove)
    app.command()(stats)
    app.command()(limit)
