"""`peerloom id` and `peerloom ping`: the node's identity on the secure peer layer, and reaching another node."""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path
from typing import Annotated

import typer

from peerloom.cli import app, err, fail, guarded, out
from peerloom.cli_transfer import HomeOption, run
from peerloom.codec.multiaddr import Multiaddr, MultiaddrError
from peerloom.identity import Identity
from peerloom.node import default_home


@app.command("id")
def show_id(
    home: HomeOption = None,
    port: Annotated[int, typer.Option("--port", help="Also show the addresses for this secure-layer port.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print this node's PeerId (created on first use, kept in the home) and its addresses."""
    home_dir = Path(home) if home is not None else default_home()
    identity = guarded(lambda: Identity.load_or_create(home_dir))
    peer_id = identity.peer_id
    addrs = [f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}"] if port else []
    if as_json:
        out.print_json(json.dumps({"peer_id": str(peer_id), "cid": peer_id.to_cid(), "addrs": addrs}))
        return
    out.print(str(peer_id), highlight=False)
    err.print(f"as a CID: {peer_id.to_cid()}\nkey file: {home_dir / 'identity.key'}", highlight=False)
    for addr in addrs:
        err.print(f"listen address: {addr}", highlight=False)
    if not addrs:
        err.print("listen addresses are chosen when a node starts (`share`/`get` print them)", highlight=False)


@app.command()
def ping(
    address: Annotated[str, typer.Argument(help="Multiaddr of the node: /ip4/HOST/tcp/PORT/p2p/PEERID")],
    count: Annotated[int, typer.Option("--count", "-c", help="How many pings.")] = 4,
    home: HomeOption = None,
) -> None:
    """Connect to a node over the secure layer (Noise + yamux), ping it and show who it says it is."""
    try:
        target = Multiaddr(address)
    except MultiaddrError as exc:
        fail(f"not a multiaddr: {exc}")
    if count < 1:
        fail("--count must be at least 1", 2)
    home_dir = Path(home) if home is not None else default_home()

    async def main(stop: asyncio.Event) -> int:
        from peerloom.net.host import Host

        identity = await asyncio.to_thread(Identity.load_or_create, home_dir)
        async with Host(identity) as host:
            conn = await host.connect(target)
            assert conn.remote_peer is not None
            rtts = []
            for _ in range(count):
                rtt = (await host.ping(conn.remote_peer))[0]
                rtts.append(rtt)
                out.print(f"pong from {conn.remote_peer}: {rtt * 1000:.2f} ms", highlight=False)
                if stop.is_set():
                    break
            info = await host.identify(conn.remote_peer)
            err.print(
                f"{len(rtts)} pings, median {statistics.median(rtts) * 1000:.2f} ms; "
                f"agent {info.agent_version or '?'}; protocols: {', '.join(info.protocols)}",
                highlight=False,
            )
        return 0

    guarded(lambda: run(main))
