"""Two sans-I/O uTP sockets wired through a simulated lossy network on a fake clock.

`Link` delays each datagram by a base latency plus jitter (which reorders), and drops or duplicates datagrams
with the given probabilities, all from a seeded random generator so that a failing run repeats. `Pair` runs an
initiator and an acceptor until a condition holds, advancing the clock to the next delivery or timer.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from peerloom.torrent.utp import Closed, EndOfStream, Event, UtpConfig, UtpSocket
from peerloom.torrent.utp_packet import PacketType, parse_packet


@dataclass
class Link:
    latency: float = 0.01
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    seed: int = 1
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def delays(self) -> list[float]:
        """When (after now) copies of one datagram arrive: none if dropped, two if duplicated."""
        if self.rng.random() < self.loss:
            return []
        copies = 2 if self.rng.random() < self.duplicate else 1
        return [self.latency + self.rng.random() * self.jitter for _ in range(copies)]


@dataclass
class Side:
    sock: UtpSocket | None = None
    received: bytearray = field(default_factory=bytearray)
    events: list[Event] = field(default_factory=list)
    datagrams: int = 0

    def collect(self) -> None:
        assert self.sock is not None
        self.events += self.sock.events()
        self.received += self.sock.read()


class Pair:
    """An initiator `a` connected to an acceptor `b` (created when a's SYN arrives) over `link` both ways."""

    def __init__(self, link: Link | None = None, config: UtpConfig | None = None, now: float = 1000.0,
                 seqs: tuple[int, int] = (100, 5000)) -> None:
        self.link = link or Link()
        self.config = config or UtpConfig()
        self.now = now
        self.seqs = seqs
        self.a = Side(UtpSocket.connect(0x1234, seqs[0], now, self.config))
        self.b = Side()
        self.queue: list[tuple[float, int, str, bytes]] = []
        self.count = 0
        self.filter: Callable[[str, bytes], bytes | None] | None = None  # may rewrite or drop a datagram
        self.flush()

    def flush(self) -> None:
        for name, side in (("b", self.a), ("a", self.b)):  # datagrams from a go to b and back
            if side.sock is None:
                continue
            for datagram in side.sock.datagrams_to_send(self.now):
                side.datagrams += 1
                if self.filter is not None:
                    rewritten = self.filter(name, datagram)
                    if rewritten is None:
                        continue
                    datagram = rewritten
                for delay in self.link.delays():
                    self.count += 1
                    heapq.heappush(self.queue, (self.now + delay, self.count, name, datagram))
            side.collect()

    def deliver(self, to: str, datagram: bytes) -> None:
        packet = parse_packet(datagram)
        side = self.a if to == "a" else self.b
        if side.sock is None:
            if packet.type is not PacketType.SYN:
                return
            side.sock = UtpSocket.accept(packet, self.seqs[1], self.now, self.config)
            return
        side.sock.receive(packet, self.now)

    def step(self) -> bool:
        """Advances to the next delivery or timer and runs it; False when nothing is left to happen."""
        wakeups = [s.sock.next_wakeup() for s in (self.a, self.b) if s.sock is not None]
        times = [t for t in wakeups if t is not None]
        if self.queue:
            times.append(self.queue[0][0])
        if not times:
            return False
        self.now = max(self.now, min(times))
        while self.queue and self.queue[0][0] <= self.now:
            _, _, to, datagram = heapq.heappop(self.queue)
            self.deliver(to, datagram)
        for side in (self.a, self.b):
            if side.sock is not None:
                side.sock.tick(self.now)
        self.flush()
        return True

    def run(self, until: Callable[[], bool], max_steps: int = 1_000_000) -> None:
        """Steps until `until()` holds, sending first whatever the sockets were given since the last step."""
        self.flush()
        for _ in range(max_steps):
            if until():
                return
            if not self.step():
                break
        assert until(), "the simulation ran out of things to do before the condition held"

    @staticmethod
    def closed(side: Side) -> Closed | None:
        return next((e for e in side.events if isinstance(e, Closed)), None)

    @staticmethod
    def eof(side: Side) -> bool:
        return any(isinstance(e, EndOfStream) for e in side.events)
