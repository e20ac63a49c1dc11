"""`peerloom pubsub sub|pub|peers` as users run them, in child processes on loopback: a `sub` receives what a `pub`
in another process sends through `--peer`; the same commands hand over to the daemon running for their home; a bad
`--peer` or topic is one line and a non-zero exit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.cli import peerloom
from support.daemon import DaemonProcess
from support.swarm import node

from peerloom.identity import Identity

# hang guards sized for the parallel suite on a loaded 2-core machine: a test here starts up to four Python
# processes (~1.5 s of CPU each) and took 27 s of its former 30 under -n 3
pytestmark = pytest.mark.timeout(90)
TOPIC = "peerloom-cli/news"
LOOPBACK = ("--no-dht", "--listen", "127.0.0.1")  # one-shot nodes stay on loopback, no DHT


class Sub:
    """A running `peerloom pubsub sub`: its address (a one-shot node's), and its stdout lines as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.addr = ""

    async def started(self, marker: str) -> str:
        """Read stderr until the line with `marker`; that line."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(30):
            while True:
                line = (await self.proc.stderr.readline()).decode()
                assert line, "sub exited before it subscribed"
                if marker in line:
                    return line

    async def line(self) -> str:
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), 10)).decode()

    async def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit code and what was left on stderr."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.stderr is not None
        rest = await asyncio.wait_for(self.proc.stderr.read(), 10)
        return await asyncio.wait_for(self.proc.wait(), 10), rest.decode()


@contextlib.asynccontextmanager
async def sub(*args: str, marker: str = "reachable at") -> AsyncIterator[Sub]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peerloom", "pubsub", "sub", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    running = Sub(proc)
    try:
        line = await running.started(marker)
        found = re.search(r"/ip4/\S+?/p2p/\w+", line)
        running.addr = found[0] if found else ""
        yield running
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def peer_id_of(home: Path) -> str:
    return str(Identity.load_or_create(home).peer_id)


async def test_sub_prints_what_pub_sends_from_another_process(tmp_path: Path) -> None:
    publisher = peer_id_of(tmp_path / "pub")
    async with sub(TOPIC, "--json", "--home", str(tmp_path / "sub"), *LOOPBACK) as s:
        code, out, err = await peerloom("pubsub", "pub", TOPIC, "hello \x1b[2J ✓", "--peer", s.addr,
                                        "--home", str(tmp_path / "pub"), *LOOPBACK, "--json")
        assert code == 0, err
        sent = json.loads(out)
        assert sent["peers"] == 1 and sent["topic"] == TOPIC and "published to 1 peer" in err
        raw = await s.line()
        assert "\x1b" not in raw and raw.isascii()  # the escape sequence stays a JSON escape
        got = json.loads(raw)
        assert got == {"topic": TOPIC, "from": publisher, "seqno": got["seqno"], "msg_id": sent["msg_id"],
                       "data": "hello \x1b[2J ✓", "base64": False, "received_from": publisher}
        code, out, err = await peerloom_stdin(b"\xff\x00 bytes", "pubsub", "pub", TOPIC, "-", "--peer", s.addr,
                                              "--home", str(tmp_path / "pub"), *LOOPBACK)
        assert code == 0, err
        got = json.loads(await s.line())
        assert (got["data"], got["base64"], got["msg_id"]) == ("/wAgYnl0ZXM=", True, out.strip())
        code, rest = await s.interrupt()
    assert code == 0, rest


async def peerloom_stdin(data: bytes, *args: str) -> tuple[int, str, str]:
    """`python -m peerloom ARGS` with `data` on its stdin."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "peerloom", *args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(data), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def running_daemon(tmp: Path) -> AsyncIterator[DaemonProcess]:
    daemon = DaemonProcess(tmp / "daemon", tmp / "dl")
    try:
        yield await daemon.start()
    finally:
        exit_code = await asyncio.to_thread(daemon.stop)
    assert exit_code == 0, daemon.log.read_text()[-2000:]


async def test_pub_and_peers_hand_over_to_the_daemon_of_their_home(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, \
            sub(TOPIC, "--home", str(tmp_path / "one-shot"), *LOOPBACK) as one_shot:
        home = ("--home", str(daemon.home))
        # the daemon dials the one-shot subscriber (--peer) and publishes as itself
        code, out, err = await peerloom("pubsub", "pub", TOPIC, "from the daemon", "--peer", one_shot.addr, *home)
        assert code == 0 and "published to 1 peer" in err, err
        daemon_id = daemon.runtime["secure_addrs"][0].rsplit("/", 1)[1]
        assert await one_shot.line() == f"{daemon_id}: from the daemon\n"
        code, out, err = await peerloom("pubsub", "peers", TOPIC, *home)
        assert code == 0, err
        header, row = out.splitlines()
        assert header.split() == ["Peer", "Mesh", "Score", "Protocol"]
        peer_id, mesh, score, protocol = row.split()
        assert peer_id == one_shot.addr.rsplit("/", 1)[1]  # the whole PeerId, never cut to fit
        assert (mesh, protocol) == ("no", "/meshsub/1.2.0")  # the daemon publishes without subscribing
        float(score)


async def test_sub_follows_the_daemons_events_and_leaves_the_topic_on_ctrl_c(tmp_path: Path) -> None:
    outsider = peer_id_of(tmp_path / "other")
    async with running_daemon(tmp_path) as daemon, \
            sub(TOPIC, "--home", str(daemon.home), marker="through the daemon") as followed:
        status, topics = await daemon.call("GET", "/api/v1/pubsub/topics")
        assert status == 200 and [t["topic"] for t in topics["topics"]] == [TOPIC]
        # what another node publishes to the daemon reaches the command, one line, escaped
        code, _, err = await peerloom("pubsub", "pub", TOPIC, "to the daemon\n2nd line", "--peer",
                                      daemon.runtime["secure_addrs"][0], "--home", str(tmp_path / "other"), *LOOPBACK)
        assert code == 0, err
        assert await followed.line() == f"{outsider}: to the daemon\\n2nd line\n"
        code, rest = await followed.interrupt()
        assert code == 0, rest
        status, topics = await daemon.call("GET", "/api/v1/pubsub/topics")
        assert topics == {"topics": []}  # the subscription the command asked for went with it


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("args", "code", "says"), [
    (("pub", TOPIC, "x", "--peer", "/ip4/127.0.0.1/tcp/{closed}"), 1, "no --peer answered"),
    (("sub", TOPIC, "--peer", "/ip4/127.0.0.1/tcp/{closed}"), 1, "no --peer answered"),
    (("peers", TOPIC, "--peer", "not-a-multiaddr"), 2, "--peer"),
    (("pub", TOPIC, "x", "--peer", "/ip4/127.0.0.1/udp/4000"), 2, "--peer takes /ip4/HOST/tcp/PORT"),
    (("pub", "", "x"), 2, "the topic name is empty"),
    (("sub", "t" * 1025), 2, "at most 1024"),
    (("sub", "\udcff"), 2, "not valid Unicode"),  # the byte 0xff in argv: no UTF-8 topic
    (("pub", TOPIC, "x", "--wait", "0"), 1, "nobody got it"),
], ids=["pub-unreachable", "sub-unreachable", "garbage", "udp", "empty-topic", "long-topic", "not-utf8", "nobody"])
async def test_mistakes_are_one_line_and_a_non_zero_exit(tmp_path: Path, args: tuple[str, ...], code: int,
                                                         says: str) -> None:
    args = tuple(a.replace("{closed}", str(closed_port())) for a in args)
    result, out, err = await peerloom("pubsub", *args, "--home", str(tmp_path / "home"), *LOOPBACK, timeout=20)
    assert result == code, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], err


async def test_a_bad_peer_through_the_daemon_is_one_line(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        code, out, err = await peerloom("pubsub", "pub", TOPIC, "x", "--peer", f"/ip4/127.0.0.1/tcp/{closed_port()}",
                                        "--home", str(daemon.home))
        assert code == 1 and out == ""
        assert err.count("\n") == 1 and err.startswith("error:") and "cannot reach any of the peers" in err, err
        code, out, err = await peerloom("pubsub", "peers", TOPIC, "--peer", "/ip4/127.0.0.1/tcp/4001",
                                        "--home", str(daemon.home))
        assert code == 2 and err.count("\n") == 1 and "add --no-daemon" in err, err


async def test_pub_finds_a_sub_by_topic_through_a_dht_bootstrap_node_alone(tmp_path: Path) -> None:
    """Neither knows the other's address: the sub announces the topic on the DHT, the pub looks it up (rendezvous)."""
    async with node(tmp_path, "boot", dht=True, pubsub=False) as boot:
        assert boot.dht is not None
        dht = ("--bootstrap", f"127.0.0.1:{boot.dht.port}", "--listen", "127.0.0.1")
        async with sub(TOPIC, "--home", str(tmp_path / "sub"), *dht) as s:
            code, _, err = await peerloom("pubsub", "pub", TOPIC, "found by topic", "--wait", "10",
                                          "--home", str(tmp_path / "pub"), *dht)
            assert code == 0 and "published to 1 peer" in err, err
            assert (await s.line()).endswith(": found by topic\n")
