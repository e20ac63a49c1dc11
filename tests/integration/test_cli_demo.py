"""`peerloom demo`: a seeder and leechers as separate processes; the leechers, given the magnet link alone, find the
swarm through the nodes' own loopback DHT and every copy verifies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def test_demo_leechers_find_the_swarm_through_the_dht(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "peerloom", "demo", "--size", "1M", "--leechers", "2", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loopback DHT" in result.stderr
    rows = re.findall(r"leecher (\d) .*? yes .*? ([\d.]+) s", result.stdout)
    assert sorted(n for n, _ in rows) == ["1", "2"], result.stdout
    assert all(float(seconds) < 30 for _, seconds in rows)
