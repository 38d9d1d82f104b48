"""Security headers on every response: pages, API, static files, errors and WebSockets."""

from __future__ import annotations

from aiohttp import web

from server.netutil import request_is_secure

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "worker-src 'self'",
        "manifest-src 'self'",
    ]
)
PERMISSIONS_POLICY = (
    "camera=(self), microphone=(self), display-capture=(), geolocation=(), payment=(), "
    "usb=(), serial=()"
)
HSTS = "max-age=63072000; includeSubDomains"


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    if response.status == 101:
        # A WebSocket upgrade: no document, so these headers would do nothing, and the response
        # object (with its headers) lives as long as the socket: about 0.8 KiB per idle socket.
        h.popall("Server", None)
        return
    h["Content-Security-Policy"] = CSP
    h["Referrer-Policy"] = "no-referrer"
    h["X-Content-Type-Options"] = "nosniff"
    h["X-Frame-Options"] = "DENY"
    h["Permissions-Policy"] = PERMISSIONS_POLICY
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    h["Cross-Origin-Resource-Policy"] = "same-origin"
    if request_is_secure(request):
        h["Strict-Transport-Security"] = HSTS
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")
    h.popall("Server", None)


def setup_headers(app: web.Application) -> None:
    app.on_response_prepare.append(add_security_headers)
