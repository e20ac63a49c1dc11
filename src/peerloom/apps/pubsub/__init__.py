"""Pub/sub: GossipSub v1.1/v1.2 (libp2p pubsub), compatible with js-libp2p."""
