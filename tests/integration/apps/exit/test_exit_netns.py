"""The exit in network namespaces: a web server reachable only from the exit's namespace (the client's curl cannot
reach it directly) serves a download through `peerloom connect socks` in the client's namespace and `peerloom connect
share` in the exit's, byte-identical; both homes count the same bytes. Private destinations are allowed explicitly
(the lab's addresses are RFC 1918). The refusals are the loopback tests' (test_exit.py): each process here costs
seconds to start on a busy machine."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from support.exit_net import body, long_command, recorded_traffic
from support.exit_netns import EXIT_IP, WEB_IP, ExitNamespaces, skip_reason

from peerloom.identity import Identity

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")]
WEB_PORT = 8080


async def run(*argv: str, timeout: float = 60) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, stdout + stderr


async def test_a_download_from_a_server_only_the_exit_reaches_is_byte_identical(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "data.bin").write_bytes(body())
    client_home, exit_home = tmp_path / "client", tmp_path / "exit"
    client_id = str(Identity.load_or_create(client_home).peer_id)
    url = f"http://{WEB_IP}:{WEB_PORT}/data.bin"
    py = sys.executable
    with ExitNamespaces() as lab:
        web = await asyncio.create_subprocess_exec(
            *lab.exec(lab.web), py, "-m", "http.server", str(WEB_PORT), "--bind", WEB_IP, "--directory", str(site),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            ok, _ = await run(*lab.exec(lab.exit), "curl", "-s", "-o", "/dev/null", "--retry", "20",
                              "--retry-connrefused", "--retry-delay", "1", url)
            assert ok == 0  # the web server is up, for the exit's namespace
            code, _ = await run(*lab.exec(lab.client), "curl", "-s", "--max-time", "3", "-o", "/dev/null", url)
            assert code != 0  # ... and out of the client's reach
            share = [*lab.exec(lab.exit), py, "-m", "peerloom", "connect", "share", "--allow", client_id,
                     "--allow-private", "--no-daemon", "--no-dht", "--listen", EXIT_IP, "--home", str(exit_home),
                     "--json"]
            socks = [*lab.exec(lab.client), py, "-m", "peerloom", "connect", "socks", "--listen", "127.0.0.1:0",
                     "--no-daemon", "--home", str(client_home), "--json", "--via"]
            out = tmp_path / "download.bin"
            async with long_command(*share) as shared, long_command(*socks, shared["addrs"][0]) as proxy:
                code, output = await run(*lab.exec(lab.client), "curl", "-sS", "--max-time", "60",
                                         "--socks5-hostname", proxy["listen"], url, "-o", str(out))
            assert code == 0, output
            assert out.read_bytes() == body()
        finally:
            web.terminate()
            await web.wait()
    exit_id = shared["addrs"][0].rsplit("/", 1)[1]
    served = recorded_traffic(exit_home)["served"][client_id]
    used = recorded_traffic(client_home)["used"][exit_id]
    assert served == used and served["connections"] == 1 and served["from_destination"] > len(body())
