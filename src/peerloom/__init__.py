"""peerloom: a peer-to-peer network speaking BitTorrent and libp2p."""

__version__ = "0.1.0"
