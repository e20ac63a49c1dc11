"""Where a running daemon is: HOME/daemon.json says where its API listens (the CLI finds it there) and
HOME/api.token holds the token. The file goes away on a clean stop; after a crash the CLI sees that its pid is
gone. Standard library only, so the CLI can look without loading the web stack."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

RUNTIME_FILE = "daemon.json"


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    """Where a running daemon's API is, as its runtime file says."""

    pid: int
    api: str
    token: str


def read_runtime(home: Path) -> DaemonInfo | None:
    """The daemon running for `home`, if its runtime file names a live process (None otherwise)."""
    try:
        data = json.loads((home / RUNTIME_FILE).read_text())
        token = (home / "api.token").read_text().strip()
        pid, api = int(data["pid"]), str(data["api"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return DaemonInfo(pid, api, token)
