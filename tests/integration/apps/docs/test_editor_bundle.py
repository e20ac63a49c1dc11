"""The browser editor the daemon serves (src/peerloom/api/web/docs-editor.js) is what web/editor/build.sh makes of
editor.js and the npm packages pinned in its package-lock.json: esbuild's output is deterministic, so a rebuild gives
the committed file byte for byte. `npm ci` fetches the packages from the npm registry on the first run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import peerloom.api.server

WEB = Path(peerloom.api.server.__file__).parent / "web"
pytestmark = pytest.mark.timeout(300)


def test_the_shipped_editor_bundle_rebuilds_byte_for_byte(tmp_path: Path) -> None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        if os.environ.get("CI"):
            raise AssertionError("CI must have node and npm to check the editor bundle")
        pytest.skip("needs node and npm on PATH")
    subprocess.run(["sh", str(WEB / "editor" / "build.sh")], check=True, timeout=280,
                   env={**os.environ, "OUT": str(tmp_path)})
    built = (tmp_path / "docs-editor.js").read_bytes()
    assert built == (WEB / "docs-editor.js").read_bytes(), "rebuild with web/editor/build.sh and commit the result"
    assert re.search(rb"""(from|import)\s*["'](?![./])""", built) is None  # it stands alone: no bare import left
