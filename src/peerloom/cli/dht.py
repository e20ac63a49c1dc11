"""`peerloom dht ...`: the Mainline DHT from the command line, through a short-lived DHT node of this process."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from peerloom.cli.common import (
    UserError,
    err,
    guarded,
    out,
    parse_bootstrap,
    parse_host_port,
    print_json,
    printable,
    usage,
)
from peerloom.cli.options import BootstrapOption, JsonOption, PublicBootstrapOption, address_option, port_option
from peerloom.cli.running import run
from peerloom.torrent.magnet import Magnet, MagnetError, format_peer_address

if TYPE_CHECKING:
    from peerloom.dht.driver import Dht

# This command's own DHT node: a UDP port, and a home only when asked (the node's --home has a default)
UdpPortOption = Annotated[int, port_option("--port", "UDP port of this command's DHT node", zero="any free port")]
ListenOption = Annotated[str, address_option("--listen", "Address this command's DHT node binds.")]
TableHomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Use (and update) the routing table saved in this node home [default: none kept]."),
]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Give up after this many seconds.")]


def parse_info_hash(text: str) -> bytes:
    """A swarm's 20-byte DHT key from 40 hex digits, 32 base32 letters, or a magnet link (its v1 hash, else the first
    20 bytes of its v2 hash, as BEP 52 announces it)."""
    if text[:8].lower() == "magnet:?":
        try:
            magnet = Magnet.parse(text)
        except MagnetError as exc:
            raise UserError(str(exc)) from exc
        return magnet.info_hash_v1 or (magnet.info_hash_v2 or b"")[:20]
    try:
        raw = bytes.fromhex(text) if len(text) == 40 else base64.b32decode(text.upper()) if len(text) == 32 else b""
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 20:
        raise UserError(f"not an info-hash (40 hex digits, 32 base32 letters or a magnet link): "
                        f"{printable(repr(text))}")
    return raw


def bootstrap_list(bootstrap: list[str] | None, public_bootstrap: bool) -> list[tuple[str, int]]:
    from peerloom.dht.driver import PUBLIC_BOOTSTRAP  # the DHT loads only for the commands that use it

    nodes = parse_bootstrap(bootstrap)
    return nodes or (list(PUBLIC_BOOTSTRAP) if public_bootstrap else [])


async def short_lived(
    port: int, listen: str, bootstrap: list[tuple[str, int]], home: Path | None, timeout: float
) -> Dht:
    """This command's own DHT node, started and bootstrapped (within `timeout`)."""
    from peerloom.dht.driver import Dht

    dht = Dht(state=home / "state.sqlite" if home is not None else None, save_interval=0)
    await dht.start(port, listen, bootstrap=bootstrap)
    if bootstrap or dht.table_size:
        ready = await dht.wait_ready(timeout)
        if not ready:
            err.print(f"the bootstrap lookup did not finish in {timeout:.0f} s; going on with "
                      f"{dht.table_size} nodes")
    return dht


def ping(
    address: Annotated[str, typer.Argument(help="The DHT node, HOST:PORT (UDP).")],
    port: UdpPortOption = 0,
    listen: ListenOption = "0.0.0.0",
    timeout: TimeoutOption = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Ping a DHT node and print its node id and the round-trip time."""
    target = usage(lambda: parse_host_port(address, "ADDRESS"))

    async def main(stop: asyncio.Event) -> int:
        from peerloom.dht.driver import Dht

        async with Dht() as dht:
            await dht.start(port, listen)
            started = time.monotonic()
            node_id = await dht.ping(target, timeout=timeout)
            rtt = time.monotonic() - started
        if as_json:
            print_json({"address": address, "node_id": node_id.hex(), "rtt": rtt})
        else:
            out.print(f"pong from {printable(address)}: node id {node_id.hex()} in {rtt * 1000:.1f} ms")
        return 0

    guarded(lambda: run(main))


def peers(
    info_hash: Annotated[str, typer.Argument(help="Info-hash (hex or base32) or a magnet link.")],
    bootstrap: BootstrapOption = None,
    public_bootstrap: PublicBootstrapOption = True,
    port: UdpPortOption = 0,
    listen: ListenOption = "0.0.0.0",
    home: TableHomeOption = None,
    timeout: TimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Join the DHT, look up a swarm's peers (get_peers) and print them, one HOST:PORT a line."""
    key = guarded(lambda: parse_info_hash(info_hash))
    nodes = usage(lambda: bootstrap_list(bootstrap, public_bootstrap))

    async def main(stop: asyncio.Event) -> int:
        dht = await short_lived(port, listen, nodes, home, timeout)
        try:
            if not dht.table_size:
                raise UserError("no DHT node answered: give a reachable --bootstrap HOST:PORT")
            started = time.monotonic()
            found = await dht.get_peers(key, timeout=timeout)
            elapsed = time.monotonic() - started
            table = dht.table_size
        finally:
            await dht.close()
        if as_json:
            print_json({"info_hash": key.hex(), "peers": [format_peer_address(p) for p in found],
                        "seconds": elapsed, "table_size": table})
            return 0
        for peer in found:
            out.print(printable(format_peer_address(peer)))
        err.print(f"{len(found)} peers of {key.hex()} in {elapsed:.1f} s (our routing table: {table} nodes)")
        return 0

    guarded(lambda: run(main))


def stats(
    bootstrap: BootstrapOption = None,
    public_bootstrap: PublicBootstrapOption = True,
    port: UdpPortOption = 0,
    listen: ListenOption = "0.0.0.0",
    home: TableHomeOption = None,
    timeout: TimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Bootstrap a short-lived DHT node in this process and show its figures (routing table, buckets, queries in
    and out). These are this command's own node's, not those of a `share`/`get` running elsewhere."""
    nodes = usage(lambda: bootstrap_list(bootstrap, public_bootstrap))

    async def main(stop: asyncio.Event) -> int:
        dht = await short_lived(port, listen, nodes, home, timeout)
        try:
            figures = dht.stats()
        finally:
            await dht.close()
        if as_json:
            print_json(figures)
            return 0
        err.print("figures of this process's own short-lived DHT node, just after its bootstrap:")
        show_stats(figures)
        return 0

    guarded(lambda: run(main))


def show_stats(figures: dict[str, Any]) -> None:
    out.print(f"node id: {figures['node_id']}\nUDP port: {figures['port']}")
    for family in ("ipv4", "ipv6"):
        fam = figures.get(family)
        if fam is None:
            continue
        queries_in = fam["queries_in"]
        out.print(
            f"{family}: {fam['table_size']} nodes in {fam['buckets']} buckets ({fam['good']} good, "
            f"{fam['questionable']} questionable, {fam['bad']} bad, {fam['replacements']} waiting); "
            f"packets in {fam['packets_in']} / out {fam['packets_out']}; queries in "
            f"{sum(queries_in.values())} ({', '.join(f'{k} {v}' for k, v in sorted(queries_in.items())) or 'none'}); "
            f"responses in {fam['responses_in']}, timeouts {fam['timeouts']}, malformed {fam['malformed']}"
        )


def register(app: typer.Typer) -> None:
    dht_app = typer.Typer(
        help="The Mainline DHT: ping a node, find a swarm's peers, show a DHT node's figures. Each command runs its "
             "own short-lived DHT node in this process.",
        no_args_is_help=True,
        rich_markup_mode=None,  # as the main app's: help texts are plain
    )
    dht_app.command("ping")(ping)
    dht_app.command("peers")(peers)
    dht_app.command("stats")(stats)
    app.add_typer(dht_app, name="dht")
