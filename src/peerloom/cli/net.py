"""`peerloom id` and `peerloom ping`: the node's identity on the secure peer layer, and reaching another node."""

from __future__ import annotations

import asyncio
import statistics
from typing import Annotated

import typer

from peerloom.cli.common import err, fail, guarded, out, parse_multiaddr, print_json, printable, usage
from peerloom.cli.options import HomeOption, JsonOption, port_option
from peerloom.cli.running import home_or_default, run


def show_id(
    home: HomeOption = None,
    port: Annotated[int | None, port_option("--port", "Also show the addresses for this secure-layer port.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print this node's PeerId (created on first use, kept in the home) and its addresses."""
    from peerloom.identity import Identity

    home_dir = home_or_default(home)
    identity = guarded(lambda: Identity.load_or_create(home_dir))
    peer_id = identity.peer_id
    addrs = [f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}"] if port else []
    if as_json:
        print_json({"peer_id": str(peer_id), "cid": peer_id.to_cid(), "addrs": addrs})
        return
    out.print(str(peer_id))
    err.print(f"as a CID: {peer_id.to_cid()}\nkey file: {printable(home_dir / 'identity.key')}")
    for addr in addrs:
        err.print(f"listen address: {addr}")
    if not addrs:
        err.print("listen addresses are chosen when a node starts (`share`/`get` print them)")


def ping(
    address: Annotated[str, typer.Argument(help="Multiaddr of the node: /ip4/HOST/tcp/PORT/p2p/PEERID")],
    count: Annotated[int, typer.Option("--count", "-c", help="How many pings.")] = 4,
    home: HomeOption = None,
) -> None:
    """Connect to a node over the secure layer (Noise + yamux), ping it and show who it says it is."""
    target = usage(lambda: parse_multiaddr(address, "ADDRESS"))
    if count < 1:
        fail("--count must be at least 1", 2)
    home_dir = home_or_default(home)

    async def main(stop: asyncio.Event) -> int:
        from peerloom.identity import Identity
        from peerloom.net.host import Host

        identity = await asyncio.to_thread(Identity.load_or_create, home_dir)
        async with Host(identity) as host:
            conn = await host.connect(target)
            assert conn.remote_peer is not None
            rtts = []
            for _ in range(count):
                rtt = (await host.ping(conn.remote_peer))[0]
                rtts.append(rtt)
                out.print(f"pong from {conn.remote_peer}: {rtt * 1000:.2f} ms")
                if stop.is_set():
                    break
            info = await host.identify(conn.remote_peer)
            err.print(  # the agent and protocols are the other node's words
                f"{len(rtts)} pings, median {statistics.median(rtts) * 1000:.2f} ms; "
                f"agent {printable(info.agent_version or '?')}; protocols: {printable(', '.join(info.protocols))}"
            )
        return 0

    guarded(lambda: run(main))


def register(app: typer.Typer) -> None:
    app.command("id")(show_id)
    app.command()(ping)
