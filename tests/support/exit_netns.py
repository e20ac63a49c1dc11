"""Three network namespaces for the exit: a client, an exit, and a web server that only the exit can reach.

    client ns: eth0 10.19.1.2 ==veth== exit ns: eth0 10.19.1.1, eth1 10.19.2.1 ==veth== web ns: eth0 10.19.2.2 (all /24)

The client has a route to the exit's subnet only, and the exit does not forward (a new namespace starts with
ip_forward off), so the web server is out of the client's reach except through the exit. Nothing is linked to the
root namespace; every name carries this run's PID and a random part, and the namespaces (with their veths) are
deleted on exit, also after a failure. Needs root and namespaces: `skip_reason()` says why not.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

CLIENT_IP, EXIT_IP, EXIT_WEB_IP, WEB_IP = "10.19.1.2", "10.19.1.1", "10.19.2.1", "10.19.2.2"


def _ip(*argv: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")


def skip_reason() -> str | None:
    """Why the namespaces cannot be made here (None: they can): only a user or kernel without them."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces"
    probe = f"plxprobe{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class ExitNamespaces:
    """The three namespaces, built on enter and deleted on exit; `exec(ns)` prefixes a command to run inside."""

    def __init__(self) -> None:
        tag = f"{os.getpid()}{uuid.uuid4().hex[:4]}"
        self.client, self.exit, self.web = (f"plx{name}{tag}" for name in ("c", "e", "w"))
        self._made: list[str] = []

    def __enter__(self) -> ExitNamespaces:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        for ns in (self.client, self.exit, self.web):
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("link", "set", "lo", "up", ns=ns)
        # veth pairs are made inside the exit namespace, then one end moved: nothing touches the root namespace
        _ip("link", "add", "eth0", "type", "veth", "peer", "name", "toclient", ns=self.exit)
        _ip("link", "set", "toclient", "netns", self.client, ns=self.exit)
        _ip("link", "set", "toclient", "name", "eth0", ns=self.client)
        _ip("link", "add", "eth1", "type", "veth", "peer", "name", "toweb", ns=self.exit)
        _ip("link", "set", "toweb", "netns", self.web, ns=self.exit)
        _ip("link", "set", "toweb", "name", "eth0", ns=self.web)
        for ns, dev, addr in ((self.client, "eth0", CLIENT_IP), (self.exit, "eth0", EXIT_IP),
                              (self.exit, "eth1", EXIT_WEB_IP), (self.web, "eth0", WEB_IP)):
            _ip("addr", "add", f"{addr}/24", "dev", dev, ns=ns)
            _ip("link", "set", dev, "up", ns=ns)

    def exec(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def close(self) -> None:
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self._made.clear()
