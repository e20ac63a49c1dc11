"""The applications of the network, each a service of the node over the secure layer (DESIGN.md, "Services")."""
