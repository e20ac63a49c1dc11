"""atheris fuzz target for web seeds (BEP 19): the head of a server's answer to a range request, and web seed URLs.

Run: `python tests/fuzz/fuzz_webseed.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target,
the rest is its input. Only WebSeedError may escape `check_response`, and an answer it takes must be exactly the
range asked for; `seed_urls` and `file_url` raise nothing and yield only http(s) URLs made of URL characters.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import harness

from peerloom.codec.bencode import encode
from peerloom.torrent.metainfo import Metainfo
from peerloom.torrent.webseed import (
    RangeRequest,
    WebSeedError,
    check_response,
    file_url,
    parse_content_range,
    seed_urls,
)

FILE_LENGTH = 1000
REQ = RangeRequest(0, 100, 50, 0)
_META = Metainfo.from_info(encode({
    b"name": "ü d".encode(), b"piece length": 16384, b"pieces": bytes(20),
    b"files": [{b"length": 1, b"path": [b"a b", "%ü?#".encode()]}],
}))


def _head(data: bytes) -> None:
    """Whether the whole file was asked for (the top bit) and the status (the other 15 bits), then Content-Range,
    Content-Length, Content-Encoding and Retry-After split by newlines (a missing field: no such header)."""
    if len(data) < 2:
        return
    whole = bool(data[0] & 0x80)
    status = int.from_bytes(data[:2], "big") & 0x7FFF
    fields: list[str | None] = [f.decode("latin-1") for f in data[2:].split(b"\n")][:4]
    fields += [None] * (4 - len(fields))
    content_range, content_length, encoding, retry_after = fields
    req = RangeRequest(0, 0, FILE_LENGTH, 0) if whole else REQ
    try:
        check_response(req, FILE_LENGTH, status, content_range=content_range, content_length=content_length,
                       content_encoding=encoding, retry_after=retry_after)
    except WebSeedError as exc:
        assert exc.retry_after is None or 0 <= exc.retry_after <= 3600
        return
    assert status in (200, 206)
    if status == 200:
        assert whole
    else:
        assert content_range is not None
        first, last, _ = parse_content_range(content_range)
        assert (first, last + 1) == (req.start, req.start + req.length)
    assert content_length is None or int(content_length) == req.length


def _urls(data: bytes) -> None:
    for url in seed_urls(data.decode("utf-8", "replace").split("\n")):
        assert url.lower().startswith(("http://", "https://"))
        out = file_url(url, _META, 0)
        assert urlsplit(out).scheme.lower() in ("http", "https")
        assert urlsplit(out).path.endswith("/%C3%BC%20d/a%20b/%25%C3%BC%3F%23")


TestOneInput = harness.Pick((_head, WebSeedError), (_urls, ()))


def seeds() -> list[bytes]:
    """Valid inputs for every target, to start a corpus from."""
    return [
        b"\x00" + (206).to_bytes(2, "big") + b"bytes 100-149/1000\n50\nidentity",
        b"\x00" + (0x8000 | 200).to_bytes(2, "big") + b"\n1000",
        b"\x00" + (503).to_bytes(2, "big") + b"\n\n\n120",
        b"\x01http://127.0.0.1:8000/files/\nhttps://example.org/x?y=1\nftp://nope/",
    ]


if __name__ == "__main__":
    harness.main(TestOneInput)
