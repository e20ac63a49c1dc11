"""Volunteer computing: sandboxed WebAssembly work units (sandbox), the content-addressed store of modules and
inputs (blobs), and the worker processes that run units off the event loop (runner)."""
