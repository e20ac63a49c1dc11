"""The typer options more than one command takes, each defined once: the same flag reads and helps the same way
wherever it appears."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from peerloom.cli.common import UserError, parse_listen_address, parse_port, usage

T = TypeVar("T")


def checked_option(option: str, help: str, check: Callable[[str, str], T], metavar: str) -> Any:
    """A typer option whose text `check(text, option)` reads while the command line is read, before anything starts:
    a mistake is one line and exit 2."""
    return typer.Option(option, help=help, metavar=metavar, parser=lambda text: usage(lambda: check(text, option)))


def port_option(option: str, help: str, *, zero: str | None = None) -> Any:
    """A typer option taking a port: 1-65535, or 0 where `zero` says what 0 means."""
    return checked_option(option, f"{help} (0: {zero})" if zero else help,
                          lambda text, name: parse_port(text, name, zero=zero), "PORT")


def address_option(option: str, help: str) -> Any:
    """A typer option taking an address to listen on."""
    return checked_option(option, help, parse_listen_address, "ADDRESS")


HomeOption = Annotated[
    Path | None, typer.Option("--home", help="Node state directory (resume data, identity) [env PEERLOOM_HOME].")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]

# A node's listening socket (share, get, daemon)
PortOption = Annotated[int, port_option("--port", "TCP port to listen on (printed)", zero="any free port")]
SecurePortOption = Annotated[
    int, port_option("--port", "TCP port of the secure layer this command's node listens on", zero="any free port")
]
HostOption = Annotated[str, address_option("--listen", "Address to listen on (0.0.0.0 or ::, every interface: "
                                                      "BitTorrent and the DHT then take IPv4 and IPv6).")]

# How a node finds peers (share, get, daemon; the DHT commands take the bootstrap pair)
BootstrapOption = Annotated[
    list[str] | None,
    typer.Option("--bootstrap", help="A DHT node to join through, HOST:PORT (repeat for more; replaces the public "
                                     "routers)."),
]
PublicBootstrapOption = Annotated[
    bool,
    typer.Option("--public-bootstrap/--no-public-bootstrap",
                 help="Join the DHT through the public routers when no --bootstrap is given."),
]
TransportOption = Annotated[
    str, typer.Option("--transport", help="Dial peers over 'tcp', or 'utp' first (BEP 29; TCP when it fails).")
]
NoDhtOption = Annotated[bool, typer.Option("--no-dht", help="Run no DHT node (no trackerless peer discovery).")]
NoLsdOption = Annotated[bool, typer.Option("--no-lsd", help="No local peer discovery (BEP 14 multicast).")]
NoMdnsOption = Annotated[bool, typer.Option("--no-mdns", help="No libp2p mDNS (secure-layer peers on the LAN).")]
DhtPortOption = Annotated[int, port_option("--dht-port", "UDP port of the DHT", zero="the TCP port's number")]


def _encryption(text: str, option: str) -> str:
    if text not in ("prefer", "require", "disable"):
        raise UserError(f"{option} takes prefer, require or disable, not {text!r}")
    return text


EncryptionOption = Annotated[
    str,
    checked_option("--encryption", "Protocol encryption (MSE/PE) with BitTorrent peers: prefer (try it, fall back "
                                   "to plaintext; accept both), require (encrypted only; RC4 when offered), disable.",
                   _encryption, "prefer|require|disable"),
]

# Making a torrent (create, share)
V1Option = Annotated[bool, typer.Option("--v1", help="BitTorrent v1 only (SHA-1 pieces).")]
V2Option = Annotated[bool, typer.Option("--v2", help="BitTorrent v2 only (SHA-256 merkle trees).")]
HybridOption = Annotated[bool, typer.Option("--hybrid", help="v1 and v2 in one torrent (the default).")]
TrackerOption = Annotated[
    list[str] | None, typer.Option("--tracker", "-t", help="Tracker announce URL (repeat for several).")
]

# Running a node of one's own (share, get)
StatusLines = Annotated[bool, typer.Option("--status-lines", hidden=True, help="Print a JSON status line each tick.")]
PrivateOption = Annotated[
    bool, typer.Option("--private", help="A private swarm: only allowed keys, encrypted (secure peer layer).")
]
AllowOption = Annotated[
    list[str] | None, typer.Option("--allow", help="A PeerId allowed in the private swarm (repeat for more).")
]
NoDaemonOption = Annotated[
    bool, typer.Option("--no-daemon", help="Run a node of its own even when a daemon runs for the home.")
]
