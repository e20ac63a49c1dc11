"""peerloom: a peer-to-peer network speaking BitTorrent and libp2p."""

from peerloom.version import __version__

__all__ = ["Node", "__version__"]


def __getattr__(name: str) -> object:
    # `import peerloom` stays light (the CLI's `--help` does not load the engine)
    if name == "Node":
        from peerloom.node import Node

        return Node
    raise AttributeError(f"module 'peerloom' has no attribute {name!r}")
