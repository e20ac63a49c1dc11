"""Local service discovery (BEP 14) on loopback multicast: two nodes find each other with no DHT, tracker or peer
hint, and the leecher downloads from the seeder."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from support.swarm import assert_same_files, make_single, node, wait_done

from peerloom.discovery.lsd import LSD_GROUP
from peerloom.torrent.magnet import Magnet


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_multicast_works(port: int) -> str | None:
    """None when a datagram sent to the LSD group on 127.0.0.1 comes back; else why not."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("", port))
            lo = socket.inet_aton("127.0.0.1")
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(LSD_GROUP) + lo)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, lo)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            s.settimeout(2)
            s.sendto(b"probe", (LSD_GROUP, port))
            s.recvfrom(64)
    except OSError as exc:
        return f"the kernel refuses multicast on the loopback interface: {exc}"
    return None


async def test_two_nodes_find_each_other_through_local_discovery(tmp_path: Path) -> None:
    port = free_udp_port()
    refused = loopback_multicast_works(port)
    if refused:
        pytest.skip(refused)
    lsd = dict(lsd=True, lsd_port=port, lsd_interval=0.5)
    data = make_single(tmp_path / "src", size=400_000)
    async with node(tmp_path, "seed", **lsd) as seeder, node(tmp_path, "leech", **lsd) as leecher:
        assert seeder.lsd is not None and leecher.lsd is not None
        shared = await seeder.share(data, version="v1", piece_length=32768)
        assert shared.meta is not None
        t = await leecher.add(str(Magnet(shared.meta.info_hash_v1)), tmp_path / "dst")
        await wait_done(t, 15)
        assert seeder.lsd.sent >= 1 and leecher.lsd.received >= 1
        assert seeder.lsd.own >= 1  # multicast loops our own announces back: the cookie drops them
    assert_same_files(shared.meta, tmp_path / "src", tmp_path / "dst")
