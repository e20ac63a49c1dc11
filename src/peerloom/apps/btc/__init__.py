"""A Bitcoin node's foundation: serialization, transactions, blocks, network parameters, the P2P message
codecs and handshake (sans-I/O), a headers-first header chain, and a small asyncio driver for one peer."""
