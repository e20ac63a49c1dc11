"""`peerloom peers` and `peerloom find PEERID`: the peer store of a home, and finding where a peer listens from its
PeerId alone (its signed peer record in the DHT, BEP 44). Both go through the daemon of the home when one runs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from peerloom.cli.common import UserError, err, fail, guarded, out, parse_multiaddr, print_json, printable, usage
from peerloom.cli.options import (
    BootstrapOption,
    HomeOption,
    HostOption,
    JsonOption,
    NoDaemonOption,
    PublicBootstrapOption,
)
from peerloom.cli.running import home_or_default, node_settings, run
from peerloom.cli.via_daemon import running_daemon

if TYPE_CHECKING:
    from peerloom.codec.multiaddr import Multiaddr
    from peerloom.identity import PeerId
    from peerloom.node import Node

FIND_TIMEOUT = 20.0
IDENTIFY_WAIT = 5.0


def parse_peer_id(text: str) -> PeerId:
    from peerloom.identity import PeerId, PeerIdError

    try:
        return PeerId.from_string(text)
    except PeerIdError as exc:
        raise UserError(f"not a PeerId (as `peerloom id` prints them): {printable(repr(text))}: {exc}") from None


def peers(home: HomeOption = None, as_json: JsonOption = False, no_daemon: NoDaemonOption = False) -> None:
    """List the peers this home's node knows: their addresses (with where each was learned and how long ago), the
    protocols and agent they announced, when they were last seen, their dial failures."""
    client = None if no_daemon else running_daemon(home)
    if client is not None:
        known = guarded(lambda: client.call("GET", "/api/v1/peers"))["peers"]
    else:
        known = guarded(lambda: stored_peers(home_or_default(home)))
    if as_json:
        print_json({"peers": known})
        return
    for peer in known:
        show_peer(peer)
    err.print(f"{len(known)} peers known")


def stored_peers(home: Path) -> list[dict[str, Any]]:
    """The peer store saved in the home (nothing when the home has no state yet)."""
    from peerloom.discovery.peerstore import PeerStore
    from peerloom.state import State

    path = home / "state.sqlite"
    if not path.exists():
        return []
    state = State(path)
    try:
        now = time.time()
        return [p.to_json(now) for p in PeerStore(state).all()]
    finally:
        state.close()


def show_peer(peer: dict[str, Any]) -> None:
    now = time.time()
    status = "connected" if peer["connected"] else f"last seen {age(now - peer['last_seen'])} ago"
    agent = f", agent {printable(peer['agent'])}" if peer["agent"] else ""
    failures = f", {peer['failures']} failed dials" if peer["failures"] else ""
    out.print(f"{printable(peer['peer_id'])}  ({status}{agent}{failures})")
    for addr in peer["addrs"]:
        retry = f", retry in {age(addr['retry_in'])}" if addr["retry_in"] else ""
        out.print(f"  {printable(addr['addr'])}  {addr['source']}, {age(addr['age'])} ago{retry}")
    if peer["protocols"]:
        out.print(f"  protocols: {printable(', '.join(peer['protocols']))}")


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def find(
    peer_id: Annotated[str, typer.Argument(help="The PeerId to find (12D3KooW... or its CID form).")],
    bootstrap: BootstrapOption = None,
    public_bootstrap: PublicBootstrapOption = True,
    peer: Annotated[
        list[str] | None, typer.Option("--peer", help="A secure-layer peer to connect to first: /ip4/…/tcp/…/p2p/…")
    ] = None,
    listen: HostOption = "0.0.0.0",
    home: HomeOption = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Give up the DHT lookup after this many seconds.")] = (
        FIND_TIMEOUT),
    as_json: JsonOption = False,
    no_daemon: NoDaemonOption = False,
) -> None:
    """Find where a peer listens from its PeerId: its signed peer record in the DHT (BEP 44, under its own key),
    and what the peer store knows. Prints its addresses, best first."""
    target = usage(lambda: parse_peer_id(peer_id))
    dial = usage(lambda: [parse_multiaddr(p, "--peer") for p in peer or []])
    settings = usage(lambda: node_settings(no_lsd=True, bootstrap=bootstrap, public_bootstrap=public_bootstrap))
    settings.peer_records = False  # a short-lived node: it looks others up, it does not announce itself
    client = None if no_daemon else running_daemon(home)
    if client is not None:
        if dial:
            fail("--peer is not taken through the daemon; add --no-daemon", 2)
        found = guarded(lambda: client.call("GET", f"/api/v1/peers/{target}"))
        show_found(found, as_json)
        return
    from peerloom.node import Node  # the node's modules load only for the commands that run one

    async def main(stop: asyncio.Event) -> int:
        from peerloom.discovery.peer_record_driver import find_peer

        async with Node(home_or_default(home), host=listen, settings=settings) as node:
            for addr in dial:
                await connect_user_peer(node, addr)
            if node.dht is not None and (node.dht.bootstrap_addresses or node.dht.table_size):
                await node.dht.wait_ready(timeout)
            found = await find_peer(target, node.peers, node.peer_records, timeout=timeout)
        show_found(found, as_json)
        return 0

    guarded(lambda: run(main))


async def connect_user_peer(node: Node, addr: Multiaddr) -> None:
    """Dial a --peer (kept in the store as a "user" address; its identify adds what it announces)."""
    from peerloom.errors import PeerloomError

    if addr.peer_id is not None:
        node.peers.add_addrs(addr.peer_id, [addr], "user", time.time())
    try:
        conn = await node.secure_host.connect(addr)
        if conn.remote_peer is not None:  # its identify lands in the store through the node's peer events
            await node.secure_host.identify(conn.remote_peer, IDENTIFY_WAIT)
    except PeerloomError as exc:
        if addr.peer_id is not None:
            node.peers.dial_failed(addr.peer_id, addr, time.time())
        err.print(f"cannot connect to {printable(addr)}: {printable(exc)}")


def show_found(found: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(found)
        return
    for addr in found["addrs"]:
        out.print(printable(addr["addr"]))
    record = found["record"]
    if record is not None:
        err.print(f"{len(record['addrs'])} addresses in its signed peer record (seq {record['seq']}, published "
                  f"{age(max(0.0, time.time() - record['timestamp']))} ago); {len(found['addrs'])} known in all")
    else:
        err.print(f"{len(found['addrs'])} addresses from the peer store ({printable(found['record_error'])})")


def register(app: typer.Typer) -> None:
    app.command()(peers)
    app.command()(find)
