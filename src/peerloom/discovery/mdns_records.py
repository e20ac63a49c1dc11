"""libp2p mDNS discovery (libp2p/specs discovery/mdns.md), sans-I/O: the TXT records a peer advertises and what we
take from the records of others.

A peer registers the DNS-SD instance `<peer-name>._p2p._udp.local` (a random name, not its PeerId: a PeerId may not
fit a 63-byte DNS label), answers the question `_p2p._udp.local PTR` with a PTR to it, and describes itself in TXT
records whose attributes (RFC 6763 §6) are `dnsaddr=<multiaddr ending in /p2p/<PeerId>>`, one per address. A TXT
rdata is a run of <character-string>s, each one length byte and at most 255 bytes (RFC 1035 §3.3.14).

Deployed peers differ in the shape: js-libp2p (@libp2p/mdns) sends one TXT record per address, each holding one
string, in the answer section; zeroconf (what peerloom's driver uses) sends one TXT record holding every string, in
the additional section. So `peer_addrs` takes every TXT rdata seen for the instance name, whatever record it came in.

Everything read is bounded before it is kept (records, strings, addresses), and one typed error (`MdnsError`) says
what was wrong; an entry that is merely unusable (not a multiaddr, no /p2p/, another peer's id, loopback) is skipped
and counted, as js-libp2p and go-libp2p skip it.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from peerloom.codec.multiaddr import Multiaddr, MultiaddrError
from peerloom.errors import ProtocolError
from peerloom.identity import PeerId

SERVICE_TYPE = "_p2p._udp.local."  # the spec's service-name (without a private network's fingerprint)
TYPE_TXT = 16  # RFC 1035 §3.2.2
CLASS_IN = 1  # RFC 1035 §3.2.4
PEER_NAME_LENGTH = 32  # spec: "a random, lower-case alphanumeric string of at least 32 characters"
MAX_LABEL = 63  # RFC 1035 §2.3.4: the peer name is one DNS label
MAX_STRING = 255  # one <character-string>: a length byte
MAX_TXT_RDATA = 9000  # RFC 6762 §17: an mDNS message is at most 9000 bytes, so no TXT rdata is longer
MAX_TXT_RECORDS = 32  # TXT records of one instance looked at (js sends one per address)
MAX_ATTRIBUTES = 64  # strings looked at across those records
MAX_ADDRS = 16  # addresses kept for a peer, and advertised for ourselves
ATTRIBUTE = b"dnsaddr="
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_HOSTS = ("ip4", "ip6", "dns", "dns4", "dns6")


class MdnsError(ProtocolError):
    """TXT data that is malformed, over a bound, or holds no usable libp2p address."""


@dataclass(frozen=True, slots=True)
class PeerAddrs:
    """A peer found through mDNS: its id, its transport addresses (without the /p2p/ part), the entries skipped."""

    peer: PeerId
    addrs: tuple[Multiaddr, ...]
    skipped: int = 0


def new_peer_name() -> str:
    """A fresh random peer name (the spec's peer-name), chosen at every start."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(PEER_NAME_LENGTH))


def instance_name(peer_name: str) -> str:
    """`<peer-name>._p2p._udp.local.`, the DNS-SD instance a peer registers."""
    if not 0 < len(peer_name) <= MAX_LABEL or not all(c in _ALPHABET for c in peer_name.lower()):
        raise ValueError(f"a peer name is 1 to {MAX_LABEL} letters and digits: {peer_name!r}")
    return f"{peer_name}.{SERVICE_TYPE}"


def encode_txt(addrs: Iterable[Multiaddr]) -> bytes:
    """The TXT rdata advertising `addrs`: one `dnsaddr=` string per address, each ending in /p2p/.

    An address whose string would pass 255 bytes cannot be a TXT attribute and is left out, as js-libp2p leaves it
    out; at most MAX_ADDRS are written. ValueError for an address without /p2p/ (the spec requires it)."""
    out = bytearray()
    written = 0
    for addr in addrs:
        if addr.peer_id is None:
            raise ValueError(f"an advertised address must end in /p2p/: {addr}")
        string = ATTRIBUTE + str(addr).encode("ascii")
        if len(string) > MAX_STRING:
            continue
        out += bytes((len(string),)) + string
        written += 1
        if written == MAX_ADDRS:
            break
    return bytes(out)


def decode_txt(rdata: bytes | memoryview) -> list[bytes]:
    """The <character-string>s of one TXT rdata (RFC 1035 §3.3.14); empty strings are dropped."""
    if len(rdata) > MAX_TXT_RDATA:
        raise MdnsError(f"TXT rdata of {len(rdata)} bytes is over {MAX_TXT_RDATA}")
    data = bytes(rdata)
    strings = []
    pos = 0
    while pos < len(data):
        length = data[pos]
        pos += 1
        if length > len(data) - pos:
            raise MdnsError("TXT string runs past the end of its record")
        if length:
            if len(strings) == MAX_ATTRIBUTES:
                raise MdnsError(f"more than {MAX_ATTRIBUTES} TXT strings")
            strings.append(data[pos : pos + length])
        pos += length
    return strings


def dnsaddr_values(strings: Iterable[bytes]) -> list[str]:
    """The values of the `dnsaddr` attributes among `strings`; keys compare case-insensitively (RFC 6763 §6.4)."""
    values = []
    for string in strings:
        key, sep, value = string.partition(b"=")
        if sep and key.lower() == ATTRIBUTE[:-1]:
            try:
                values.append(value.decode("ascii"))
            except UnicodeDecodeError:
                values.append("")  # not a multiaddr: counted as skipped by the caller
    return values


def usable(addr: Multiaddr) -> bool:
    """Whether a LAN peer's transport address is worth keeping: a host and a TCP port, not loopback, unspecified,
    multicast or IPv6 link-local (spec, "Issues": loopback addresses are not to be sent, and are ignored on receipt;
    a link-local IPv6 address needs a zone a multiaddr cannot carry). IPv4 link-local (169.254/16) stays: that is
    the LAN of hosts without DHCP, mDNS's own ground."""
    names = [name for name, _ in addr.components]
    if len(names) != 2 or names[0] not in _HOSTS or names[1] != "tcp":
        return False
    host = addr.components[0][1] or ""
    if names[0] not in ("ip4", "ip6"):
        return True
    ip = ipaddress.ip_address(host)
    return not (ip.is_loopback or ip.is_unspecified or ip.is_multicast or (ip.version == 6 and ip.is_link_local))


def peer_addrs(rdatas: Sequence[bytes | memoryview]) -> PeerAddrs:
    """The peer and addresses described by the TXT records `rdatas` of one instance.

    The peer is the PeerId of the first `dnsaddr` that parses and ends in /p2p/ (js-libp2p takes the first too);
    entries that do not parse, lack /p2p/, name another PeerId or are not `usable` are skipped. MdnsError when the
    records are malformed or over a bound, or when no address is left."""
    if len(rdatas) > MAX_TXT_RECORDS:
        raise MdnsError(f"{len(rdatas)} TXT records for one peer, over {MAX_TXT_RECORDS}")
    strings: list[bytes] = []
    for rdata in rdatas:
        strings += decode_txt(rdata)
        if len(strings) > MAX_ATTRIBUTES:
            raise MdnsError(f"more than {MAX_ATTRIBUTES} TXT strings for one peer")
    peer: PeerId | None = None
    addrs: dict[Multiaddr, None] = {}
    skipped = 0
    for value in dnsaddr_values(strings):
        try:
            addr = Multiaddr(value)
        except MultiaddrError:
            skipped += 1
            continue
        if addr.peer_id is None or (peer is not None and addr.peer_id != peer) or len(addr.components) < 2:
            skipped += 1
            continue
        peer = addr.peer_id
        transport = addr.without_p2p()
        if not usable(transport) or len(addrs) == MAX_ADDRS:
            skipped += 1
            continue
        addrs[transport] = None
    if peer is None:
        raise MdnsError("no dnsaddr attribute with a /p2p/ address")
    if not addrs:
        raise MdnsError(f"no usable address for {peer}")
    return PeerAddrs(peer, tuple(addrs), skipped)


def advertised_addrs(listen_addrs: Iterable[Multiaddr], interface_ips: Iterable[str]) -> list[Multiaddr]:
    """What a node advertises on the LAN: its secure listen addresses (each ending in /p2p/), an unspecified host
    (0.0.0.0, ::) replaced by each of `interface_ips` of its family, and nothing a LAN peer could not dial (see
    `usable`). At most MAX_ADDRS, in order, without duplicates."""
    ips = [ipaddress.ip_address(ip.split("%")[0]) for ip in interface_ips]
    out: dict[Multiaddr, None] = {}
    for addr in listen_addrs:
        peer = addr.peer_id
        if peer is None:
            raise ValueError(f"a listen address must end in /p2p/: {addr}")
        transport = addr.without_p2p()
        components = transport.components
        expanded = [transport]
        if components[0][0] in ("ip4", "ip6") and ipaddress.ip_address(components[0][1] or "").is_unspecified:
            family = 4 if components[0][0] == "ip4" else 6
            rest = "".join(f"/{name}" + (f"/{value}" if value else "") for name, value in components[1:])
            expanded = [Multiaddr(f"/ip{ip.version}/{ip}{rest}") for ip in ips if ip.version == family]
        for candidate in expanded:
            if usable(candidate):
                out[candidate.encapsulate(f"/p2p/{peer}")] = None
    return list(out)[:MAX_ADDRS]


class MdnsPeers:
    """What one node takes from the TXT records it sees: `receive(name, rdatas)` gives the PeerAddrs of another
    peer's instance, or None for our own instance (by its name or by our PeerId; multicast loops our own answers
    back) and for records that hold nothing usable. Counters say what was dropped, for the logs and the tests."""

    def __init__(self, own_peer: PeerId, own_name: str) -> None:
        self.own_peer = own_peer
        self.own_instance = instance_name(own_name).lower()
        self.received = 0
        self.own = 0
        self.malformed = 0

    def receive(self, name: str, rdatas: Sequence[bytes | memoryview]) -> PeerAddrs | None:
        if name.lower() == self.own_instance:
            self.own += 1
            return None
        try:
            found = peer_addrs(rdatas)
        except MdnsError:
            self.malformed += 1
            return None
        if found.peer == self.own_peer:
            self.own += 1
            return None
        self.received += 1
        return found
