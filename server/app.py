"""The application factory: every lifetime in ``cleanup_ctx``, all state on ``web.AppKey``s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

from server import accounts, audit
from server.auth import Handler, setup_auth
from server.config import Config
from server.db import connect_failure, create_schema, make_engine
from server.echo import setup_echo
from server.headers import setup_headers
from server.i18n import Catalogs
from server.keys import CATALOGS, CONFIG, ENGINE, JINJA, LOGIN_THROTTLE, METRICS, SECRET
from server.memory import setup_memory_reclaim
from server.metrics import new_metrics
from server.migrations import MigrationError
from server.render import WEB_DIR, make_jinja
from server.secrets_store import load_or_create_secret
from server.throttle import LoginThrottle
from server.turn import setup_turn
from server.views import api, events, health, pages
from server.ws import WS_STATS, register_signaling_metrics, setup_ws

log = logging.getLogger("ruang.app")
AUDIT_PURGE_SECONDS = 3600
MIN_FREE_BYTES = 1 << 20  # in the data dir at start


class StartupError(RuntimeError):
    """The server cannot start (the message says why, for the operator)."""


def prepare_data_dir(config: Config) -> None:
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        probe = config.data_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"the data directory {config.data_dir} is not writable: {exc.strerror}"
        ) from None
    # A nearly full disk makes SQLite fail with whatever it hits first ("disk I/O error"):
    # say what it is instead.
    try:
        stat = os.statvfs(config.data_dir)
    except OSError:
        return
    free = stat.f_bavail * stat.f_frsize
    if free < MIN_FREE_BYTES:
        raise StartupError(
            f"the data directory {config.data_dir} is nearly full: {free // 1024} KiB free, "
            f"at least {MIN_FREE_BYTES // (1 << 20)} MiB needed"
        )


def _db_reason(exc: Exception) -> str:
    """The driver's own first line (e.g. SQLite's "database or disk is full"), never
    SQLAlchemy's wrapper text, which would quote the statement and its parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig).strip().splitlines()[0][:200] if orig is not None and str(orig).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _database(app: web.Application) -> AsyncIterator[None]:
    url = app[CONFIG].effective_database_url
    engine = make_engine(url, app[CONFIG].database_pool_size)
    try:
        await create_schema(engine)  # migrations to head (server.migrations)
    except MigrationError as exc:
        await engine.dispose()
        raise StartupError(f"cannot open the database: {exc}") from None
    except Exception as exc:
        await engine.dispose()
        reason = connect_failure(exc, url) or _db_reason(exc)
        raise StartupError(f"cannot open the database: {reason}") from exc
    app[ENGINE] = engine
    yield
    await engine.dispose()


async def _password_check_ready(app: web.Application) -> AsyncIterator[None]:
    """Make the dummy password hash in the background at start, before the first login that
    names an unknown email needs it (its timing must match a known one's)."""
    made = asyncio.get_running_loop().run_in_executor(None, accounts.dummy_hash)
    yield
    await made


async def _audit_purge(app: web.Application) -> AsyncIterator[None]:
    days = app[CONFIG].audit_days

    async def loop() -> None:
        while True:
            try:
                removed = await audit.purge(app[ENGINE], days)
                if removed:
                    log.info("audit purge removed %d entries older than %d days", removed, days)
            except Exception:
                log.exception("audit purge failed")
            await asyncio.sleep(AUDIT_PURGE_SECONDS)

    await audit.purge(app[ENGINE], days)
    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        request.app[METRICS].inc("ruang_http_requests_total", code=f"{exc.status // 100}xx")
        raise
    request.app[METRICS].inc("ruang_http_requests_total", code=f"{response.status // 100}xx")
    return response


def create_app(config: Config) -> web.Application:
    prepare_data_dir(config)
    app = web.Application(client_max_size=64 * 1024, middlewares=[count_requests])
    app[CONFIG] = config
    app[SECRET] = load_or_create_secret(config.secret_key, config.data_dir)
    app[CATALOGS] = Catalogs(WEB_DIR / "i18n")
    app[JINJA] = make_jinja()
    app[METRICS] = new_metrics()
    app[LOGIN_THROTTLE] = LoginThrottle(
        config.limits.login_failures_per_account,
        config.limits.login_failures_per_ip,
        config.limits.login_window_seconds,
    )
    setup_headers(app)
    setup_auth(app)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_password_check_ready)
    app.cleanup_ctx.append(_audit_purge)
    app.add_routes(health.routes)
    app.add_routes(pages.routes)
    app.add_routes(api.routes)
    setup_ws(app)
    events.setup_events(app)
    register_signaling_metrics(app)
    stats = app[WS_STATS]
    setup_memory_reclaim(app, app[METRICS], lambda: stats.connections_open)
    setup_turn(app)
    setup_echo(app)
    app.router.add_static("/static/", WEB_DIR / "static", name="static", append_version=False)
    return app
