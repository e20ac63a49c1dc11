"""Circuit Relay v2 (libp2p spec `relay/circuit-v2.md`): a node relays for others (hop), is reached through a relay
(stop), and dials `/p2p-circuit` addresses. Connections carried by a relay are *limited* (in time and bytes), and the
host runs on them only the protocols registered with `limited=True` (identify, ping, DCUtR do).

How to make a node (a) a relay server, (b) a client reachable through a relay, (c) a dialler of `/p2p-circuit`:

- Python, on a bare `Host`:
      server = RelayServer(host, RelayLimits(...)); server.start()                       # (a)
      client = RelayClient(host); client.start(); await client.reserve("/ip4/R/tcp/P/p2p/RELAY")  # (b)
      conn = await host.connect("/ip4/R/tcp/P/p2p/RELAY/p2p-circuit/p2p/TARGET")         # (c): any host
  `host.listen_addrs` then includes `/ip4/R/tcp/P/p2p/RELAY/p2p-circuit/p2p/US`; `conn.limited` is True.
- A `Node`: `Settings(relay_server=True)` (a), `Settings(relays=["/ip4/R/tcp/P/p2p/RELAY"])` (b); (c) always works.
- The daemon: `peerloom daemon --relay-server`, `--relay MULTIADDR` (repeatable).
- Relayed or direct: `Connection.limited` / `Connection.relay`, and `GET /api/v1/connections` (`peerloom connections`).
"""
