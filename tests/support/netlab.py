"""A NAT lab in Linux network namespaces: a "public" network, two NAT boxes, a host behind each.

    with NatLab(nat=("cone", "symmetric")) as lab:
        relay = lab.python(lab.public, "tests/support/nat_agent.py", "--relay-server", stdin=True)  # JSON lines
        lab.run(lab.hosts[0], sys.executable, "-c", "...")            # a command to completion inside a namespace
        daemon, home = lab.daemon(lab.hosts[0], "a", "--port-mapping")  # `peerloom daemon` behind NAT 0
        lab.start_miniupnpd(0)                                          # UPnP-IGD + NAT-PMP on NAT box 0

Layout (nothing is linked to the root namespace; every name carries this run's unique prefix):

    public namespace: bridge `br0` 203.0.113.1/24 (+ .2, .3 for several public peers)
       |-- nat0: wan 203.0.113.10  --  lan 10.18.1.1/24  --  host0: eth0 10.18.1.2 (default route via nat0)
       `-- nat1: wan 203.0.113.11  --  lan 10.18.2.1/24  --  host1: eth0 10.18.2.2 (default route via nat1)

Each NAT box masquerades what leaves its WAN: "cone" keeps the source port when it is free (port-preserving
MASQUERADE, endpoint-independent in practice: hole punching works), "symmetric" picks a random port per connection
(`fully-random`: punching fails). Each also drops NEW connections coming in on its WAN (`ct state new drop` on input):
without it the peer's early punch packet makes a conntrack entry that moves the host's own packet to another source
port, and punching fails even through a cone NAT (FACTS.md). Boxes can also run miniupnpd (`start_miniupnpd`).

Everything is removed on exit, even after a failure: processes started here are stopped by their PID, then the
namespaces are deleted (their veths and bridges go with them). A lab left by a killed test run (its owner PID gone)
is removed by the next one. Needs root and namespaces: `skip_reason()` says why a lab cannot be built here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PUBLIC_NET = "203.0.113"  # TEST-NET-3 (RFC 5737): documentation addresses, never routed
PUBLIC_IPS = (f"{PUBLIC_NET}.1", f"{PUBLIC_NET}.2", f"{PUBLIC_NET}.3")
LAB_PREFIX = "pllab"
MINIUPNPD_EXT_IP = "11.18.0.77"  # miniupnpd announces it as external: ext_ip= must look public; never routed
REPO = Path(__file__).resolve().parents[2]


def _sh(*argv: str, ns: str | None = None, check: bool = True, input: str | None = None) -> str:
    cmd = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    done = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def skip_reason() -> str | None:
    """Why no lab can be built here (None: it can). Only a kernel or user without network namespaces is a reason:
    the tools (ip, nft, miniupnpd) are installed by .ci/run and their absence is an error, not a skip."""
    if os.geteuid() != 0:
        return "the NAT lab needs root (network namespaces)"
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces"
    probe = f"{LAB_PREFIX}probe{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def remove_stale_labs() -> None:
    """Delete the namespaces of labs whose test process is gone (killed before it could clean up)."""
    for line in _sh("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(LAB_PREFIX):
            continue
        owner = name[len(LAB_PREFIX):].split("x", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            _delete_namespace(name)


def _delete_namespace(name: str) -> None:
    pids = _sh("ip", "netns", "pids", name, check=False).split()
    for pid in pids:  # processes a killed lab left behind in that namespace
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


@dataclass
class LabProcess:
    """A process running inside one of the lab's namespaces, with its output in a log file."""

    ns: str
    argv: list[str]
    proc: subprocess.Popen[str]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid  # `ip netns exec` execs the command: this is the command's own PID

    def read_json(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next line the process prints on stdout, as JSON (the lab's agents speak one JSON object a line)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            line = _readline(self.proc.stdout, deadline - time.monotonic())
            if line is None:
                raise AssertionError(f"{self.argv} printed nothing in {timeout} s; log: {self.output()[-3000:]}")
            if line.strip():
                return json.loads(line)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait (SIGKILL if it hangs); the exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return self.proc.returncode


def _readline(stream: Any, timeout: float) -> str | None:
    import select

    if timeout <= 0:
        return None
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        return None
    line = stream.readline()
    return line if line else None


class NatLab:
    """The lab (see the module docstring). `nat` gives each NAT box's kind: "cone" or "symmetric"."""

    def __init__(self, nat: tuple[str, str] = ("cone", "cone")) -> None:
        for kind in nat:
            if kind not in ("cone", "symmetric"):
                raise ValueError(f"unknown NAT kind {kind!r}")
        self.kinds = nat
        self.id = f"{LAB_PREFIX}{os.getpid()}x{uuid.uuid4().hex[:6]}"
        self.public = f"{self.id}pub"
        self.nats = [f"{self.id}nat{i}" for i in range(2)]
        self.hosts = [f"{self.id}h{i}" for i in range(2)]
        self.public_ip = PUBLIC_IPS[0]
        self.nat_wan_ips = [f"{PUBLIC_NET}.{10 + i}" for i in range(2)]
        self.host_ips = [f"10.18.{i + 1}.2" for i in range(2)]
        self.gateway_ips = [f"10.18.{i + 1}.1" for i in range(2)]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.id}-"))
        self.processes: list[LabProcess] = []
        self._namespaces: list[str] = []

    # -- building and removing ------------------------------------------------------------------------------
    def __enter__(self) -> NatLab:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
        if missing:
            raise RuntimeError(f"the NAT lab needs {', '.join(missing)} (.ci/run installs them)")
        remove_stale_labs()
        for ns in (self.public, *self.nats, *self.hosts):
            _sh("ip", "netns", "add", ns)
            self._namespaces.append(ns)
            _sh("ip", "link", "set", "lo", "up", ns=ns)
        pub = self.public
        _sh("ip", "link", "add", "br0", "type", "bridge", ns=pub)
        for ip in PUBLIC_IPS:
            _sh("ip", "addr", "add", f"{ip}/24", "dev", "br0", ns=pub)
        _sh("ip", "link", "set", "br0", "up", ns=pub)
        for i, (nat, host) in enumerate(zip(self.nats, self.hosts, strict=True)):
            # veth pairs created directly inside their namespaces: nothing ever appears in the root namespace
            _sh("ip", "link", "add", "wan", "netns", nat, "type", "veth", "peer", "name", f"up{i}", "netns", pub)
            _sh("ip", "link", "set", f"up{i}", "master", "br0", "up", ns=pub)
            _sh("ip", "link", "add", "lan", "netns", nat, "type", "veth", "peer", "name", "eth0", "netns", host)
            _sh("ip", "addr", "add", f"{self.nat_wan_ips[i]}/24", "dev", "wan", ns=nat)
            _sh("ip", "addr", "add", f"{self.gateway_ips[i]}/24", "dev", "lan", ns=nat)
            _sh("ip", "link", "set", "wan", "up", ns=nat)
            _sh("ip", "link", "set", "lan", "up", ns=nat)
            _sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=nat)
            _sh("nft", "-f", "-", ns=nat, input=self._nat_rules(self.kinds[i]))
            _sh("ip", "addr", "add", f"{self.host_ips[i]}/24", "dev", "eth0", ns=host)
            _sh("ip", "link", "set", "eth0", "up", ns=host)
            _sh("ip", "route", "add", "default", "via", self.gateway_ips[i], ns=host)

    @staticmethod
    def _nat_rules(kind: str) -> str:
        flags = " fully-random" if kind == "symmetric" else ""
        return f"""
table ip labnat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade{flags}
    }}
}}
table inet labfilter {{
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state new drop
    }}
}}
"""

    def close(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop(timeout=10)
        self.processes.clear()
        for ns in reversed(self._namespaces):
            _delete_namespace(ns)
        self._namespaces.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- running things inside ------------------------------------------------------------------------------
    def run(self, ns: str, *argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside `ns`."""
        done = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout,
                              env=self.env())
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} in {ns} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def spawn(self, ns: str, *argv: str, stdin: bool = False, json_stdout: bool = False) -> LabProcess:
        """Start a command inside `ns`; stopped by its PID when the lab closes (or by `LabProcess.stop`).
        With `json_stdout`, stdout is a pipe (read it with `read_json`) and stderr goes to the log."""
        log = self.workdir / f"{len(self.processes)}-{Path(argv[0]).name}.log"
        out = open(log, "w")  # noqa: SIM115 - the child keeps it; closed here once it is handed over
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv],
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if json_stdout else out, stderr=out, text=True, env=self.env(),
            )
        finally:
            out.close()
        process = LabProcess(ns, list(argv), proc, log)
        self.processes.append(process)
        return process

    def python(self, ns: str, *args: str, stdin: bool = False) -> LabProcess:
        """This repository's Python (with its src/ first on the path) inside `ns`, speaking JSON lines on stdout."""
        return self.spawn(ns, sys.executable, *args, stdin=stdin, json_stdout=True)

    def daemon(self, ns: str, name: str, *extra: str) -> tuple[LabProcess, Path]:
        """A `peerloom daemon` inside `ns`, its home in the lab's workdir; returns it and its home."""
        home = self.workdir / name
        home.mkdir()
        process = self.spawn(ns, sys.executable, "-m", "peerloom", "daemon", "--home", str(home),
                             "--api", "127.0.0.1:0", "--no-dht", "--no-lsd", "--save-dir", str(home / "data"), *extra)
        deadline = time.monotonic() + 30
        while not (home / "daemon.json").exists():
            if process.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the daemon in {ns} did not start: {process.output()[-3000:]}")
            time.sleep(0.1)
        return process, home

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), str(REPO), env.get("PYTHONPATH")) if p)
        return env

    # -- miniupnpd on a NAT box ------------------------------------------------------------------------------
    def start_miniupnpd(self, index: int, *, enable_natpmp: bool = True) -> LabProcess:
        """Debian's miniupnpd (nftables variant) on NAT box `index`, serving UPnP-IGD and NAT-PMP to its LAN (only
        UPnP-IGD with `enable_natpmp=False`: a client must then use UPnP-IGD).

        Its packaged nft init script is broken, so its tables are created here. It refuses to map anything while its
        WAN address is a reserved one (ours: TEST-NET-3), unless `ext_ip=` names a public-looking address: it then
        announces that address, while the DNAT rules it adds match on the WAN interface and port only, so the
        mapping still answers on the box's real WAN address."""
        nat = self.nats[index]
        _sh("nft", "-f", "-", ns=nat, input="""
table inet miniupnpd {
    chain miniupnpd { }
    chain prerouting_miniupnpd { }
    chain postrouting_miniupnpd { }
    chain forward { type filter hook forward priority filter; policy accept; jump miniupnpd; }
    chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump prerouting_miniupnpd; }
    chain postrouting { type nat hook postrouting priority srcnat; policy accept; jump postrouting_miniupnpd; }
}
""")
        conf = self.workdir / f"miniupnpd{index}.conf"
        conf.write_text("\n".join([
            "ext_ifname=wan",
            f"ext_ip={MINIUPNPD_EXT_IP}",
            "listening_ip=lan",
            "http_port=0",
            f"enable_natpmp={'yes' if enable_natpmp else 'no'}",
            "enable_upnp=yes",
            "secure_mode=yes",
            "system_uptime=yes",
            f"lease_file={self.workdir / f'miniupnpd{index}.leases'}",
            f"uuid={uuid.uuid4()}",
            "upnp_table_name=miniupnpd",
            "upnp_nat_table_name=miniupnpd",
            "upnp_forward_chain=miniupnpd",
            "upnp_nat_chain=prerouting_miniupnpd",
            "upnp_nat_postrouting_chain=postrouting_miniupnpd",
            "allow 1024-65535 10.18.0.0/16 1024-65535",
            "deny 0-65535 0.0.0.0/0 0-65535",
            "",
        ]))
        # its own pid file: the default /var/run/miniupnpd.pid is shared by every namespace, and a miniupnpd another
        # lab runs at the same time would make this one exit with "MiniUPnPd is already running"
        process = self.spawn(nat, shutil.which("miniupnpd") or "/usr/sbin/miniupnpd", "-d", "-f", str(conf),
                             "-P", str(self.workdir / f"miniupnpd{index}.pid"))
        deadline = time.monotonic() + 10
        while "Listening for NAT-PMP" not in process.output() and "HTTP listening on port" not in process.output():
            if process.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"miniupnpd did not start: {process.output()[-3000:]}")
            time.sleep(0.05)
        return process

    def nft_ruleset(self, ns: str) -> str:
        return _sh("nft", "list", "ruleset", ns=ns)
