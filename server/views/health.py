"""``/healthz`` (JSON, 200 when ready) and ``/metrics`` (loopback, or a bearer token)."""

from __future__ import annotations

import hmac

import sqlalchemy as sa
from aiohttp import web

from server.keys import CONFIG, ENGINE, METRICS
from server.netutil import is_loopback
from server.ws import HUB
from signaling.redis import RedisHub

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    try:
        async with request.app[ENGINE].connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception:
        return web.json_response({"status": "unavailable", "database": "error"}, status=503)
    hub = request.app.get(HUB)
    if isinstance(hub, RedisHub):  # several processes: Redis is needed too
        if not await hub.ping():
            body = {"status": "unavailable", "database": "ok", "redis": "error"}
            return web.json_response(body, status=503)
        return web.json_response({"status": "ok", "database": "ok", "redis": "ok"})
    return web.json_response({"status": "ok", "database": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    token = request.app[CONFIG].metrics_token
    auth = request.headers.get("Authorization", "")
    allowed = is_loopback(request)
    if token and auth.startswith("Bearer "):
        allowed = hmac.compare_digest(auth[7:].encode(), token.encode())
    if not allowed:
        raise web.HTTPForbidden(text="metrics are available on loopback or with a bearer token\n")
    return web.Response(
        text=request.app[METRICS].render(), content_type="text/plain", charset="utf-8"
    )
