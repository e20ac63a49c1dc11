"""A libtorrent node in its own process, for swarm_bench.py: seeds or downloads one torrent on loopback.

    python bench/lt_node.py [--transport tcp|utp] seed T.torrent DIR PORT [--encryption rc4]
    python bench/lt_node.py [--transport tcp|utp] get T.torrent DIR PORT SEEDPORT [SEEDPORT ...] [--encryption rc4]

Prints JSON lines: {"event": "ready"} once listening/seeding, {"event": "done", "seconds": ...} when a
download completes. DHT, LSD, UPnP and NAT-PMP are off; uTP too (it crawls on loopback), unless `--transport utp`,
which turns TCP off instead. Encryption is libtorrent's default (MSE handshake tried, plaintext after it) unless
`--encryption rc4`: MSE forced both ways, RC4 only.
"""

from __future__ import annotations

import json
import signal
import sys
import time

import libtorrent as lt

# MSE/PE forced on every connection, the stream RC4-encrypted (libtorrent's strictest encryption)
RC4_ONLY = {
    "out_enc_policy": int(lt.enc_policy.pe_forced),
    "in_enc_policy": int(lt.enc_policy.pe_forced),
    "allowed_enc_level": int(lt.enc_level.pe_rc4),
}


def main() -> None:
    argv = sys.argv[1:]
    utp = False
    if argv[0] == "--transport":
        utp = argv[1] == "utp"
        argv = argv[2:]
    rc4 = False
    if "--encryption" in argv:
        at = argv.index("--encryption")
        if argv[at + 1] != "rc4":
            sys.exit("--encryption takes rc4")
        rc4 = True
        del argv[at : at + 2]
    mode, torrent, directory, port = argv[0], argv[1], argv[2], int(argv[3])
    session = lt.session({
        "listen_interfaces": f"127.0.0.1:{port}",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": utp,
        "enable_incoming_utp": utp,
        "enable_outgoing_tcp": not utp,
        "enable_incoming_tcp": not utp,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
        **(RC4_ONLY if rc4 else {}),
    })
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = directory
    if mode == "seed":
        params.flags |= lt.torrent_flags.seed_mode
    handle = session.add_torrent(params)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    if mode == "seed":
        while not handle.status().is_seeding:
            time.sleep(0.01)
        print(json.dumps({"event": "ready"}), flush=True)
        while not stop:
            time.sleep(0.1)
        return
    start = time.monotonic()
    for seed_port in argv[4:]:
        handle.connect_peer(("127.0.0.1", int(seed_port)))
    print(json.dumps({"event": "ready"}), flush=True)
    while not stop:
        st = handle.status()
        if st.is_finished or st.is_seeding:
            print(json.dumps({"event": "done", "seconds": time.monotonic() - start}), flush=True)
            return
        time.sleep(0.01)


if __name__ == "__main__":
    main()
