"""Finding peers on the local network: BEP 14 local service discovery (`lsd`, sans-I/O, and its asyncio driver)."""
