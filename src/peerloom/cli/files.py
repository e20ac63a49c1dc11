"""`peerloom create` and `peerloom info`: making a .torrent and showing what a .torrent or a magnet link describes.
Neither runs a node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from peerloom.cli.common import (
    UserError,
    err,
    guarded,
    hashing_progress,
    human_size,
    out,
    parse_size,
    print_json,
    printable,
    report_skipped,
    torrent_version,
)
from peerloom.cli.options import HybridOption, TrackerOption, V1Option, V2Option
from peerloom.errors import PeerloomError
from peerloom.files import write_atomically
from peerloom.torrent.create import check_piece_length, scan
from peerloom.torrent.create import create as create_torrent
from peerloom.torrent.magnet import Magnet
from peerloom.torrent.metainfo import MAX_TORRENT_SIZE, Metainfo


def create(
    path: Annotated[Path, typer.Argument(help="File or directory to make a torrent of.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Where to write the .torrent [default: NAME.torrent].")
    ] = None,
    v1: V1Option = False,
    v2: V2Option = False,
    hybrid: HybridOption = False,
    piece_length: Annotated[
        str | None, typer.Option("--piece-length", help="Piece size, e.g. 256K or 4M [default: automatic].")
    ] = None,
    tracker: TrackerOption = None,
    web_seed: Annotated[list[str] | None, typer.Option("--web-seed", help="Web seed URL (BEP 19).")] = None,
    comment: Annotated[str | None, typer.Option("--comment", help="Comment stored in the torrent.")] = None,
    private: Annotated[bool, typer.Option("--private", help="Private torrent (BEP 27): no DHT or PEX.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite OUTPUT if it exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Make a .torrent of PATH (hybrid v1+v2 unless told otherwise)."""
    version = torrent_version(v1, v2, hybrid)

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
        with hashing_progress(total) as progress:
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


def register(app: typer.Typer) -> None:
    app.command()(create)
    app.command()(info)
