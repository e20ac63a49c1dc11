"""The exit: a node lends its internet access to peers it trusts (`/peerloom/exit/1.0.0`), and a node borrows it
through a local SOCKS5 proxy whose connections run as secure-layer streams to the exit."""
