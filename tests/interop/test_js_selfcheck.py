"""The js-libp2p reference peer against itself (js listener, js dialer) through tests/support/jslibp2p.py.

This checks the harness, not peerloom: if it fails, the Python-vs-js interop results mean nothing.
"""

from __future__ import annotations

import pytest
from support.jslibp2p import ECHO_PROTOCOL, SINK_PROTOCOL, JsPeer, ensure_installed, keygen, run_dial

pytestmark = [pytest.mark.interop, pytest.mark.timeout(600)]  # the first run may `npm ci`

MIB = 1 << 20


@pytest.fixture(scope="module")
def js_ready() -> None:
    res = ensure_installed()
    if not res:
        pytest.skip(res.reason)


async def test_js_dials_js_identify_ping_echo_sink(js_ready: None) -> None:
    async with JsPeer.listen() as listener:
        assert listener.peer_id.startswith("12D3KooW")  # Ed25519 identity
        assert listener.addr.startswith("/ip4/127.0.0.1/tcp/")
        assert listener.addr.endswith(f"/p2p/{listener.peer_id}")
        assert {"/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", ECHO_PROTOCOL, SINK_PROTOCOL} <= set(listener.protocols)

        out = await run_dial(listener.addr, ping=3, echo=MIB, sink=MIB)

        ident = out["identify"]
        assert ident["peer"] == listener.peer_id
        assert ident["agent"] == listener.agent
        assert ident["agent"].startswith("js-libp2p/")
        assert {ECHO_PROTOCOL, SINK_PROTOCOL} <= set(ident["protocols"])
        assert ident["observed_addr"].startswith("/ip4/127.0.0.1/tcp/")
        assert f"/ip4/127.0.0.1/tcp/{listener.host_port[1]}" in ident["listen_addrs"]

        assert out["ping"]["count"] == 3
        assert len(out["ping"]["rtt_ms"]) == 3
        assert all(rtt >= 0 for rtt in out["ping"]["wall_ms"])

        echo = out["echo"]
        assert echo["match"] is True
        assert echo["bytes"] == echo["received_bytes"] == MIB
        assert echo["sent_sha256"] == echo["received_sha256"]
        assert out["sink"]["acked_bytes"] == MIB
        assert out["done"]["ok"] is True
        assert out["returncode"] == 0

        # the listener saw the same session from its side
        dialer = ident["local_peer"]
        await listener.wait_for("connection", peer=dialer, direction="inbound")
        seen = await listener.wait_for("identify", peer=dialer)
        assert seen["agent"] == ident["agent"]
        await listener.wait_for("echo", peer=dialer, bytes=MIB)
        await listener.wait_for("sink", peer=dialer, bytes=MIB)
        await listener.wait_for("disconnect", peer=dialer)


async def test_fixed_key_gives_known_peer_id_and_wrong_id_is_refused(js_ready: None) -> None:
    key, peer_id = await keygen()
    _, other_id = await keygen()
    async with JsPeer.listen(key=key) as listener:
        assert listener.peer_id == peer_id
        wrong = listener.addr.replace(f"/p2p/{peer_id}", f"/p2p/{other_id}")
        out = await run_dial(wrong, ping=1, check=False)
        assert out["returncode"] != 0
        assert out["error"]["code"] == "peer_id_mismatch", out["error"]
        assert "identify" not in out
        # the same key on a second listener is the same identity
    async with JsPeer.listen(key=key) as again:
        assert again.peer_id == peer_id
