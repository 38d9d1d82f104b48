"""Ruang server: the aiohttp application."""
