"""`peerloom pubsub sub|pub|peers`: GossipSub from the command line.

Each command hands its work to the daemon running for the home when there is one (its node stays in the topic's
mesh, and `sub` follows the daemon's event stream), else runs a node of its own for as long as the command lasts:
it dials the `--peer` addresses, and with a DHT (`--bootstrap`) finds the topic's subscribers by rendezvous. The
command group is registered by `peerloom.cli` (COMMAND_MODULES) like the modules of that package, and uses only its
helper modules; what runs a node, the DHT or the web client loads inside the commands, so `--help` stays light.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
import urllib.parse
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from peerloom.apps.pubsub.interface import (
    MAX_MESSAGE,
    check_message,
    check_topic,
    dial_all,
    message_json,
    peer_rows,
    wait_for_peers,
)
from peerloom.cli.common import (
    err,
    fail,
    guarded,
    out,
    parse_secure_peers,
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
    PublicBootstrapOption,
    SecurePortOption,
)
from peerloom.cli.running import home_or_default, node_settings, run
from peerloom.cli.via_daemon import running_daemon
from peerloom.errors import PeerloomError

if TYPE_CHECKING:
    from peerloom.api.client import DaemonClient
    from peerloom.apps.pubsub.service import PubSubService
    from peerloom.codec.multiaddr import Multiaddr
    from peerloom.node import Node, Settings

LINGER = 0.5  # seconds a one-shot `pub` stays up after publishing, so the frames leave before its connections close

TopicArgument = Annotated[str, typer.Argument(help="The topic's name.")]
PeerOption = Annotated[
    list[str] | None,
    typer.Option("--peer", metavar="MULTIADDR",
                 help="A peer to dial on the secure layer, /ip4/HOST/tcp/PORT[/p2p/PEERID] (repeat for more)."),
]
WaitOption = Annotated[
    float, typer.Option("--wait", min=0, max=10, metavar="SECONDS",
                        help="Seconds (0 to 10) to wait for the topic's peers to show up.")
]


# -- the command line ---------------------------------------------------------------------------------
parse_peers = parse_secure_peers  # --peer multiaddrs of the secure layer


def checked_topic(topic: str) -> str:
    """TOPIC as the API checks it (not empty, at most 1024 bytes); a mistake is a usage error."""
    try:
        return check_topic(topic)
    except PeerloomError as exc:
        fail(str(exc), 2)


def read_message(message: str) -> bytes:
    """The message to publish: the argument as UTF-8, or stdin's bytes for `-`; bounded as the API bounds it."""
    data = sys.stdin.buffer.read(MAX_MESSAGE + 1) if message == "-" else message.encode("utf-8", "surrogateescape")
    return guarded(lambda: check_message(data))


def settings_for(no_dht: bool, bootstrap: list[str] | None, public_bootstrap: bool, port: int) -> Settings:
    settings = usage(lambda: node_settings(no_dht=no_dht, no_lsd=True, bootstrap=bootstrap,
                                           public_bootstrap=public_bootstrap))
    settings.secure_port = port
    return settings


def daemon_for(home: HomeOption, no_daemon: bool, bootstrap: list[str] | None) -> DaemonClient | None:
    client = None if no_daemon else running_daemon(home)
    if client is not None and bootstrap:
        err.print("note: the daemon joins the DHT its own way; --bootstrap is ignored (or add --no-daemon)")
    return client


def topic_path(topic: str) -> str:
    """The topic as one path segment of the API (`a/b` is `a%2Fb`)."""
    return urllib.parse.quote(topic, safe="")


# -- output --------------------------------------------------------------------------------------------
def print_message(event: dict[str, Any], as_json: bool) -> None:
    """One received message (the shape of `interface.message_json`) as one line on stdout."""
    if as_json:
        print(json.dumps(event, ensure_ascii=True), flush=True)  # ASCII: no raw control or bidi character
        return
    data = f"(base64) {event['data']}" if event["base64"] else printable(event["data"])
    out.print(f"{printable(event['from'])}: {data}")


def print_published(topic: str, result: dict[str, Any], waited: float, as_json: bool) -> None:
    if as_json:
        print_json(result)
    else:
        out.print(result["msg_id"])
    if result["peers"]:
        err.print(f"published to {result['peers']} peer{'s' if result['peers'] != 1 else ''} of "
                  f"{printable(topic)}")
    else:
        fail(f"nobody got it: no peer of topic {topic!r} was found within {waited:g} s (give --peer MULTIADDR, "
             "or --bootstrap HOST:PORT to find them through the DHT)")


def print_peers(topic: str, rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json({"topic": topic, "peers": rows})
        return
    if not rows:
        err.print(f"no peer of topic {printable(topic)} is known")
        return
    table = Table(box=None, header_style="bold")
    widest = max(len(row["peer_id"]) for row in rows)  # a PeerId is copied whole, never cut to fit a terminal
    for column, justify, width in (("Peer", "left", widest), ("Mesh", "left", 4), ("Score", "right", 5),
                                   ("Protocol", "left", 8)):
        table.add_column(column, justify=justify, min_width=width)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(printable(row["peer_id"]), "yes" if row["mesh"] else "no", f"{row['score']:.2f}",
                      printable(row["protocol"] or "?"))
    out.print(table)


# -- a node of the command's own ----------------------------------------------------------------------
async def joined(node: Node, peers: list[Multiaddr]) -> int:
    """Dial the --peer addresses: a note for each that failed, one line and exit 1 when none answered; how many
    did."""
    failures = await dial_all(node.secure_host, peers)
    if peers and len(failures) == len(peers):
        fail(f"no --peer answered: {'; '.join(failures)}")
    for line in failures:
        err.print(f"note: {printable(line)}")
    return len(peers) - len(failures)


def running_pubsub(node: Node) -> PubSubService:
    if node.pubsub is None:
        fail("pub/sub is off in this node's settings")
    return node.pubsub


def announce(node: Node, topic: str) -> None:
    addrs = ", ".join(str(a) for a in node.secure_addrs)
    err.print(f"subscribed to {printable(topic)}; this node is {node.identity.peer_id}, reachable at {addrs}")


# -- the commands ---------------------------------------------------------------------------------------
def sub(
    topic: TopicArgument,
    as_json: JsonOption = False,
    peer: PeerOption = None,
    bootstrap: BootstrapOption = None,
    public_bootstrap: PublicBootstrapOption = True,
    no_dht: NoDhtOption = False,
    home: HomeOption = None,
    port: SecurePortOption = 0,
    listen: HostOption = "0.0.0.0",
    no_daemon: NoDaemonOption = False,
) -> None:
    """Subscribe to TOPIC and print each message as it arrives (one line each; --json: one JSON object each) until
    Ctrl-C."""
    topic = checked_topic(topic)
    peers = usage(lambda: parse_peers(peer))
    settings = settings_for(no_dht, bootstrap, public_bootstrap, port)
    client = daemon_for(home, no_daemon, bootstrap)
    if client is not None:
        guarded(lambda: run(lambda stop: sub_via_daemon(client, topic, peers, as_json, stop)))
        return
    from peerloom.node import Node

    async def main(stop: asyncio.Event) -> int:
        async with (Node(home_or_default(home), host=listen, settings=settings) as node,
                    running_pubsub(node).subscribe(topic) as subscription):
            await joined(node, peers)
            announce(node, topic)
            stopping = asyncio.ensure_future(stop.wait())
            try:
                while True:
                    receiving = asyncio.ensure_future(subscription.get())
                    await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not receiving.done():
                        receiving.cancel()
                        break
                    print_message(message_json(receiving.result()), as_json)
            finally:
                stopping.cancel()
        return 0

    guarded(lambda: run(main))


async def sub_via_daemon(client: DaemonClient, topic: str, peers: list[Multiaddr], as_json: bool,
                         stop: asyncio.Event) -> int:
    """Follow the daemon's event stream for TOPIC's messages (the stream opens first: nothing is missed), having
    asked the daemon to subscribe; on Ctrl-C the daemon leaves the topic again unless it was subscribed before."""
    import aiohttp

    path = f"/api/v1/pubsub/subscriptions/{topic_path(topic)}"
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(client.info.api + "/api/v1/events",
                                          headers={"X-Peerloom-Token": client.info.token}, max_msg_size=4 << 20)
        except aiohttp.ClientError as exc:
            fail(f"cannot follow the daemon's events at {client.info.api}: {exc}")
        async with ws:
            answer = await asyncio.to_thread(client.call, "POST", path, {"peers": [str(p) for p in peers]})
            err.print(f"subscribed to {printable(topic)} through the daemon at {client.info.api}")
            try:
                await follow_events(ws, topic, as_json, stop)
            finally:
                if answer["created"]:
                    with contextlib.suppress(PeerloomError):  # a daemon that went away has left the topic anyway
                        await asyncio.to_thread(client.call, "DELETE", path)
    return 0


async def follow_events(ws: Any, topic: str, as_json: bool, stop: asyncio.Event) -> None:
    """Print the "pubsub.message" events of TOPIC from the daemon's event stream until `stop`."""
    import aiohttp

    stopping = asyncio.ensure_future(stop.wait())
    try:
        while True:
            receiving = asyncio.ensure_future(ws.receive())
            await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                receiving.cancel()
                return
            msg = receiving.result()
            if msg.type != aiohttp.WSMsgType.TEXT:
                fail("the daemon closed its event stream (it stopped, or this reader fell too far behind)")
            event = json.loads(msg.data)
            if event.get("type") == "pubsub.message" and event.get("topic") == topic:
                print_message({k: v for k, v in event.items() if k != "type"}, as_json)
    finally:
        stopping.cancel()


def pub(
    topic: TopicArgument,
    message: Annotated[str, typer.Argument(help="The message (text), or - to read it from stdin (bytes).")],
    wait: WaitOption = 5.0,
    as_json: JsonOption = False,
    peer: PeerOption = None,
    bootstrap: BootstrapOption = None,
    public_bootstrap: PublicBootstrapOption = True,
    no_dht: NoDhtOption = False,
    home: HomeOption = None,
    port: SecurePortOption = 0,
    listen: HostOption = "0.0.0.0",
    no_daemon: NoDaemonOption = False,
) -> None:
    """Publish MESSAGE on TOPIC: prints its message id and how many peers it went to. Waits up to --wait seconds
    for the topic's peers to show up first; exits 1 if nobody got it."""
    topic = checked_topic(topic)
    peers = usage(lambda: parse_peers(peer))
    settings = settings_for(no_dht, bootstrap, public_bootstrap, port)
    data = read_message(message)
    client = daemon_for(home, no_daemon, bootstrap)
    if client is not None:
        try:
            body: dict[str, Any] = {"data": data.decode("utf-8")}
        except UnicodeDecodeError:
            body = {"data_b64": base64.b64encode(data).decode("ascii")}
        body |= {"peers": [str(p) for p in peers], "wait": wait}
        result = guarded(lambda: client.call("POST", f"/api/v1/pubsub/topics/{topic_path(topic)}/messages", body))
        print_published(topic, result, wait, as_json)
        return
    from peerloom.node import Node

    async def main(stop: asyncio.Event) -> int:
        async with Node(home_or_default(home), host=listen, settings=settings) as node:
            dialled = await joined(node, peers)
            pubsub = running_pubsub(node)
            await wait_for_peers(pubsub, topic, wait, rendezvous=node.dht is not None, at_least=dialled)
            result = await pubsub.publish(topic, data)
            if result.peers:
                await asyncio.sleep(LINGER)
        print_published(topic, {"topic": topic, "msg_id": result.msg_id.hex(), "peers": result.peers}, wait, as_json)
        return 0

    guarded(lambda: run(main))


def list_peers(
    topic: TopicArgument,
    wait: WaitOption = 3.0,
    as_json: JsonOption = False,
    peer: PeerOption = None,
    bootstrap: BootstrapOption = None,
    public_bootstrap: PublicBootstrapOption = True,
    no_dht: NoDhtOption = False,
    home: HomeOption = None,
    port: SecurePortOption = 0,
    listen: HostOption = "0.0.0.0",
    no_daemon: NoDaemonOption = False,
) -> None:
    """List the peers of TOPIC: PeerId, in our mesh or not, score, protocol. A node of the command's own waits up
    to --wait seconds for them (it subscribes to nothing, so none is in its mesh)."""
    topic = checked_topic(topic)
    addrs = usage(lambda: parse_peers(peer))
    settings = settings_for(no_dht, bootstrap, public_bootstrap, port)
    client = daemon_for(home, no_daemon, bootstrap)
    if client is not None:
        if addrs:
            fail("--peer is not taken by `pubsub peers` through the daemon (the daemon dials on `sub` and `pub`); "
                 "add --no-daemon", 2)
        rows = guarded(lambda: client.call("GET", f"/api/v1/pubsub/topics/{topic_path(topic)}/peers"))["peers"]
        print_peers(topic, rows, as_json)
        return
    from peerloom.node import Node

    async def main(stop: asyncio.Event) -> int:
        async with Node(home_or_default(home), host=listen, settings=settings) as node:
            dialled = await joined(node, addrs)
            pubsub = running_pubsub(node)
            await wait_for_peers(pubsub, topic, wait, rendezvous=node.dht is not None, at_least=dialled)
            rows = peer_rows(node.secure_host, pubsub, topic)
        print_peers(topic, rows, as_json)
        return 0

    guarded(lambda: run(main))


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Publish and subscribe on GossipSub topics (libp2p pub/sub).", no_args_is_help=True,
                        rich_markup_mode=None)
    group.command()(sub)
    group.command()(pub)
    group.command("peers")(list_peers)
    app.add_typer(group, name="pubsub")
