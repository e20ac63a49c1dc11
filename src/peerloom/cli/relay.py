"""`peerloom connections`: the running daemon's secure-layer connections, direct or relayed (Circuit Relay v2)."""

from __future__ import annotations

import typer
from rich.table import Table

from peerloom.cli.common import err, guarded, out, print_json, printable
from peerloom.cli.options import HomeOption, JsonOption
from peerloom.cli.via_daemon import client_for


def connections(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """The daemon's open secure connections: each peer, direct or relayed (and through which relay)."""
    found = guarded(lambda: client_for(home).call("GET", "/api/v1/connections"))["connections"]
    if as_json:
        print_json(found)
        return
    if not found:
        err.print("no secure connections")
        return
    table = Table(box=None, header_style="bold")
    for column in ("PeerId", "Kind", "Via", "Direction", "Address", "Streams"):
        table.add_column(column)
    for c in found:
        table.add_row(printable(c["peer_id"]), c["kind"], printable(c["relay"] or "-"), c["direction"],
                      printable(c["address"] or "-"), str(c["streams"]))
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("connections")(connections)
