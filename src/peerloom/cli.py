"""The `peerloom` command."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

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
)
out = Console()
err = Console(stderr=True)

T = TypeVar("T")


class UserError(PeerloomError):
    """A mistake in what the user asked for; shown as one line."""


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
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


def parse_size(text: str) -> int:
    """`262144`, `256K`, `256KiB`, `4M`, `1G` -> bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise UserError(f"invalid size {text!r} (examples: 262144, 256K, 4M)")
    unit = " kmgt".index(match.group(2).lower() or " ")
    return int(match.group(1)) * 1024**unit


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def hashing_progress(total: int, label: str) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
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
            task = progress.add_task(f"hashing {path.name}", total=total)
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
            err.print(f"wrote {target}", highlight=False)
        return meta

    meta = guarded(run)
    show_metainfo(meta, as_json)


def report_skipped(source: Source) -> None:
    """One line on stderr for each kind of entry a scan left out: symlinks (never followed) and special files.
    Plain `print`, not rich: file names are not markup. Unprintable names are shown escaped."""
    for kind, why, paths in (
        ("symlink", "not followed", source.symlinks),
        ("special file", "FIFO, socket or device", source.special),
    ):
        if paths:
            shown = [p if p.isprintable() else repr(p) for p in paths[:20]]
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
        "files": [{"path": "/".join(f.path), "size": f.length} for f in meta.data_files],
        "magnet": str(Magnet.from_metainfo(meta)),
    }


def show_metainfo(meta: Metainfo, as_json: bool) -> None:
    facts = metainfo_dict(meta)
    if as_json:
        print(json.dumps(facts, ensure_ascii=False, indent=2))
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
    if not meta.single_file:
        shown = meta.data_files[:50]
        for f in shown:
            out.print(f"  {human_size(f.length):>10}  {'/'.join(f.path)}", highlight=False, markup=False)
        if len(meta.data_files) > len(shown):
            out.print(f"  ... and {len(meta.data_files) - len(shown):,} more (see --json)", highlight=False)


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
        print(json.dumps(facts, ensure_ascii=False, indent=2))
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
        out.print(f"{label + ':':<{width + 2}}{value}", highlight=False, markup=False, soft_wrap=True)


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


def main() -> None:
    # the node-running commands register themselves on `app`; imported here so `create`/`info` stay light
    from peerloom import cli_daemon, cli_demo, cli_dht, cli_net, cli_transfer  # noqa: F401

    app(prog_name="peerloom")


if __name__ == "__main__":
    sys.exit(main())
