"""The `peerloom` command: the one place where the command modules are put together.

Each module of `COMMAND_MODULES` brings one group of commands and adds them in its `register(app)`; nothing is
registered by importing a module. The command modules share `common` (consoles, one-line errors, parsing and showing
sizes and ports, progress bars), `options` (the typer options several commands take), `running` (the event loop, a
node's home and settings) and `via_daemon` (the running daemon of a home), and never import each other (a test reads
their imports). What a command needs of the node, the DHT or the web stack loads inside it, so `--help` stays light.
"""

from __future__ import annotations

from typing import Annotated

import typer

from peerloom.apps.btc import cli as btc
from peerloom.apps.compute import cli as compute
from peerloom.apps.docs import cli as docs
from peerloom.apps.exit import cli as connect
from peerloom.apps.nat import cli as nat
from peerloom.apps.pubsub import cli as pubsub
from peerloom.cli import daemon, demo, dht, discovery, files, net, relay, transfer
from peerloom.version import __version__

COMMAND_MODULES = (files, transfer, daemon, net, dht, discovery, pubsub, docs, compute, btc, nat, relay, connect, demo)


def version_callback(value: bool) -> None:
    if value:
        print(f"peerloom {__version__}")
        raise typer.Exit()


def common_options(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """peerloom: a peer-to-peer node."""


def build_app() -> typer.Typer:
    """The `peerloom` command with the commands of every module of `COMMAND_MODULES`."""
    app = typer.Typer(
        help="peerloom: a peer-to-peer node. Share and fetch files over BitTorrent (v1, v2, hybrid), alone or through "
             "a running `peerloom daemon` (web UI, HTTP API); private swarms over an encrypted peer layer; pub/sub "
             "topics (GossipSub).",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,  # help texts are plain: "[default: NAME.torrent]" is not markup
    )
    app.callback()(common_options)
    for module in COMMAND_MODULES:
        module.register(app)
    return app


app = build_app()


def main() -> None:
    """The `peerloom` console script, `python -m peerloom` and `python -m peerloom.cli`."""
    app(prog_name="peerloom")
