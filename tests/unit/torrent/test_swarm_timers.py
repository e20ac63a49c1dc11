"""The swarm's timers driven by a test's own clock: `Torrent.tick(now)` / `next_wakeup()`, no sleeping.

Choke rounds (the `Choker`, every `ROUND` seconds) and snubbing a peer that stopped sending (its requests cancelled
and handed to another peer) are checked against a real `Torrent` with stand-in peers that record what they are sent.
"""

from __future__ import annotations

import random
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from peerloom.settings import Settings
from peerloom.torrent import wire
from peerloom.torrent.choker import ROUND, Choker
from peerloom.torrent.create import create
from peerloom.torrent.ratelimit import TokenBucket
from peerloom.torrent.state import State
from peerloom.torrent.swarm import Torrent

START = 1000.0  # the test clock's start (monotonic seconds)


class Context:
    """The little of `SwarmContext` that ticking a torrent uses."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.peer_id = b"-PL0000-" + b"0" * 12
        self.port = 6881
        self.client_name = "test"
        self.download_bucket = TokenBucket(0)
        self.upload_bucket = TokenBucket(0)
        self.dht = None
        self.lsd = None

    def is_banned(self, address: Any, peer_id: bytes | None = None) -> bool:
        return False

    def is_self(self, address: Any) -> bool:
        return False


class StandIn:
    """A connected peer as the swarm sees it, with fixed rates; it records the messages it is sent."""

    def __init__(self, name: str, *, rate_down: float = 0.0, interested: bool = True, num_pieces: int = 0) -> None:
        self.name = name
        self.key = (name, 1)
        self.remote = self.key
        self.address = self.key
        self.rate_down = rate_down
        self.rate_up = 0.0
        self.peer_interested = interested
        self.am_choking = True
        self.am_interested = True
        self.peer_choking = False
        self.snubbed = False
        self.is_seed = True
        self.bits = [True] * num_pieces
        self.pipeline = 16
        self.outstanding: dict[tuple[int, int], float] = {}
        self.pending: deque = deque()
        self.last_block_at = START
        self.last_received = START
        self.last_sent = START
        self.ext_ids: dict[str, int] = {}
        self.closed = False
        self.sent: list[bytes] = []

    def __repr__(self) -> str:
        return self.name

    def update_rates(self, now: float) -> None:
        pass  # the rates are the test's

    def send(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def send_message(self, m: wire.Message) -> None:
        self.send(wire.encode(m))

    def choke(self) -> None:
        self.am_choking = True

    def unchoke(self) -> None:
        self.am_choking = False

    def set_interested(self, interested: bool) -> None:
        self.am_interested = interested

    def close(self, reason: str = "closed") -> None:
        self.closed = True

    def messages(self) -> list[wire.Message]:
        parser = wire.WireParser()
        return [m for chunk in self.sent for m in parser.feed(chunk)]


def make_torrent(tmp_path: Path, **settings: Any) -> Torrent:
    data = tmp_path / "data.bin"
    data.write_bytes(random.Random(1).randbytes(8 * 65536))
    meta = create(data, version="v1", piece_length=65536)
    torrent = Torrent(Context(Settings(**settings)), meta=meta, magnet=None, save_path=tmp_path / "dst")
    torrent.choker = Choker(torrent.settings.upload_slots, rng=random.Random(7))
    torrent.state = State.DOWNLOADING  # as after the start-up check found nothing on disk
    return torrent


def test_choke_rounds_run_every_round_on_the_test_clock(tmp_path: Path) -> None:
    torrent = make_torrent(tmp_path, upload_slots=3, tick=1.0)
    peers = [StandIn(f"p{i}", rate_down=100.0 * i) for i in range(6)]
    peers.append(StandIn("idle", rate_down=10_000.0, interested=False))
    torrent.peers.extend(peers)

    torrent.tick(START)
    unchoked = {p.name for p in peers if not p.am_choking}
    # the two that gave most hold the regular slots, one more is the optimistic unchoke; uninterested stay choked
    assert {"p5", "p4"} <= unchoked and len(unchoked) == 3 and "idle" not in unchoked
    assert torrent.next_wakeup() == START + 1.0  # the per-second work comes before the next round

    peers[0].rate_down = peers[1].rate_down = 1e6  # the slow ones speed up: nothing changes until the round is over
    for second in range(1, int(ROUND)):
        torrent.tick(START + second)
        assert {p.name for p in peers if not p.am_choking} == unchoked
    assert torrent.next_wakeup() == START + ROUND
    torrent.tick(START + ROUND)
    now_unchoked = {p.name for p in peers if not p.am_choking}
    assert {"p0", "p1"} <= now_unchoked and len(now_unchoked) == 3


# The tick's clock must be the only clock of snubbing: a request stamped with the real clock while the test clock
# reads the same (a machine up for less than START seconds, or `start` taken from the real clock) made the other
# peer look stalled as soon as it was asked.
@pytest.mark.parametrize("start", [START, time.monotonic()], ids=["test-clock", "real-clock"])
def test_a_stalled_peer_is_snubbed_and_its_requests_go_to_another(tmp_path: Path, start: float) -> None:
    torrent = make_torrent(tmp_path, snub_timeout=30.0, tick=1.0)
    assert torrent.picker is not None
    num = torrent.picker.num_pieces
    staller, other = StandIn("staller", num_pieces=num), StandIn("other", num_pieces=num)
    other.peer_choking = True  # it has not unchoked us yet: everything goes to the staller first
    torrent.peers.extend([staller, other])
    torrent.request_more(staller, start)
    asked = set(staller.outstanding)
    assert asked
    for peer in (staller, other):
        peer.last_block_at = peer.last_received = peer.last_sent = start

    torrent.tick(start + 29.0)  # not yet stalled for the snub timeout
    assert not staller.snubbed and set(staller.outstanding) == asked
    other.peer_choking = False
    other.pipeline = 4 * num  # room for every block of the torrent
    torrent.tick(start + 31.0)
    assert staller.snubbed and torrent.snubs == 1 and not staller.outstanding
    cancelled = {(m.index, m.begin) for m in staller.messages() if isinstance(m, wire.Cancel)}
    assert cancelled == asked  # taken back from the staller...
    assert asked <= set(other.outstanding)  # ...and asked of the other peer at once

    # a snubbed peer without requests gets another chance after twice the timeout
    torrent.tick(start + 31.0 + 2 * 30.0 + 1)
    assert not staller.snubbed


def test_an_idle_peer_is_closed_on_the_test_clock(tmp_path: Path) -> None:
    idle_timeout = 5.0
    torrent = make_torrent(tmp_path, idle_timeout=idle_timeout)
    peer = StandIn("quiet", interested=False)
    peer.peer_choking = True
    torrent.peers.append(peer)
    torrent.tick(START + idle_timeout - 1)
    assert not peer.closed
    torrent.tick(START + idle_timeout + 1)
    assert peer.closed


def test_throttled_uploads_are_served_when_the_tick_comes(tmp_path: Path) -> None:
    torrent = make_torrent(tmp_path)
    torrent.state = State.SEEDING
    torrent.upload_bucket.rate = 10**12  # empty at first; refilled within microseconds of real time
    peer = StandIn("taker")
    peer.am_choking = False
    peer.write_paused = False
    peer.awaiting_piece = peer.serving_piece = -1
    peer.bytes_up = 0
    sent: list[Any] = []
    peer.send_parts = sent.extend
    torrent.flow.cache[0] = memoryview(bytes(65536))
    peer.pending.append(wire.Request(0, 0, wire.BLOCK_SIZE))
    torrent.peers.append(peer)
    now = peer.last_received = peer.last_sent = time.monotonic()  # serving reads the real clock for its allowance
    torrent.tick(now)

    torrent.serve(peer)
    assert not sent and len(peer.pending) == 1  # over the limit: it waits for the tick
    due = torrent.flow.throttled_until
    assert due is not None and torrent.next_wakeup() == due
    torrent.tick(due - 0.01)
    assert not sent
    torrent.tick(due)
    assert not peer.pending and len(sent) == 2  # the block's header and data
    assert torrent.flow.throttled_until is None
