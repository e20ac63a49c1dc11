"""libtorrent 2.x dialling peerloom for a hybrid torrent (BEP 52): the first connection must not be dropped.

libtorrent dials a hybrid's peer with the v1 info-hash and the v2 upgrade bit (reserved byte 7, 0x10) until it has
learnt the peer under the v2 hash (from a tracker, the DHT or PEX: `pex_lt_v2`); from then on it takes only the v2
hash for an answer, or the hash it sent if it has not (bt_peer_connection.cpp, read_info_hash). When it learns that
while its v1 handshake is on the way, an answer with the v1 hash costs the connection ("invalid info-hash"). BEP 52
lets the answering side upgrade to the truncated v2 hash when the bit is set, and libtorrent does: so must we.

The race is made certain with a proxy that holds peerloom's answer until libtorrent has learnt the address under the
v2 hash. libtorrent runs with uTP, DHT, LSD, UPnP and NAT-PMP off (see tests/support/libtorrent_peer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from support.swarm import assert_same_files, make_single, node

from peerloom.torrent import wire

pytest.importorskip("libtorrent", reason="libtorrent Python bindings are not installed")
import libtorrent as lt
from support.libtorrent_peer import LibtorrentPeer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

PEX_UTP, PEX_HOLEPUNCH, PEX_LT_V2 = 0x04, 0x08, 0x80  # libtorrent's pex_flags_t (no pex_encryption: plain TCP)
PEER_ALERTS = int(lt.alert.category_t.peer_notification | lt.alert.category_t.error_notification
                  | lt.alert.category_t.connect_notification)


class HeldProxy:
    """A TCP relay to `port` that passes the dialler's bytes at once and holds the answer until `release`."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.release = asyncio.Event()
        self.handshakes: asyncio.Queue[wire.Handshake] = asyncio.Queue()  # each dialler's handshake, as it comes
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> HeldProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        first = await reader.readexactly(wire.HANDSHAKE_LENGTH)
        self.handshakes.put_nowait(wire.parse_handshake(first))
        up_writer.write(first)
        for task in (asyncio.create_task(self._pump(reader, up_writer, held=False)),
                     asyncio.create_task(self._pump(up_reader, writer, held=True))):
            self._tasks.add(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held: bool) -> None:
        try:
            if held:
                await self.release.wait()
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(ConnectionError):
                writer.close()


async def dropped_before_done(lt_peer: LibtorrentPeer, handle: Any, timeout: float = 60.0) -> list[str]:
    """libtorrent's errors about our info-hash until it has the whole torrent (none, when all goes well)."""
    async with asyncio.timeout(timeout):
        while True:
            errors = [a.message() for a in lt_peer.session.pop_alerts()
                      if isinstance(a, (lt.peer_disconnected_alert, lt.peer_error_alert))
                      and "info-hash" in a.message()]
            status = handle.status()
            if errors or status.is_finished or status.is_seeding:
                return errors
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("learnt", ["while dialling", "before dialling"])
async def test_libtorrent_that_learnt_us_under_the_v2_hash_keeps_its_first_connection(
    tmp_path: Path, learnt: str
) -> None:
    data = make_single(tmp_path / "src", size=1024 * 1024 + 333)
    async with node(tmp_path, "seed") as seeder:
        shared = await seeder.share(data, version="hybrid", piece_length=32768)
        meta = shared.meta
        assert meta is not None and meta.info_hash_v2 is not None
        for attempt in range(3):  # each with a fresh libtorrent, so each first connection is a new race
            with LibtorrentPeer(alert_mask=PEER_ALERTS) as lt_peer:
                handle = lt_peer.add(meta.to_bytes(), tmp_path / f"dst{attempt}")
                async with HeldProxy(seeder.port) as proxy:
                    where = ("127.0.0.1", proxy.port)
                    if learnt == "before dialling":
                        handle.connect_peer(where, 0, PEX_UTP | PEX_HOLEPUNCH | PEX_LT_V2)
                        hs = await asyncio.wait_for(proxy.handshakes.get(), 30)
                        assert hs.info_hash == meta.info_hash_v2[:20]
                    else:
                        handle.connect_peer(where, 0, PEX_UTP | PEX_HOLEPUNCH)
                        hs = await asyncio.wait_for(proxy.handshakes.get(), 30)
                        assert hs.info_hash == meta.info_hash_v1 and hs.supports_v2  # the premise: v1 + upgrade bit
                        # a tracker or the DHT now hands libtorrent our address under the v2 hash
                        handle.connect_peer(where, 0, PEX_UTP | PEX_HOLEPUNCH | PEX_LT_V2)
                        await asyncio.sleep(0.5)  # libtorrent's network thread takes it before our answer arrives
                    proxy.release.set()
                    errors = await dropped_before_done(lt_peer, handle)
                    assert not errors, errors
                    assert proxy.handshakes.empty()  # one connection did it all: no redial after a drop
            # checked once libtorrent's session has closed: it writes the files from a thread of its own
            assert_same_files(meta, tmp_path / "src", tmp_path / f"dst{attempt}")
