"""The node's settings: the knobs of the BitTorrent engine, the DHT, LSD and the secure layer's port.

They live below every package that reads them (torrent/, the node, the CLI) so that none of those has to import the
node to know their type.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Settings:
    """Knobs of the engine; defaults suit real swarms, tests shorten the timeouts."""

    max_peers: int = 50
    max_candidates: int = 2000
    upload_slots: int = 8
    connect_timeout: float = 10.0
    snub_timeout: float = 30.0
    idle_timeout: float = 240.0
    tick: float = 1.0
    hash_threads: int = 2
    max_verify_bytes: int = 32 * 1024 * 1024  # pieces waiting for hashing/writing before we stop requesting
    read_cache_bytes: int = 32 * 1024 * 1024
    download_rate_limit: int = 0  # bytes/s per torrent, 0 = unlimited
    trackers: bool = True
    web_seed_requests: int = 2  # requests under way at once to each web seed (BEP 19)
    web_seed_timeout: float = 20.0  # seconds to connect to a web seed, and the longest silence while it sends
    tracker_min_wait: float = 30.0
    pex_interval: float = 60.0  # BEP 11: at most one peer-exchange message a minute per peer
    secure_port: int = 0  # the secure peer layer's TCP port (0: any free one)
    utp: bool = True  # uTP (BEP 29) on the BitTorrent port number over UDP (shared with the DHT): accepted, and dialled
    utp_first: bool = False  # dial every peer over uTP first, then TCP (as libtorrent); else peers known to speak it
    utp_payload: int = 1400  # uTP payload bytes per packet (libtorrent reads at most 1500-byte datagrams)
    dht: bool = True  # Mainline DHT (BEP 5): find peers of public torrents without a tracker
    dht_port: int = 0  # its UDP port (0: the same number as the BitTorrent port)
    bootstrap: list[tuple[str, int]] = field(default_factory=list)  # DHT nodes to join through (host, port)
    public_bootstrap: bool = True  # with no `bootstrap` given, join through the public routers
    dht_ipv6: bool = False  # also join the IPv6 DHT (BEP 32) when the node listens on IPv4
    dht_interval: float = 15 * 60.0  # ask the DHT for peers (and announce) this often per torrent...
    dht_interval_few: float = 60.0  # ...or this often while the torrent has fewer than `dht_few_peers` peers
    dht_few_peers: int = 5
    lsd: bool = True  # local service discovery (BEP 14): find peers on the LAN by multicast
    lsd_interval: float = 5 * 60.0
    lsd_port: int = 6771  # the BEP 14 multicast port (tests pick another to keep to themselves)
    pubsub: bool = True  # GossipSub pub/sub on the secure layer (`node.pubsub`)
    compute: bool = True  # volunteer computing (`node.compute`): submit jobs and serve their blobs
    compute_volunteer: bool = False  # opt in: run other nodes' work units within the limits below
    compute_cores: int = 0  # task slots (0: one per core)
    compute_memory: int = 256 * 1024 * 1024  # bytes of memory per task
    compute_cpu_hours: float = 24.0  # CPU hours a day
    compute_submitters: list[str] = field(default_factory=list)  # PeerIds whose work is taken (empty: anyone's)
    mdns: bool = True  # libp2p mDNS: find secure-layer peers on the LAN and dial them (not on loopback)
    # MSE/PE for plain BitTorrent peers, as libtorrent's policies: "prefer" dials encrypted and falls back to
    # plaintext, accepts both, and selects plaintext after the handshake when the dialler offers both (libtorrent's
    # default); "require" dials and accepts only encrypted handshakes and selects RC4; "disable" never encrypts
    encryption: str = "prefer"
    # the exit (`node.exit`, apps/exit): the peers that may reach the internet through this node (PeerId texts;
    # none: not an exit), the destination ports they may reach (none: every port), private/loopback destinations
    # (refused unless this is on: labs and tests), and a rate limit per peer and direction (bytes/s, 0: none)
    exit_allow: list[str] = field(default_factory=list)
    exit_ports: list[int] = field(default_factory=list)
    exit_allow_private: bool = False
    exit_rate: int = 0
    peer_records: bool = True  # publish our signed peer record (BEP 44) in the DHT, so a PeerId resolves to us
    # NAT (apps/nat): AutoNAT v1 asks connected peers to dial us back (is this node reachable?) and answers theirs;
    # port mapping asks the gateway (NAT-PMP or UPnP-IGD) to forward the BitTorrent, DHT/uTP and secure ports, off by
    # default: a node should not open its router's ports unless its user asked
    autonat: bool = True
    autonat_server: bool = True
    autonat_quorum: int = 2  # servers that must agree before the node calls itself public or private
    autonat_interval: float = 15 * 60.0
    autonat_dial_timeout: float = 10.0  # seconds a server spends dialling a client back
    port_mapping: bool = False
    port_mapping_gateway: str = ""  # the NAT-PMP / UPnP-IGD gateway ("" = the default route's)
    # tried in this order ("natpmp", "upnp"); the first that maps every port holds them, renews and deletes them
    port_mapping_protocols: list[str] = field(default_factory=lambda: ["natpmp", "upnp"])
    # Circuit Relay v2 (peerloom.net.relay): serve as a relay for others; hold reservations on these relays
    # (multiaddrs ending in /p2p/RELAY) so peers reach us at RELAY/p2p-circuit; upgrade relayed connections to
    # direct ones by hole punching (DCUtR)
    relay_server: bool = False
    relays: list[str] = field(default_factory=list)
    hole_punch: bool = True
    relay_circuit_seconds: int = 120  # as relay server: how long one relayed connection may last (0: no limit)
    relay_circuit_bytes: int = 1 << 17  # ... and how many bytes it may carry each way (0: no limit); js's defaults
