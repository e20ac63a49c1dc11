"""What the CLI and the daemon's API show of a home's Bitcoin node: the status the running node writes
(HOME/btc/NETWORK/status.json: tip, peers, mempool), or, when none runs, the tip stored in the chain state."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from peerloom.state import State

from .chainstate import MIGRATIONS
from .params import NetworkParams
from .serialize import hash_hex

STATUS_FILE = "status.json"


def status_path(home: Path, params: NetworkParams) -> Path:
    return Path(home) / "btc" / params.name / STATUS_FILE


def running_status(home: Path, params: NetworkParams) -> dict[str, Any] | None:
    """The status of the node running on `home` for `params`, or None when no node runs there."""
    try:
        status = json.loads(status_path(home, params).read_text())
        os.kill(int(status["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return status if isinstance(status, dict) else None


def stored_tip(state: State, params: NetworkParams) -> dict[str, Any]:
    """The tip in the home's chain state (genesis when nothing was synced), without loading the block index."""
    schema = state.schema("btc", MIGRATIONS)
    rows = schema.execute("SELECT b.height, b.hash FROM btc_meta m JOIN btc_blocks b ON b.hash = m.value "
                          "WHERE m.key = 'tip'")
    height, tip = (rows[0][0], bytes(rows[0][1])) if rows else (0, params.genesis_hash)
    return {"network": params.name, "height": height, "hash": hash_hex(tip), "running": False, "peers": [],
            "mempool": []}


def home_status(home: Path, params: NetworkParams, state: State) -> dict[str, Any]:
    """The running node's status (with `running: true`), else the stored tip."""
    status = running_status(home, params)
    if status is None:
        return stored_tip(state, params)
    return {"network": params.name, "height": status["height"], "hash": status["hash"], "running": True,
            "peers": status["peers"], "mempool": status["mempool"]}
