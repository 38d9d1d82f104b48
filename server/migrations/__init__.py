"""Schema migrations (Alembic) for SQLite and PostgreSQL, run from code: no alembic.ini.

``upgrade`` brings a database to the newest revision. It is what ``ruang serve`` does at start
and what ``ruang db upgrade`` does by hand. A database made by the old ``create_all`` (Ruang's
tables present, no ``alembic_version``) is stamped as the baseline revision, never recreated.
Several processes starting at once do not race: on PostgreSQL the whole upgrade runs in one
transaction holding an advisory lock; on SQLite it runs in one ``BEGIN IMMEDIATE`` transaction
(SQLite's DDL is transactional), which takes the database's write lock first.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.db import ensure_wal

HERE = Path(__file__).resolve().parent
BASELINE = "0001"
# The tables the baseline revision creates (what the old create_all made).
BASELINE_TABLES = frozenset({"counselors", "rooms", "audit"})
VERSION_TABLE = "alembic_version"
# pg_advisory_xact_lock key: "ruang" + "mig" in ASCII, any constant unique to this program.
ADVISORY_LOCK_KEY = 0x7275616E676D6967


class MigrationError(RuntimeError):
    """The database's schema cannot be brought to this version of Ruang (message says why)."""


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    return cfg


def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None, "no migrations shipped"
    return revision


def _current_sync(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade_sync(conn: sa.Connection) -> str:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    tables = set(sa.inspect(conn).get_table_names())
    current = _current_sync(conn) if VERSION_TABLE in tables else None
    if current is None:
        present = tables & BASELINE_TABLES
        if present == BASELINE_TABLES:
            command.stamp(cfg, BASELINE)  # made by create_all before migrations existed
        elif present:
            raise MigrationError(
                "the database holds some of Ruang's tables "
                f"({', '.join(sorted(present))}) but no migration record: restore it from a "
                "backup or point RUANG_DATABASE_URL at an empty database"
            )
    elif current not in {r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()}:
        raise MigrationError(
            f"the database is at revision {current}, which this version of Ruang does not "
            "know (made by a newer version?): upgrade Ruang"
        )
    try:
        command.upgrade(cfg, "head")
    except CommandError as exc:
        raise MigrationError(f"migration failed: {exc}") from exc
    revision = _current_sync(conn)
    assert revision is not None
    return revision


async def _lock(conn: AsyncConnection) -> None:
    """Serialise concurrent upgraders for the rest of this transaction."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
    elif conn.dialect.name == "sqlite":
        # pysqlite opens no transaction before DDL by itself; take the write lock now (waits
        # up to the engine's busy timeout for another process's upgrade to commit).
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


async def upgrade(engine: AsyncEngine) -> str:
    """Bring the database to the newest revision; return it."""
    await ensure_wal(engine)  # before the write lock: SQLite cannot switch modes inside it
    async with engine.connect() as conn:
        await _lock(conn)
        try:
            revision = await conn.run_sync(_upgrade_sync)
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()
    return revision


async def current(engine: AsyncEngine) -> str | None:
    """The database's revision, or None (empty, or made by the old create_all)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current_sync)
