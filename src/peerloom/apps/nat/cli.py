"""`peerloom nat status`: is this node reachable from the internet, and what did it map on its gateway.

With a daemon running for the home, its view (`--probe` asks its AutoNAT servers again first). Without one, a short-
lived node dials the `--peer` addresses given (peers that serve AutoNAT), asks them to dial it back, optionally maps
its ports on the gateway over NAT-PMP or UPnP-IGD (`--port-mapping`; deleted again on exit), and reports.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from peerloom.codec.multiaddr import Multiaddr

from peerloom.cli.common import UserError, fail, guarded, out, parse_multiaddr, print_json, usage
from peerloom.cli.options import HomeOption, JsonOption
from peerloom.cli.running import home_or_default, run
from peerloom.cli.via_daemon import running_daemon

PeerOption = Annotated[list[str] | None, typer.Option(
    "--peer", help="A peer serving AutoNAT to dial and ask, /ip4/HOST/tcp/PORT/p2p/PEERID (repeat it).")]


def autonat_peer(text: str) -> Multiaddr:
    """A --peer address: TCP (AutoNAT peers are dialled directly), else a usage error."""
    addr = parse_multiaddr(text, "--peer")
    if addr.value_for("tcp") is None or addr.value_for("p2p-circuit") is not None:
        raise UserError(f"--peer {text}: give a direct TCP address, /ip4/HOST/tcp/PORT/p2p/PEERID")
    return addr


def show(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(status)
        return
    out.print(f"reachability: {status['reachability']} (confidence {status['confidence']:.0%}, "
              f"{len(status['answers'])} AutoNAT answers)")
    for answer in status["answers"]:
        out.print(f"  {answer['server']}: {'dialled us back' if answer['reachable'] else 'could not dial us'}"
                  f"{' on ' + answer['addr'] if answer['addr'] else ''}")
    out.print("observed addresses: " + (", ".join(status["observed"]) or "none yet"))
    out.print("confirmed addresses: " + (", ".join(status["confirmed"]) or "none"))
    mapping = status.get("port_mapping")
    if mapping is None:
        out.print("port mapping: off")
        return
    out.print(f"port mapping: {mapping.get('protocol') or 'no protocol worked'}, "
              f"gateway {mapping.get('gateway') or '?'}, external IP {mapping.get('external_ip') or '?'}")
    for m in mapping.get("mappings", []):
        lifetime = f"{m['lifetime']} s" if m["lifetime"] else "permanent"
        out.print(f"  {m['protocol']} {m['internal_port']} -> {m['external_port']} ({lifetime}) "
                  f"via {m.get('via', '?')}")
    for name, reason in (mapping.get("attempts") or {}).items():
        out.print(f"  {name} not used: {reason}")
    for f in mapping.get("failures", []):
        out.print(f"  {f['protocol']} {f['internal_port']}: {f['reason']}")
    if mapping.get("error"):
        out.print(f"  error: {mapping['error']}")


def status(
    home: HomeOption = None,
    peer: PeerOption = None,
    port_mapping: Annotated[bool, typer.Option(
        "--port-mapping", help="Without a daemon: also map the node's ports on the gateway (NAT-PMP or UPnP-IGD).")
    ] = False,
    gateway: Annotated[str, typer.Option(
        "--gateway", help="The NAT-PMP / UPnP-IGD gateway [the default route's].")] = "",
    probe: Annotated[bool, typer.Option("--probe", help="With a daemon: ask its AutoNAT servers again first "
                                        "(implied by --peer).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Reachability (AutoNAT), observed and confirmed addresses, and port mappings of this node."""
    client = running_daemon(home)
    if client is not None:
        if port_mapping:
            fail("a daemon runs for this home: start it with `peerloom daemon --port-mapping` instead", 2)
        peers = [str(usage(lambda p=p: autonat_peer(p))) for p in peer or []]
        if probe or peers:
            result = guarded(lambda: client.call("POST", "/api/v1/nat/probe", {"peers": peers}))
        else:
            result = guarded(lambda: client.call("GET", "/api/v1/nat"))
        show(result, as_json)
        return
    addrs = usage(lambda: [autonat_peer(p) for p in peer or []])
    if not addrs and not port_mapping:
        fail("no daemon runs for this home: give --peer ADDRESS (a peer serving AutoNAT) or --port-mapping", 2)
    home_dir = home_or_default(home)

    async def main(stop: asyncio.Event) -> int:
        from peerloom.node import Node, Settings

        settings = Settings(dht=False, lsd=False, mdns=False, pubsub=False, autonat_server=False,
                            port_mapping=port_mapping, port_mapping_gateway=gateway,
                            autonat_quorum=max(1, min(2, len(addrs))))  # two peers agreeing, when two were given
        async with Node(home_dir, settings=settings) as node:
            nat = node.nat
            assert nat is not None
            if port_mapping:
                await nat.wait_for_mapping(15.0)
            result = await nat.probe(addrs) if addrs else nat.status()
        show(result, as_json)
        return 0

    guarded(lambda: run(main))


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="NAT: reachability (AutoNAT) and port mappings (NAT-PMP, UPnP-IGD).", no_args_is_help=True,
                        rich_markup_mode=None)
    group.command("status")(status)
    app.add_typer(group, name="nat")
