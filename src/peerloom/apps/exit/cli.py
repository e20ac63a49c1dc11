"""`peerloom connect share|socks|status`: lend this node's internet access to trusted peers, or borrow a peer's
through a local SOCKS5 proxy.

    peerloom connect share --allow 12D3KooW... [--ports 80,443] [--rate 2M]
    peerloom connect socks --via /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW... --listen 127.0.0.1:1080
    curl --socks5-hostname 127.0.0.1:1080 https://example.org/

With a daemon running for the home, `share` sets the daemon's exit policy (kept across its restarts) and `socks`
asks the daemon to run the proxy; otherwise the command runs a node of its own until Ctrl-C. `status` shows the
policy, the connections under way and the bytes per peer (from the state database when no daemon runs). The group
is registered by `peerloom.cli` (COMMAND_MODULES); what runs a node loads inside the commands.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from peerloom.cli.common import (
    UserError,
    err,
    fail,
    guarded,
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
    HomeOption,
    HostOption,
    JsonOption,
    NoDaemonOption,
    NoDhtOption,
    port_option,
)
from peerloom.cli.running import home_or_default, node_settings, run
from peerloom.cli.via_daemon import running_daemon

if TYPE_CHECKING:
    from peerloom.identity import PeerId
    from peerloom.node import Node, Settings

PREFIX = "/api/v1/exit"
AllowOption = Annotated[list[str], typer.Option("--allow", metavar="PEERID",
                                                help="A peer that may use this node as its exit (repeat for more).")]
PortsOption = Annotated[str | None, typer.Option("--ports", metavar="PORT,...",
                                                 help="Destination ports the peers may reach (default: every port).")]
RateOption = Annotated[str, typer.Option("--rate", metavar="SIZE",
                                         help="Bytes/s per peer and direction, e.g. 2M (default 0: unlimited).")]
PrivateOption = Annotated[bool, typer.Option("--allow-private", help="Also reach loopback, private and link-local "
                                             "destinations (refused by default: for labs and tests).")]
ViaOption = Annotated[str, typer.Option("--via", metavar="PEER", help="The exit: /ip4/HOST/tcp/PORT/p2p/PEERID, or a "
                                        "PeerId the node can find (peer store, DHT records).")]
ListenOption = Annotated[str, typer.Option("--listen", metavar="HOST:PORT",
                                           help="Loopback address of the SOCKS5 proxy (port 0: any free one).")]
SecurePortOption = Annotated[
    int, port_option("--port", "TCP port of the secure layer this command's node listens on", zero="any free port")
]


# -- the command line ---------------------------------------------------------------------------------
def parse_ports(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        ports = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"--ports takes port numbers separated by commas (got {printable(repr(text))})") from None
    if not ports or any(not 0 < p < 65536 for p in ports):
        raise UserError("--ports takes port numbers from 1 to 65535")
    return ports


def parse_allowed(values: list[str]) -> list[str]:
    from peerloom.identity import PeerId

    for value in values:
        try:
            PeerId.from_string(value)
        except Exception as exc:  # PeerIdError, or a base58 error of the codec
            raise UserError(f"--allow takes a PeerId: {printable(value)}: {exc}") from None
    return values


def parse_listen(text: str) -> tuple[str, int]:
    host, port = parse_host_port(text, "--listen", zero="any free port")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise UserError("--listen must be a loopback address: the SOCKS5 proxy has no authentication")
    return host, port


def parse_via(text: str) -> tuple[PeerId, Any]:
    """The exit's PeerId, and its multiaddr when one was given."""
    from peerloom.identity import PeerId

    if text.startswith("/"):
        addr = parse_multiaddr(text, "--via")
        if addr.peer_id is None:
            raise UserError("--via as a multiaddr must end in /p2p/PEERID")
        return addr.peer_id, addr
    try:
        return PeerId.from_string(text), None
    except Exception as exc:
        raise UserError(f"--via takes a PeerId or /ip4/HOST/tcp/PORT/p2p/PEERID: {exc}") from None


def settings_for(no_dht: bool, bootstrap: list[str] | None, port: int) -> Settings:
    settings = usage(lambda: node_settings(no_dht=no_dht, no_lsd=True, bootstrap=bootstrap))
    settings.secure_port = port
    return settings


# -- output --------------------------------------------------------------------------------------------
def print_status(status: dict[str, Any], traffic: dict[str, dict[str, dict[str, int]]], as_json: bool) -> None:
    if as_json:
        print_json({"exit": status, "traffic": traffic})
        return
    policy = status["policy"]
    if policy["serving"]:
        ports = ", ".join(map(str, policy["ports"])) or "every port"
        rate = f"{human_size(policy['rate'])}/s per peer" if policy["rate"] else "no rate limit"
        private = "private destinations allowed" if policy["allow_private"] else "public destinations only"
        out.print(f"exit for {len(policy['allowed_peers'])} peer(s): {ports}; {rate}; {private}")
    else:
        out.print("not an exit (no peer allowed)")
    for socks in status.get("socks", []):
        out.print(f"SOCKS5 on {socks['listen']} through {socks['via']}: {socks['clients']} open, "
                  f"{socks['connections']} since start, {socks['failures']} failed")
    table = Table(box=None, header_style="bold")
    for column in ("Role", "Peer", "To destination", "From destination", "Connections"):
        table.add_column(column)
    for role, peers in sorted(traffic.items()):
        for peer, counts in sorted(peers.items()):
            table.add_row(role, printable(peer), human_size(counts["to_destination"]),
                          human_size(counts["from_destination"]), str(counts["connections"]))
    if table.rows:
        out.print(table)
    else:
        err.print("no exit traffic yet")


async def dial_exit(node: Node, peer: PeerId, addr: Any) -> None:
    """Reach the exit once at start, so a wrong address is one clear line now rather than a SOCKS error later."""
    from peerloom.discovery.peer_dialer import connect_peer

    if addr is not None:
        node.peers.add_addrs(peer, [addr], "user", time.time())
    await connect_peer(node.secure_host, node.peers, peer)


# -- the commands ---------------------------------------------------------------------------------------
def share(
    allow: AllowOption,
    ports: PortsOption = None,
    rate: RateOption = "0",
    allow_private: PrivateOption = False,
    home: HomeOption = None,
    port: SecurePortOption = 0,
    listen: HostOption = "0.0.0.0",
    no_dht: NoDhtOption = False,
    bootstrap: BootstrapOption = None,
    no_daemon: NoDaemonOption = False,
    as_json: JsonOption = False,
) -> None:
    """Offer this node as an exit to the internet for the peers --allow names (until Ctrl-C, or in the daemon)."""
    peers = usage(lambda: parse_allowed(allow))
    port_list = usage(lambda: parse_ports(ports))
    limit = usage(lambda: parse_size(rate))
    policy = {"allowed_peers": peers, "ports": port_list, "allow_private": allow_private, "rate": limit}
    client = None if no_daemon else running_daemon(home)
    if client is not None:
        answer = guarded(lambda: client.call("PUT", f"{PREFIX}/policy", policy))
        if as_json:
            print_json(answer)
        else:
            out.print(f"the daemon at {client.info.api} is an exit for {len(answer['allowed_peers'])} peer(s)")
        return
    settings = settings_for(no_dht, bootstrap, port)
    settings.exit_allow, settings.exit_ports = peers, port_list
    settings.exit_allow_private, settings.exit_rate = allow_private, limit
    from peerloom.node import Node

    async def main(stop: asyncio.Event) -> int:
        async with Node(home_or_default(home), host=listen, settings=settings) as node:
            addrs = [str(a) for a in node.secure_addrs]
            if as_json:  # one line, at once: a script waits for it before it goes on
                print(json.dumps({"policy": node.exit.policy.as_json(), "addrs": addrs}), flush=True)
            else:
                out.print(f"exit for {len(peers)} peer(s); this node is {node.identity.peer_id}")
                for addr in addrs:
                    err.print(f"reachable at {addr}")
                err.print("Ctrl-C stops it")
            await stop.wait()
            if not as_json:
                print_status(node.exit.status(), node.exit.traffic(), False)
        return 0

    guarded(lambda: run(main))


def socks(
    via: ViaOption,
    listen: ListenOption = "127.0.0.1:1080",
    home: HomeOption = None,
    no_daemon: NoDaemonOption = False,
    as_json: JsonOption = False,
) -> None:
    """Run a local SOCKS5 proxy whose connections go out through the exit of --via (until Ctrl-C, or in the
    daemon). Point a client at it with socks5h (names resolve at the exit): curl --socks5-hostname HOST:PORT.
    Without a daemon, the command's own node only dials: it listens on loopback and runs no DHT."""
    peer, addr = usage(lambda: parse_via(via))
    host, listen_port = usage(lambda: parse_listen(listen))
    client = None if no_daemon else running_daemon(home)
    if client is not None:
        where = f"[{host}]:{listen_port}" if ":" in host else f"{host}:{listen_port}"
        answer = guarded(lambda: client.call("POST", f"{PREFIX}/socks", {"via": via, "listen": where}))
        if as_json:
            print_json(answer)
        else:
            out.print(f"the daemon serves SOCKS5 on {answer['listen']} through {answer['via']}")
        return
    settings = settings_for(True, None, 0)
    settings.mdns = settings.utp = False
    from peerloom.apps.exit.socks_server import SocksServer
    from peerloom.node import Node

    async def main(stop: asyncio.Event) -> int:
        async with Node(home_or_default(home), host="127.0.0.1", settings=settings) as node:
            await dial_exit(node, peer, addr)
            server = SocksServer(node.exit, peer)
            try:
                bound = await server.start(host, listen_port)
            except OSError as exc:
                fail(f"cannot listen on {host}:{listen_port}: {exc.strerror}")
            try:
                if as_json:
                    print(json.dumps(server.status()), flush=True)
                else:
                    out.print(f"SOCKS5 on {bound[0]}:{bound[1]} through {peer}")
                    err.print("Ctrl-C stops it")
                await stop.wait()
            finally:
                await server.close()
        return 0

    guarded(lambda: run(main))


def status(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """The exit's policy, connections under way and bytes per peer (the daemon's, else what the home recorded)."""
    client = running_daemon(home)
    if client is not None:
        state = guarded(lambda: client.call("GET", PREFIX))
        traffic = guarded(lambda: client.call("GET", f"{PREFIX}/traffic"))
        print_status(state, traffic, as_json)
        return
    print_status(*guarded(lambda: recorded(home_or_default(home))), as_json)


def recorded(home: Path) -> tuple[dict[str, Any], dict[str, dict[str, dict[str, int]]]]:
    """The saved policy and traffic of a home whose node is not running."""
    from peerloom.apps.exit.policy import ExitPolicy
    from peerloom.apps.exit.store import ExitStore
    from peerloom.state import State

    path = home / "state.sqlite"
    if not path.exists():
        return {"policy": ExitPolicy().as_json(), "active": [], "socks": []}, {}
    state = State(path)
    try:
        store = ExitStore(state)
        saved = store.saved_policy()
        policy = ExitPolicy.from_json(saved) if saved else ExitPolicy()
        traffic = {role: {peer: t.as_json() for peer, t in peers.items()} for role, peers in store.totals().items()}
    finally:
        state.close()
    return {"policy": policy.as_json(), "active": [], "socks": []}, traffic


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Share internet access with trusted peers (an exit), or use a peer's through a local "
                             "SOCKS5 proxy.", no_args_is_help=True, rich_markup_mode=None)
    group.command()(share)
    group.command()(socks)
    group.command()(status)
    app.add_typer(group, name="connect")
