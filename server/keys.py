"""Typed keys for everything the application holds (no module-level mutable state)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    import jinja2

    from server.config import Config
    from server.i18n import Catalogs
    from server.metrics import Metrics
    from server.throttle import LoginThrottle

CONFIG: web.AppKey[Config] = web.AppKey("config")
ENGINE: web.AppKey[AsyncEngine] = web.AppKey("engine", AsyncEngine)
SECRET: web.AppKey[bytes] = web.AppKey("secret", bytes)
JINJA: web.AppKey[jinja2.Environment] = web.AppKey("jinja")
CATALOGS: web.AppKey[Catalogs] = web.AppKey("catalogs")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
LOGIN_THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("login_throttle")
