"""The `peerloom` command."""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from peerloom import __version__
from peerloom.errors import PeerloomError
from peerloom.files import write_atomically
from peerloom.torrent.create import Source, check_piece_length, scan
from peerloom.torrent.create import create as create_torrent
from peerloom.torrent.magnet import Magnet
from peerloom.torrent.metainfo import MAX_TORRENT_SIZE, Metainfo, Version

app = typer.Typer(
    help="peerloom: a peer-to-peer node. Share and fetch files over BitTorrent (v1, v2, hybrid), alone or through a "
         "running `peerloom daemon` (web UI, HTTP API); private swarms over an encrypted peer layer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts are plain: "[default: NAME.torrent]" is not markup
)


def console(*, stderr: bool = False) -> Console:
    """A console that prints every string as it is: names, paths and error texts come from the network and the file
    system, so nothing is read as rich markup (`[/x]` would crash it) or as an emoji code (`:-1:`), nothing is
    highlighted; and nothing is wrapped, so a magnet link or a multiaddr stays one line to copy, from a terminal as
    from a log. (Tables and progress bars still fit their cells: they lay themselves out.)"""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True)


out = console()
err = console(stderr=True)

# What must never reach a terminal raw (an escape sequence can rewrite the screen, a bidi override reorders what is
# read): C0 and C1 controls and DEL (Unicode Cc), lone surrogates (undecodable bytes of a file name), the line and
# paragraph separators, and the bidirectional formatting characters (Unicode Bidi_Control).
_UNSAFE_PAST_C0 = r"\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff"
UNSAFE = re.compile(rf"[\x00-\x1f{_UNSAFE_PAST_C0}]")
_UNSAFE_IN_JSON = re.compile(f"[{_UNSAFE_PAST_C0}]")  # json.dumps escapes C0 itself (and the rest must stay: indents)


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    if "\udc80" <= char <= "\udcff":  # a byte of a file name that is not UTF-8 (surrogateescape): show the byte
        return f"\\x{ord(char) - 0xDC00:02x}"
    return char.encode("unicode_escape", "backslashreplace").decode("ascii")


def printable(text: object) -> str:
    """`text` to show on a terminal: its control characters escaped as Python writes them (`\\x1b`, `\\r`,
    `\\u202e`). Every name, path or message that comes from outside goes through here before it is printed."""
    return UNSAFE.sub(_escape, str(text))


def print_json(data: Any) -> None:
    """Machine output on stdout: the values exactly, with every character of UNSAFE as a JSON escape."""
    text = json.dumps(data, ensure_ascii=False, indent=2)
    print(_UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m[0]):04x}", text), flush=True)


T = TypeVar("T")


class UserError(PeerloomError):
    """A mistake in what the user asked for; shown as one line."""


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(Text.assemble(("error:", "bold red"), " ", printable(message)))
    raise typer.Exit(code)


def guarded(action: Callable[[], T]) -> T:
    """Run `action`, turning expected failures into one clear line and a non-zero exit."""
    try:
        return action()
    except PeerloomError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)


def usage(action: Callable[[], T]) -> T:
    """Run `action`, a check of the command line: a mistake is one line and exit 2, as every usage error."""
    try:
        return action()
    except UserError as exc:
        fail(str(exc), 2)


def _port(digits: str, zero: str | None) -> int | None:
    # ASCII digits only, and few of them: int() takes '²' badly, and 70000 must not wrap around to 4464 in bind()
    if digits.isascii() and digits.isdigit() and len(digits) <= 5 and (1 if zero is None else 0) <= int(digits) < 65536:
        return int(digits)
    return None


def _port_range(zero: str | None) -> str:
    return "1 to 65535" if zero is None else f"0 ({zero}) to 65535"


def parse_port(text: object, option: str, *, zero: str | None = None) -> int:
    """A port given for `option`: 1-65535, or 0 where 0 means something (`zero` says what, e.g. "any free port")."""
    port = _port(str(text).strip(), zero)
    if port is None:
        raise UserError(f"{option} takes a port number from {_port_range(zero)} (got {printable(repr(str(text)))})")
    return port


def parse_host_port(text: str, option: str, *, zero: str | None = None) -> tuple[str, int]:
    """HOST:PORT, or [IPv6]:PORT, given for `option`; its port checked as `parse_port` does."""
    host, sep, digits = text.rpartition(":")
    if host[:1] == "[" and host[-1:] == "]":
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            host = ""
    elif ":" in host:  # an IPv6 address without brackets: where its port starts is a guess
        host = ""
    port = _port(digits, zero) if sep and host else None
    if port is None:
        raise UserError(f"{option} takes HOST:PORT ([IPv6]:PORT) with a port from {_port_range(zero)} "
                        f"(got {printable(repr(text))})")
    return host, port


def parse_listen_address(text: str, option: str) -> str:
    """An address to listen on: an IP address or a name, without a port (that has an option of its own)."""
    host = text.strip()
    if host[:1] == "[" and host[-1:] == "]":
        host = host[1:-1]
    if ":" in host:
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            host = ""
    if not host or "/" in host or UNSAFE.search(host) or " " in host:
        raise UserError(f"{option} takes an address to listen on, like 0.0.0.0, 127.0.0.1 or :: (the port goes in "
                        f"--port; got {printable(repr(text))})")
    return host


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


def parse_size(text: str) -> int:
    """`262144`, `256K`, `256KiB`, `1.5M`, `0.5G` -> bytes. Units are binary (K = 1024), as everywhere the CLI shows
    a size or a rate; a fraction of a byte is rounded."""
    # ASCII digits only, and few of them: int() would refuse '²' and numbers of more than 4300 digits with a traceback
    match = re.fullmatch(r"\s*(\d{1,15}(?:\.\d{1,15})?)\s*([kmgt]?)(i?b)?\s*", text, re.IGNORECASE | re.ASCII)
    if not match:
        raise UserError(f"invalid size {printable(repr(text))} (examples: 262144, 256K, 1.5M)")
    unit = " kmgt".index(match.group(2).lower() or " ")
    return round(Fraction(match.group(1)) * 1024**unit)


def human_size(n: float) -> str:
    """Binary units (KiB, MiB, …), as `parse_size` reads them."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_rate(rate: float) -> str:
    """A rate limit or a speed: `5.0 MiB/s`; 0 is no limit."""
    return f"{human_size(rate)}/s" if rate else "unlimited"


class RateColumn(ProgressColumn):
    """A task's transfer rate in binary units (rich's TransferSpeedColumn shows decimal MB/s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("?" if speed is None else f"{human_size(speed)}/s", style="progress.data.speed")


def description_column() -> TextColumn:
    """A progress bar's label: a torrent's or a file's name, so plain text, never markup."""
    return TextColumn("{task.description}", style="bold", markup=False)


def hashing_progress(total: int, label: str) -> Progress:
    return Progress(
        description_column(),
        BarColumn(),
        DownloadColumn(binary_units=True),
        RateColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=total == 0,
    )


@app.command()
def create(
    path: Annotated[Path, typer.Argument(help="File or directory to make a torrent of.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Where to write the .torrent [default: NAME.torrent].")
    ] = None,
    v1: Annotated[bool, typer.Option("--v1", help="BitTorrent v1 only (SHA-1 pieces).")] = False,
    v2: Annotated[bool, typer.Option("--v2", help="BitTorrent v2 only (SHA-256 merkle trees).")] = False,
    hybrid: Annotated[bool, typer.Option("--hybrid", help="v1 and v2 in one torrent (the default).")] = False,
    piece_length: Annotated[
        str | None, typer.Option("--piece-length", help="Piece size, e.g. 256K or 4M [default: automatic].")
    ] = None,
    tracker: Annotated[
        list[str] | None, typer.Option("--tracker", "-t", help="Tracker URL (repeat for several).")
    ] = None,
    web_seed: Annotated[list[str] | None, typer.Option("--web-seed", help="Web seed URL (BEP 19).")] = None,
    comment: Annotated[str | None, typer.Option("--comment", help="Comment stored in the torrent.")] = None,
    private: Annotated[bool, typer.Option("--private", help="Private torrent (BEP 27): no DHT or PEX.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite OUTPUT if it exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Make a .torrent of PATH (hybrid v1+v2 unless told otherwise)."""
    if sum((v1, v2, hybrid)) > 1:
        fail("choose one of --v1, --v2 and --hybrid", 2)
    version: Version = "v1" if v1 else "v2" if v2 else "hybrid"

    def run() -> Metainfo:
        size = parse_size(piece_length) if piece_length else None
        if size is not None:
            check_piece_length(size)
        target = output or Path(f"{path.resolve().name}.torrent")
        if target.exists() and not force:
            raise UserError(f"{target} already exists (use --force to overwrite)")
        source = scan(path)
        report_skipped(source)
        total = source.total_length
        with hashing_progress(total, "hashing") as progress:
            task = progress.add_task(f"hashing {printable(path.name)}", total=total)
            meta = create_torrent(
                source,
                version=version,
                piece_length=size,
                trackers=tracker or (),
                web_seeds=web_seed or (),
                comment=comment,
                private=private,
                progress=lambda n: progress.advance(task, n),
            )
        write_atomically(target, meta.to_bytes())
        if not as_json:
            err.print(f"wrote {printable(target)}")
        return meta

    meta = guarded(run)
    show_metainfo(meta, as_json)


def report_skipped(source: Source) -> None:
    """One line on stderr for each kind of entry a scan left out: symlinks (never followed) and special files.
    Plain `print`, not rich: file names are not markup; control characters are shown escaped."""
    for kind, why, paths in (
        ("symlink", "not followed", source.symlinks),
        ("special file", "FIFO, socket or device", source.special),
    ):
        if paths:
            shown = [printable(p) for p in paths[:20]]
            more = f", and {len(paths) - 20} more" if len(paths) > 20 else ""
            counted = f"{len(paths)} {kind}" + ("s" if len(paths) > 1 else "")
            print(f"skipped {counted} ({why}): {', '.join(shown)}{more}", file=sys.stderr)


@app.command()
def info(
    source: Annotated[str, typer.Argument(help="A .torrent file or a magnet link.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show what a .torrent file or magnet link describes."""
    if source[:7].lower() == "magnet:":
        magnet = guarded(lambda: Magnet.parse(source))
        show_magnet(magnet, as_json)
        return
    show_metainfo(guarded(lambda: read_torrent(Path(source))), as_json)


def read_torrent(path: Path) -> Metainfo:
    if not path.exists():
        raise UserError(f"{path}: no such file (give a .torrent file or a magnet link)")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a .torrent file")
    if path.stat().st_size > MAX_TORRENT_SIZE:
        raise UserError(f"{path} is too large to be a torrent file")
    try:
        return Metainfo.parse(path.read_bytes())
    except PeerloomError as exc:
        raise UserError(f"{path}: {exc}") from exc


def metainfo_dict(meta: Metainfo) -> dict[str, Any]:
    return {
        "name": meta.name,
        "version": meta.version,
        "total_size": meta.total_length,
        "piece_length": meta.piece_length,
        "piece_count": meta.num_pieces,
        "info_hash_v1": meta.info_hash_v1.hex() if meta.info_hash_v1 else None,
        "info_hash_v2": meta.info_hash_v2.hex() if meta.info_hash_v2 else None,
        "private": meta.private,
        "trackers": [list(tier) for tier in meta.trackers],
        "web_seeds": list(meta.web_seeds),
        "comment": meta.comment,
        "created_by": meta.created_by,
        "creation_date": meta.creation_date,
        "files": [{"index": i, "path": "/".join(f.path), "size": f.length} for i, f in enumerate(meta.data_files)],
        "magnet": str(Magnet.from_metainfo(meta)),
    }


def show_metainfo(meta: Metainfo, as_json: bool) -> None:
    facts = metainfo_dict(meta)
    if as_json:
        print_json(facts)
        return
    rows = [
        ("name", meta.name),
        ("version", meta.version),
        ("size", f"{human_size(meta.total_length)} ({meta.total_length:,} bytes)"),
        ("files", f"{len(meta.data_files):,}"),
        ("piece length", human_size(meta.piece_length)),
        ("pieces", f"{meta.num_pieces:,}"),
    ]
    rows += [("info-hash v1", facts["info_hash_v1"])] if meta.info_hash_v1 else []
    rows += [("info-hash v2", facts["info_hash_v2"])] if meta.info_hash_v2 else []
    rows += [("private", "yes")] if meta.private else []
    rows += [("tracker", url) for tier in meta.trackers for url in tier]
    rows += [("comment", meta.comment)] if meta.comment else []
    rows.append(("magnet", facts["magnet"]))
    print_rows(rows)
    if not meta.single_file:  # numbered as `get --files` takes them
        shown = meta.data_files[:50]
        width = len(str(len(shown) - 1))
        for index, f in enumerate(shown):
            out.print(f"  {index:>{width}}  {human_size(f.length):>10}  {printable('/'.join(f.path))}")
        if len(meta.data_files) > len(shown):
            out.print(f"  ... and {len(meta.data_files) - len(shown):,} more (see --json)")


def show_magnet(magnet: Magnet, as_json: bool) -> None:
    facts = {
        "name": magnet.name,
        "info_hash_v1": magnet.info_hash_v1.hex() if magnet.info_hash_v1 else None,
        "info_hash_v2": magnet.info_hash_v2.hex() if magnet.info_hash_v2 else None,
        "trackers": list(magnet.trackers),
        "peers": [f"{host}:{port}" for host, port in magnet.peers],
        "web_seeds": list(magnet.web_seeds),
        "select_only": [list(r) for r in magnet.select_only] if magnet.select_only is not None else None,
        "magnet": str(magnet),
    }
    if as_json:
        print_json(facts)
        return
    rows = [("name", magnet.name or "(not given)")]
    rows += [("info-hash v1", facts["info_hash_v1"])] if magnet.info_hash_v1 else []
    rows += [("info-hash v2", facts["info_hash_v2"])] if magnet.info_hash_v2 else []
    rows += [("tracker", url) for url in magnet.trackers]
    rows += [("peer", peer) for peer in facts["peers"]]
    print_rows(rows)


def print_rows(rows: list[tuple[str, Any]]) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        out.print(f"{label + ':':<{width + 2}}{printable(value)}")


def version_callback(value: bool) -> None:
    if value:
        print(f"peerloom {__version__}")
        raise typer.Exit()


@app.callback()
def common(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """peerloom: a peer-to-peer node."""


def every_command() -> typer.Typer:
    """`app` with every command: the node-running ones register themselves on it when their modules load, which
    importing this module alone does not do (so that `create`/`info` stay light)."""
    from peerloom import cli_daemon, cli_demo, cli_dht, cli_net, cli_transfer  # noqa: F401

    return app


def main() -> None:
    every_command()(prog_name="peerloom")


if __name__ == "__main__":
    # `python -m peerloom.cli`: this file runs as `__main__`, while the command modules register on the `app` of
    # `peerloom.cli`, another copy of it; run that one, which has every command
    from peerloom.cli import main as main_of_the_package

    sys.exit(main_of_the_package())
