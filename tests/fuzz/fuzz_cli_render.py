"""atheris fuzz target for the CLI's rendering of untrusted names: `info` of a torrent and of a magnet link, `ls`'s
table of the daemon's torrents, `get`'s progress bar and error line.

Run: `python tests/fuzz/fuzz_cli_render.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target,
the rest is a name (UTF-8, undecodable bytes kept as surrogates as a file system's names are). Only MetainfoError
and MagnetError may escape (a name a torrent or a magnet link cannot hold); whatever is printed holds no raw control
character (ESC, CR, C1, bidi controls, …) and no markup or emoji code is interpreted: the name is shown as
`printable` writes it.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from urllib.parse import quote

import harness
import typer

from peerloom.cli.common import UNSAFE, fail, out, printable, progress_label, transfer_progress
from peerloom.cli.daemon import torrents_table
from peerloom.cli.files import show_magnet, show_metainfo
from peerloom.codec.bencode import encode
from peerloom.torrent.magnet import Magnet, MagnetError
from peerloom.torrent.metainfo import Metainfo, MetainfoError


def _printed(render: object) -> str:
    """What `render()` prints on stdout and stderr (the CLI's consoles write to whatever they are then)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        render()  # type: ignore[operator]
    text = buffer.getvalue()
    assert not UNSAFE.search(text.replace("\n", "")), repr(text)
    assert text.count("\n") == len(text.splitlines()), repr(text)  # a name never adds a line of its own
    return text


def _show_name(name: str, text: str) -> None:
    assert printable(name) in text, (name, text)


def _info(name: str) -> None:
    raw = name.encode("utf-8", "surrogateescape")
    for info in ({b"name": raw, b"piece length": 16384, b"length": 1, b"pieces": bytes(20)},
                 {b"name": raw, b"piece length": 16384, b"pieces": bytes(20),
                  b"files": [{b"length": 1, b"path": [raw]}, {b"length": 2, b"path": [b"other", raw]}]}):
        meta = Metainfo.parse(encode({b"info": info, b"comment": raw}))
        text = _printed(lambda meta=meta: show_metainfo(meta, False))
        _show_name(meta.name, text)
        as_json = _printed(lambda meta=meta: show_metainfo(meta, True))
        assert json.loads(as_json)["name"] == meta.name


def _magnet(name: str) -> None:
    link = f"magnet:?xt=urn:btih:{'ab' * 20}&dn={quote(name.encode('utf-8', 'surrogateescape'), safe='')}"
    magnet = Magnet.parse(link)
    _show_name(magnet.name or "", _printed(lambda: show_magnet(magnet, False)))
    assert json.loads(_printed(lambda: show_magnet(magnet, True)))["name"] == magnet.name


def _ls(name: str) -> None:
    summary = {"id": "ab" * 20, "name": name, "size": 12345, "progress": 0.5, "download_rate": 2048.0,
               "upload_rate": 0.0, "peers": 3, "state": "error", "error": name}
    _printed(lambda: out.print(torrents_table([summary, {**summary, "error": None, "state": name}])))


def _get(name: str) -> None:
    progress = transfer_progress()
    task = progress.add_task(progress_label(name, "downloading"), total=None, peers=0)
    _printed(lambda: out.print(progress.get_renderable()))
    progress.update(task, description=progress_label(name, "fetching metadata"), total=100, completed=50, peers=2)
    _printed(lambda: out.print(progress.get_renderable()))

    def error_line() -> None:
        with contextlib.suppress(typer.Exit):
            fail(f"cannot open {name}: No space left on device")

    line = _printed(error_line)
    assert line.startswith("error: ") and line.count("\n") == 1
    _show_name(name, line)


def _named(render: Callable[[str], None]) -> Callable[[bytes], None]:
    """The input as a name: UTF-8, undecodable bytes kept as surrogates (as a file system's names are)."""
    return lambda data: render(data.decode("utf-8", "surrogateescape"))


TestOneInput = harness.Pick(*map(_named, (_info, _magnet, _ls, _get)), allowed=(MetainfoError, MagnetError))


def seeds() -> list[bytes]:
    """Names that were trouble: markup (a stray closing tag crashed rich), emoji codes, terminal escapes, CR, C1, bidi
    overrides, undecodable bytes, zero-width and wide characters."""
    names = ["[/x]", "[bold]x[/bold]", ":-1:", "\x1b[31mred\x1b[0m", "cr\rover", "c1\x9b2J", "bidi\u202eevil.exe",
             "tab\there", "new\nline", "\udcff\udcfe", "zw\u200bj\u200dx", "日本語の名前", "🎵 album", "[link=x]y"]
    raw = [name.encode("utf-8", "surrogateescape") for name in names]
    return [bytes([target]) + name for target in range(len(TestOneInput)) for name in raw]


if __name__ == "__main__":
    harness.main(TestOneInput)
