"""Ruang signaling: rooms, the protocol and the v1 end-to-end cryptography (no aiohttp)."""
