"""libp2p mDNS between two real nodes on one LAN: two network namespaces joined by a veth pair, a node process in each
(tests/support/mdns_node.py, with only mDNS to find peers), each of which must find the other through mDNS, dial it
and report it connected; and each must stop with no thread left behind.

Network namespaces need root and iproute2's `ip`: without them the test skips, except under CI=true, where it fails
(CI runs as root here). The namespaces carry this process's pid so parallel runs do not collide, and are removed
however the test ends.
"""

from __future__ import annotations

import itertools
import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import peerloom
from peerloom.identity import Identity, PeerId
from peerloom.node import Node, Settings

SRC = Path(peerloom.__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent.parent / "support" / "mdns_node.py"
DEADLINE = 15.0  # seconds for both nodes to start, find each other and connect (measured: ~2-3 s)
_count = itertools.count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _cannot_run() -> str | None:
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` to build network namespaces"
    if os.geteuid() != 0:
        return "needs root to build network namespaces"
    return None


@pytest.fixture
def lan() -> Iterator[list[tuple[str, str]]]:
    """Two namespaces on one link: [(namespace, its address), ...]; removed afterwards, whatever happened."""
    reason = _cannot_run()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"under CI this test must run: it {reason}")
        pytest.skip(reason)
    tag = f"{os.getpid()}{next(_count)}"
    spaces = [(f"plmdns{tag}a", f"plv{tag}a", "10.213.0.1"), (f"plmdns{tag}b", f"plv{tag}b", "10.213.0.2")]
    made: list[str] = []
    try:
        for ns, _, _ in spaces:
            _ip("netns", "add", ns)
            made.append(ns)
        (ns_a, veth_a, _), (ns_b, veth_b, _) = spaces
        _ip("link", "add", veth_a, "netns", ns_a, "type", "veth", "peer", "name", veth_b, "netns", ns_b)
        for ns, veth, address in spaces:
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", veth)
            _ip("-n", ns, "link", "set", veth, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            # a LAN host has a route for multicast (usually its default route); zeroconf does not need it (it picks
            # the interface per socket), js-libp2p's multicast-dns does
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", veth)
        yield [(ns, address) for ns, _, address in spaces]
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def _start(ns: str, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, str(RUNNER), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


Events = dict[str, list[dict[str, Any]]]


def _read_until(procs: dict[str, subprocess.Popen[bytes]], events: Events, done: Callable[[Events], bool],
                deadline: float) -> bool:
    """Read the nodes' JSON lines into `events` until `done(events)` (True) or the deadline (False)."""
    with selectors.DefaultSelector() as sel:
        buffers: dict[str, bytes] = {}
        for name, proc in procs.items():
            assert proc.stdout is not None
            sel.register(proc.stdout, selectors.EVENT_READ, name)
            buffers[name] = b""
        while not done(events):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for key, _ in sel.select(left):
                name = key.data
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buffers[name] += chunk
                *lines, buffers[name] = buffers[name].split(b"\n")
                events[name] += [json.loads(line) for line in lines if line.strip()]
    return True


def test_two_nodes_on_one_lan_find_each_other_through_mdns_and_connect(lan, tmp_path: Path) -> None:
    (ns_a, ip_a), (ns_b, ip_b) = lan
    # a listens on every interface (its veth address is advertised, not loopback), b on its LAN address only
    procs = {"a": _start(ns_a, "--home", str(tmp_path / "a"), "--listen", "0.0.0.0"),
             "b": _start(ns_b, "--home", str(tmp_path / "b"), "--listen", ip_b)}
    events: Events = {"a": [], "b": []}
    started = time.monotonic()
    try:
        def ids(evs: Events) -> dict[str, str]:
            return {n: e["peer_id"] for n, es in evs.items() for e in es if e["event"] == "ready"}

        def connected(evs: Events) -> bool:
            peer_ids = ids(evs)
            return len(peer_ids) == 2 and all(
                any(e["event"] == "connected" and e["peer"] == peer_ids[other] for e in evs[name])
                for name, other in (("a", "b"), ("b", "a"))
            )

        ok = _read_until(procs, events, connected, started + DEADLINE)
        took = time.monotonic() - started
        if not ok:
            errors = {n: p.stderr.read1(65536).decode(errors="replace") if p.poll() is not None else "(running)"
                      for n, p in procs.items() if p.stderr is not None}
            pytest.fail(f"no mDNS connection within {DEADLINE} s: {events} {errors}")
        peer_ids = ids(events)
        ready = {n: next(e for e in es if e["event"] == "ready") for n, es in events.items()}
        assert [a.split("/tcp/")[0] for a in ready["a"]["advertised"]] == [f"/ip4/{ip_a}"]
        assert [a.split("/tcp/")[0] for a in ready["b"]["advertised"]] == [f"/ip4/{ip_b}"]
        assert all(a.endswith(f"/p2p/{peer_ids[n]}") for n in "ab" for a in ready[n]["advertised"])
        # the node that dialled had found the other through mDNS first (only mDNS could tell it where to dial)
        assert any(peer_ids["b" if n == "a" else "a"] in e["discovered"]
                   for n, es in events.items() for e in es if e["event"] == "connected")
        print(f"mDNS: both nodes connected {took:.1f} s after start")

        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()  # the runners stop when their stdin closes

        def stopped(evs: Events) -> bool:
            return all(any(e["event"] == "stopped" for e in es) for es in evs.values())

        assert _read_until(procs, events, stopped, time.monotonic() + 10), events
        for name, es in events.items():
            assert next(e for e in es if e["event"] == "stopped")["threads"] == ["MainThread"], name
        for proc in procs.values():
            assert proc.wait(timeout=10) == 0
    finally:
        _stop(procs)


def test_odd_and_hostile_records_are_skipped_and_the_node_keeps_running(lan, tmp_path: Path) -> None:
    """A responder on the LAN announces a truncated TXT, an instance claiming the node's own PeerId, and a mix of a
    loopback address, another peer's address, junk and one good address: the node takes only the good address.
    The fakes are announced in that order, so the node has judged the first two once it has taken the third."""
    (ns_a, ip_a), (ns_b, ip_b) = lan
    x, y = (PeerId.from_public_key(Identity.generate().public_key) for _ in range(2))
    me = PeerId.from_public_key(Identity.load_or_create(tmp_path / "node").public_key)  # the node's key, made first
    mixed = [f"dnsaddr=/ip4/127.0.0.1/tcp/9/p2p/{x}", f"dnsaddr=/ip4/{ip_a}/tcp/8/p2p/{y}", "dnsaddr=junk",
             f"dnsaddr=/ip4/{ip_a}/tcp/9/p2p/{x}"]
    fakes = {"garbage1": b"\x05abc", "ownid1": _txt(f"dnsaddr=/ip4/{ip_a}/tcp/1/p2p/{me}"), "mixed1": _txt(*mixed)}
    procs = {"node": _start(ns_b, "--home", str(tmp_path / "node"), "--listen", ip_b),
             "fake": _start(ns_a, "--listen", ip_a, "--fake", *(f"{n}={t.hex()}" for n, t in fakes.items()))}
    events: Events = {"node": [], "fake": []}
    try:
        node_stdin = procs["node"].stdin
        assert node_stdin is not None
        deadline = time.monotonic() + DEADLINE
        found: dict[str, Any] = {}
        while not found.get("discovered") or found["malformed"] < 1 or found["own"] < 1:
            assert time.monotonic() < deadline, f"the node did not take the fake peer: {found} {events}"
            node_stdin.write(b"status\n")
            node_stdin.flush()
            count = len(events["node"])
            assert _read_until(procs, events, lambda evs, seen=count: len(evs["node"]) > seen, deadline)
            found = events["node"][-1] if events["node"][-1]["event"] == "status" else found
            time.sleep(0.3)
        assert found["discovered"] == {str(x): [f"/ip4/{ip_a}/tcp/9"]}  # never itself, nor y, nor loopback
        assert procs["node"].poll() is None
    finally:
        _stop(procs)


def _txt(*strings: str) -> bytes:
    return b"".join(bytes((len(s),)) + s.encode() for s in strings)


async def test_a_node_on_loopback_runs_no_mdns(tmp_path: Path) -> None:
    """Loopback only: nothing to offer the LAN, and test nodes on one host must not find each other by surprise."""
    settings = Settings(dht=False, lsd=False, trackers=False, mdns=True)
    async with Node(tmp_path / "home", host="127.0.0.1", settings=settings) as node:
        assert node.mdns is None


@pytest.mark.parametrize("command", ["share", "get", "daemon"])
def test_every_command_running_a_node_takes_no_mdns(command: str) -> None:
    from typer.testing import CliRunner

    from peerloom.cli import app
    from peerloom.cli.running import node_settings

    shown = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "--no-mdns" in shown.output
    assert node_settings(no_mdns=True).mdns is False and node_settings().mdns is True
