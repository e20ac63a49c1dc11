"""A small blocking client of the daemon's API, for the CLI (`peerloom ls`, `pause`, and `get`/`share`
when a daemon runs for the home)."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from typing import Any

from peerloom.api.runtime import DaemonInfo
from peerloom.errors import PeerloomError


class DaemonError(PeerloomError):
    """The daemon refused a request, or could not be reached."""


class DaemonClient:
    def __init__(self, info: DaemonInfo, timeout: float = 30.0) -> None:
        self.info = info
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        return self._send(method, path, data, "application/json" if data is not None else None)

    def upload(self, path: str, filename: str, content: bytes, fields: dict[str, str]) -> Any:
        """POST a multipart/form-data form with one file field `torrent` and text fields."""
        boundary = "peerloom-" + secrets.token_hex(12)
        parts = []
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="torrent"; filename="{safe_name}"\r\n'
                     "Content-Type: application/x-bittorrent\r\n\r\n".encode() + content + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self._send("POST", path, b"".join(parts), f"multipart/form-data; boundary={boundary}")

    def _send(self, method: str, path: str, data: bytes | None, content_type: str | None) -> Any:
        request = urllib.request.Request(self.info.api + path, data=data, method=method)
        request.add_header("X-Peerloom-Token", self.info.token)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error") or exc.reason
            except (ValueError, AttributeError):
                message = exc.reason
            raise DaemonError(f"the daemon refused: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DaemonError(f"cannot reach the daemon at {self.info.api}: {reason}") from None
