"""The example modules shipped in examples/compute/ are what build.sh makes of their C sources (skipped where the
ziglang package is not installed; a cold zig cache takes a few seconds to build wasi-libc first)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from support.compute_modules import EXAMPLES

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ziglang") is None, reason="needs pip install ziglang")


def test_the_shipped_wasm_files_rebuild_byte_for_byte(tmp_path):
    subprocess.run(["sh", str(EXAMPLES / "build.sh")], check=True, timeout=300,
                   env={**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)})
    for name in ("signal_search.wasm", "hash_search.wasm"):
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes(), name
