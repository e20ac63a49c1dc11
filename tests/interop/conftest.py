"""Interop tests run against real third-party clients; they skip, with the reason, only when the
client cannot be installed on this machine (CI installs it, so there they run)."""
