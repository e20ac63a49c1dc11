"""Mainline DHT (BEP 5, with BEP 32/42/43/44/51), sans-I/O: KRPC messages (`krpc`), the routing table (`routing`),
iterative lookups (`lookup`), tokens, peer and item stores (`storage`), BEP 44 signing (`bep44`) and the node that
ties them together (`node.DhtCore`). Drivers move its packets; it owns no socket, task or clock."""
