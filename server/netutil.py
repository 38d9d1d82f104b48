"""Who is on the other end: the peer address, or X-Forwarded-For from a trusted proxy."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from server.keys import CONFIG


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def client_ip(request: web.Request) -> str:
    """The client's address; X-Forwarded-For is believed only from ``RUANG_TRUSTED_PROXIES``."""
    peer = request.remote or ""
    proxies = request.app[CONFIG].trusted_proxies
    addr = _parse(peer)
    if not proxies or addr is None or not any(addr in net for net in proxies):
        return peer
    forwarded = request.headers.get("X-Forwarded-For", "")
    # Walk from the right: the first address that is not one of our proxies is the client.
    for hop in reversed([h for h in forwarded.split(",") if h.strip()]):
        hop_addr = _parse(hop)
        if hop_addr is None:
            return peer
        if not any(hop_addr in net for net in proxies):
            return str(hop_addr)
    return peer


def is_loopback(request: web.Request) -> bool:
    addr = _parse(request.remote or "")
    return addr is not None and addr.is_loopback and "X-Forwarded-For" not in request.headers


def request_is_secure(request: web.Request) -> bool:
    if request.secure:
        return True
    peer = _parse(request.remote or "")
    proxies = request.app[CONFIG].trusted_proxies
    if peer is not None and any(peer in net for net in proxies):
        return request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    return False
