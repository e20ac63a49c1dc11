"""The error types peerloom raises.

Every failure caused by input from outside (the network, a file a user points at) is a
`PeerloomError`; a peer that sends something malformed raises a `ProtocolError`, which costs that
peer its connection and never the node.
"""


class PeerloomError(Exception):
    """Base of every error peerloom raises on purpose; its message is fit to show a user."""


class ProtocolError(PeerloomError):
    """Input that breaks a wire or file format: the peer or file that sent it is at fault."""


class AccessRefused(PeerloomError):
    """A peer authenticated our key and turned it away (it is not on the peer's allow-list): trying again is
    pointless until the peer's owner allows our key."""
