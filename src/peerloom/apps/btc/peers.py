"""Which Bitcoin peers to keep, sans-I/O: the `--connect`/`addnode` list, connected peers with their
misbehaviour, and bans (Core's `Misbehaving` + discouragement: a peer that sends an invalid block or
transaction, or a malformed message, is disconnected and refused for `BAN_SECONDS`). `now` is passed in."""

from __future__ import annotations

from dataclasses import dataclass, field

BAN_SECONDS = 24 * 60 * 60
MAX_INBOUND = 117  # Core: 125 connections minus 8 outbound
MAX_OUTBOUND = 8


@dataclass
class PeerInfo:
    address: tuple[str, int]
    outbound: bool
    user_agent: str = ""
    start_height: int = 0
    connected_at: int = 0


@dataclass
class PeerBook:
    """Connected peers, the peers to dial, and bans by host."""

    addnodes: list[tuple[str, int]] = field(default_factory=list)
    connected: dict[tuple[str, int], PeerInfo] = field(default_factory=dict)
    bans: dict[str, tuple[int, str]] = field(default_factory=dict)  # host -> (until, reason)

    def is_banned(self, host: str, now: int) -> bool:
        ban = self.bans.get(host)
        if ban is None:
            return False
        if ban[0] <= now:
            del self.bans[host]
            return False
        return True

    def ban(self, host: str, reason: str, now: int) -> None:
        self.bans[host] = (now + BAN_SECONDS, reason)

    def admits_inbound(self, host: str, now: int) -> bool:
        inbound = sum(1 for p in self.connected.values() if not p.outbound)
        return inbound < MAX_INBOUND and not self.is_banned(host, now)

    def to_dial(self, now: int) -> list[tuple[str, int]]:
        """The added peers that are neither connected nor banned (at most `MAX_OUTBOUND` outbound in all)."""
        outbound = sum(1 for p in self.connected.values() if p.outbound)
        free = max(0, MAX_OUTBOUND - outbound)
        wanted = [a for a in self.addnodes if a not in self.connected and not self.is_banned(a[0], now)]
        return wanted[:free]

    def add(self, info: PeerInfo) -> None:
        self.connected[info.address] = info

    def remove(self, address: tuple[str, int]) -> None:
        self.connected.pop(address, None)
