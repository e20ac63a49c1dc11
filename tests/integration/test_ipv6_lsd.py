"""Local service discovery over IPv6 (BEP 14's group [ff15::efc0:988f]:6771) between two real nodes listening on
every interface, in a network namespace of the test's own (the host's loopback carries no IPv6 multicast): a veth
pair with a unique-local address, and no IPv4 multicast route, so that only the IPv6 group can bring the nodes
together. tests/support/lsd6_swarm.py runs the nodes inside it.

Network namespaces need root and iproute2's `ip`: without them the test skips, except under CI=true, where it fails
(CI runs as root here). The namespace carries this process's pid so parallel runs do not collide, and is removed
however the test ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import peerloom

SRC = Path(peerloom.__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent.parent / "support" / "lsd6_swarm.py"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A namespace with a veth pair (both ends inside, IPv6 only, no duplicate address detection to wait for)."""
    reason = None
    if shutil.which("ip") is None:
        reason = "needs iproute2's `ip` to build a network namespace"
    elif os.geteuid() != 0:
        reason = "needs root to build a network namespace"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"under CI this test must run: it {reason}")
        pytest.skip(reason)
    ns = f"pllsd6{os.getpid()}"
    _ip("netns", "add", ns)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"],
                       check=True, capture_output=True, timeout=10)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
        _ip("-n", ns, "addr", "add", "fd6c:5d00::1/64", "dev", "lan0", "nodad")
        _ip("-n", ns, "link", "set", "lan0", "up")
        _ip("-n", ns, "link", "set", "lan1", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_two_nodes_find_each_other_in_the_ipv6_lsd_group(namespace: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, str(RUNNER), str(tmp_path)],
                         capture_output=True, timeout=40, env=env)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
    result = json.loads(run.stdout.decode().strip().splitlines()[-1])
    assert result["groups"]["leech"] == ["ff15::efc0:988f"]  # the IPv4 group has no route in this namespace
    assert result["done"] and result["same"], result
    assert result["received6"] >= 1 and all(":" in ip for ip in result["peers"]), result
