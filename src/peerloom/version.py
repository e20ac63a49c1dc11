"""The package's version, in a module of its own: any layer may name it without importing the package itself, whose
`__init__` re-exports `Node` from the top of the import graph (importing it from below would close a cycle)."""

__version__ = "0.1.0"
