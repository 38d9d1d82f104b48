"""Alembic's environment: run inside ``server.migrations.upgrade`` on a connection it passes in
``config.attributes["connection"]``; run by the ``alembic`` command (developers:
``alembic revision --autogenerate``), it connects to ``RUANG_DATABASE_URL`` or the SQLite
database in ``RUANG_DATA_DIR``."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context

from server.db import metadata


def run_on(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_environment() -> None:
    from server.config import Config
    from server.db import make_engine

    engine = make_engine(Config.from_env().effective_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_on)
    finally:
        await engine.dispose()


given = context.config.attributes.get("connection")
if isinstance(given, sa.Connection):
    run_on(given)
elif context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them on a database")
else:
    asyncio.run(run_from_environment())
