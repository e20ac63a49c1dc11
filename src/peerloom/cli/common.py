"""What several of the CLI's command modules share: the consoles, printing untrusted text, one-line errors, reading
and showing sizes, rates and ports, the progress bars."""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

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

from peerloom.errors import PeerloomError

if TYPE_CHECKING:
    from peerloom.codec.multiaddr import Multiaddr
    from peerloom.torrent.create import Source
    from peerloom.torrent.metainfo import Version


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


def hashing_progress(total: int) -> Progress:
    """A bar for hashing `total` bytes on stderr (none for an empty source)."""
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




def transfer_progress() -> Progress:
    """A torrent's bar on stderr: done, size, rate, peers, time left."""
    return Progress(
        description_column(),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        DownloadColumn(binary_units=True),
        RateColumn(),
        TextColumn("{task.fields[peers]} peers"),
        TimeRemainingColumn(),
        console=err,
    )


def progress_label(name: str, state: str) -> str:
    """A torrent's progress bar label: its name, and its state unless it is moving data."""
    return printable(name if state in ("downloading", "seeding") else f"{name} ({state})")


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


def torrent_version(v1: bool, v2: bool, hybrid: bool) -> Version:
    """The version the --v1/--v2/--hybrid flags ask for (hybrid unless told); more than one is a usage error."""
    if sum((v1, v2, hybrid)) > 1:
        fail("choose one of --v1, --v2 and --hybrid", 2)
    return "v1" if v1 else "v2" if v2 else "hybrid"


def parse_multiaddr(text: str, option: str) -> Multiaddr:
    """A multiaddr to dial; a TCP port in it is checked as every port option is (port 0 cannot be dialled)."""
    from peerloom.codec.multiaddr import Multiaddr, MultiaddrError  # with the identity's cryptography: not for --help

    try:
        addr = Multiaddr(text)
    except MultiaddrError as exc:
        raise UserError(f"{option}: {exc}") from exc
    tcp = addr.value_for("tcp")
    if tcp is not None:
        parse_port(tcp, f"the /tcp of {option}")
    return addr


def parse_secure_peers(values: list[str] | None) -> list[Multiaddr]:
    """--peer multiaddrs of the secure layer: a TCP address, with or without the /p2p/ id (Noise learns the key)."""
    addrs = [parse_multiaddr(v, "--peer") for v in values or []]
    for addr in addrs:
        if addr.value_for("tcp") is None:
            raise UserError(f"--peer takes /ip4/HOST/tcp/PORT[/p2p/PEERID] (got {printable(repr(str(addr)))})")
    return addrs


def parse_bootstrap(values: list[str] | None) -> list[tuple[str, int]]:
    """HOST:PORT (a name or an address, [IPv6]:PORT) of DHT nodes to join through."""
    return [parse_host_port(v, "--bootstrap") for v in values or []]
