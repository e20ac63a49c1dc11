"""The folders the daemon's API may point it at: it writes downloads only under its download folder and reads
what it shares only under that folder and the share roots the user gave (`peerloom daemon --share-root DIR`).

Every path from an API request is resolved (`..`, symlinks, `~`) before it is compared with the roots, which
are resolved too: a link inside a root that leads outside counts as outside. The files of a torrent whose
metadata is known are checked as well, so a torrent whose top folder is named like such a link cannot write
through it (the metainfo parser already refuses `..`, absolute and drive-letter components).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from peerloom.errors import PeerloomError
from peerloom.torrent.metainfo import Metainfo


class BadPath(PeerloomError):
    """A path that cannot be read as one (a NUL byte, an unknown `~user`, a link loop)."""


class OutsideRoots(PeerloomError):
    """A path that resolves outside the folders the daemon may use for it."""


@dataclass(frozen=True, slots=True)
class Roots:
    """The resolved download folder and share roots (the download folder is always one of them)."""

    download: Path
    share: tuple[Path, ...]

    @classmethod
    def of(cls, download: Path, share: Iterable[Path] = ()) -> Roots:
        top = download.expanduser().resolve()
        return cls(top, tuple(dict.fromkeys([top, *(Path(p).expanduser().resolve() for p in share)])))

    def save_path(self, given: str | None) -> Path:
        """Where a download goes: `given` (relative: under the download folder), resolved, inside that folder."""
        if not given:
            return self.download
        path = resolve(self.download / user_path(given))
        if not path.is_relative_to(self.download):
            raise OutsideRoots(f"save path {given!r} is outside the daemon's download folder {self.download}: "
                               "give a folder inside it (it is set by `peerloom daemon --save-dir`)")
        return path

    def share_path(self, given: str) -> Path:
        """What to share: an absolute path, resolved, inside a share root. Checked before looking whether it
        exists, so the answer says nothing about what is outside."""
        path = user_path(given)
        if not path.is_absolute():
            raise BadPath(f"give the absolute path of what to share, not {given!r}")
        path = resolve(path)
        if not inside(path, self.share):
            raise OutsideRoots(f"{given!r} is outside the folders this daemon may share "
                               f"({', '.join(map(str, self.share))}): move it into one, or start the daemon "
                               "with --share-root FOLDER")
        return path


def check_files(meta: Metainfo, save_path: Path, roots: Sequence[Path]) -> None:
    """Refuse a torrent any of whose files would be reached through a link leading out of `roots`.
    Blocking (a stat per file and per folder): run it in a thread."""
    folders: dict[tuple[str, ...], Path] = {}
    for f in meta.data_files:
        *parts, name = f.path
        folder = folders.get(tuple(parts))
        if folder is None:
            folder = folders[tuple(parts)] = resolve(save_path.joinpath(*parts))
        target = folder / name
        try:
            linked = target.is_symlink()
        except OSError as exc:  # e.g. a name too long for this file system
            raise BadPath(f"cannot look at {str(target)!r}: {exc.strerror}") from None
        if linked:
            target = resolve(target)
        if not inside(target, roots):
            raise OutsideRoots(f"the torrent's file {'/'.join(f.path)!r} would be reached through a link to "
                               f"{target}, outside {', '.join(map(str, roots))}")


def inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def user_path(text: str) -> Path:
    """A path as the user wrote it, `~` and `~user` expanded (an unknown user is bad input, not a crash)."""
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:
        raise BadPath(f"cannot expand {text!r}: {exc}") from None


def resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a link loop (3.11/3.12), a NUL byte
        raise BadPath(f"cannot resolve {str(path)!r}: {exc}") from None
