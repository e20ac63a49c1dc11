"""Collaborative documents (issue 15): CRDT documents on pycrdt (Yrs, wire-compatible with Yjs), named by an Ed25519
public key, written only by holders of authorised writer keys, readable only with the document's read key.

This package holds the foundation: the keys and share links (`keys`), the signed and encrypted update envelope and
the checks in front of pycrdt (`updates`, `yupdate`), the UTF-16 / UTF-8 text-position conversion (`textpos`) and
the crash-safe update log (`store`). The sync service, CLI, API and browser editor build on it.
"""
