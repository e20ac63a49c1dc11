"""Path MTU discovery for one uTP connection, sans-I/O: how large a datagram may be sent to the peer.

BEP 29 leaves the packet size to the implementation; libtorrent searches it per connection, and so do we. Packets
go out with the don't-fragment bit (the driver sets IP_MTU_DISCOVER to IP_PMTUDISC_DO), so a datagram too large for
the path is dropped (by a router, which tells the sender's kernel in ICMP) or refused outright (EMSGSIZE from
`sendto` once the kernel knows the path's MTU) instead of travelling in fragments, whose loss costs the whole
datagram. The search is a bisection between a floor, a size known or assumed to pass, and a ceiling, the largest
size worth trying: one packet at a time of the size halfway between them (a probe) carries real data; its ack
raises the floor, its loss lowers the ceiling. A lost probe is not congestion (libtorrent's way too): it lowers the
ceiling and leaves the congestion window alone. EMSGSIZE is a hard ceiling, and lowers the floor too when needed.

Sizes here are whole UDP datagrams. A probe measures the datagram it was (a plain header and its payload); regular
packets carry the floor less the largest header a packet may have (`utp.MAX_HEADER`, SACK included), so that
whatever header rides along, they stay within what the path was seen to take.
"""

from __future__ import annotations

PEER_DATAGRAM = 1500  # libtorrent (and libutp) read datagrams of at most 1500 bytes: never more, unless told
MIN_DATAGRAM = 548  # IPv4's 576-byte minimum MTU less the IP and UDP headers: every path takes this much
SETTLED = 16  # the search ends once floor and ceiling are this close: a few bytes more per packet are not worth it
IPV4_OVERHEAD = 28  # IP (20) and UDP (8) headers: a datagram's share of the route's MTU
IPV6_OVERHEAD = 48  # IPv6 (40) and UDP (8)


class MtuSearch:
    """The search of one connection. `floor` is the size regular packets use; `next_probe` hands out the size of the
    next probe (None while one is in flight, or once the search has settled); `acked`, `lost` and `too_big` report
    what became of a datagram of a given size."""

    __slots__ = ("ceiling", "floor", "probe")

    def __init__(self, floor: int, ceiling: int) -> None:
        self.ceiling = max(MIN_DATAGRAM, ceiling)
        self.floor = min(floor, self.ceiling)  # a smaller floor than any path needs is the owner's choice
        self.probe: int | None = None

    @property
    def settled(self) -> bool:
        return self.ceiling - self.floor < SETTLED

    def limit(self, ceiling: int) -> None:
        """A ceiling learnt from elsewhere (the route's MTU, the peer's largest datagram): it only ever lowers."""
        self.ceiling = max(MIN_DATAGRAM, min(self.ceiling, ceiling))
        self.floor = min(self.floor, self.ceiling)
        if self.probe is not None and self.probe > self.ceiling:
            self.probe = None

    def next_probe(self) -> int | None:
        """The size of a probe to send now, or None (one is in flight, or the search is over)."""
        if self.probe is not None or self.settled:
            return None
        self.probe = (self.floor + self.ceiling + 1) // 2
        return self.probe

    def acked(self, size: int) -> None:
        """A datagram of `size` got through: the path takes at least that much."""
        if size == self.probe:
            self.probe = None
        if size > self.floor:
            self.floor = min(size, self.ceiling)

    def lost(self, size: int) -> None:
        """A probe of `size` was lost: taken as too large for the path (a probe that fell to congestion costs a few
        bytes per packet, never the connection)."""
        if size == self.probe:
            self.probe = None
        if size > self.floor:
            self.ceiling = min(self.ceiling, size - 1)

    def too_big(self, size: int) -> None:
        """The kernel refused a datagram of `size` (EMSGSIZE): nothing that large can go, whatever went before."""
        self.limit(size - 1)
