"""Alembic migrations on SQLite and on a real PostgreSQL: schema equals db.py, legacy stamping,
concurrent upgraders, the ``ruang db`` commands and clear start-up errors."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from server import migrations
from server.db import connect_failure, make_engine, metadata
from tests.postgres_support import DATABASES, PostgresServer
from tests.support import ROOT, free_port

APP_TABLES = {"counselors", "rooms", "audit"}


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite+aiosqlite:///{tmp_path / 'ruang.db'}"


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(db_url)
    try:
        yield made
    finally:
        await made.dispose()


def _schema_diff(conn: sa.Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def test_upgrade_empty_database_gives_exactly_the_metadata_schema(
    engine: AsyncEngine,
) -> None:
    assert await migrations.current(engine) is None
    assert await migrations.upgrade(engine) == migrations.head()
    assert await migrations.current(engine) == migrations.head()
    assert await _tables(engine) == APP_TABLES | {"alembic_version"}
    async with engine.connect() as conn:
        diff = await conn.run_sync(_schema_diff)
    # A change to server/db.py without a migration (or the reverse) shows up here.
    assert diff == []
    # Idempotent; and the baseline's downgrade removes what it made.
    assert await migrations.upgrade(engine) == migrations.head()

    def down(conn: sa.Connection) -> None:
        cfg = migrations.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")

    async with engine.begin() as conn:
        await conn.run_sync(down)
    assert await _tables(engine) == {"alembic_version"}


async def test_a_table_change_without_a_migration_is_noticed(engine: AsyncEngine) -> None:
    await migrations.upgrade(engine)
    changed = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    sa.Table("extra", changed, sa.Column("id", sa.Integer, primary_key=True))
    changed.tables["rooms"].append_column(sa.Column("note", sa.String(10)))
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), changed)
        )
    kinds = {(d[0], getattr(d[-1], "name", None)) for d in diff if isinstance(d, tuple)}
    assert ("add_table", "extra") in kinds
    assert ("add_column", "note") in kinds


async def test_a_create_all_database_is_stamped_not_recreated(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)  # what Ruang did before migrations
        await conn.execute(
            sa.text(
                "INSERT INTO counselors (email, password_hash, active, session_epoch, created_at)"
                " VALUES ('old@example.org', 'x', true, 3, CURRENT_TIMESTAMP)"
            )
        )
    assert await migrations.current(engine) is None
    assert await migrations.upgrade(engine) == migrations.head()
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT email, session_epoch FROM counselors"))).all()
        versions = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).all()
    assert [tuple(r) for r in rows] == [("old@example.org", 3)], "the data survived"
    assert [v[0] for v in versions] == [migrations.head()]


async def test_a_partial_schema_is_refused(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: metadata.tables["counselors"].create(c))
    with pytest.raises(migrations.MigrationError, match="no migration record"):
        await migrations.upgrade(engine)
    assert "rooms" not in await _tables(engine), "nothing was half-applied"


async def test_a_revision_from_a_newer_version_is_refused(engine: AsyncEngine) -> None:
    await migrations.upgrade(engine)
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrations.MigrationError, match="newer version"):
        await migrations.upgrade(engine)


async def test_concurrent_upgrades_do_not_race(db_url: str) -> None:
    """Six engines (separate connections) upgrade one empty database at the same moment."""
    engines = [make_engine(db_url) for _ in range(6)]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(migrations.upgrade(e) for e in engines), return_exceptions=True),
            timeout=60,
        )
        assert results == [migrations.head()] * 6, results
        async with engines[0].connect() as conn:
            versions = (
                await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            ).all()
            diff = await conn.run_sync(_schema_diff)
        assert [v[0] for v in versions] == [migrations.head()]
        assert diff == []
    finally:
        for e in engines:
            await e.dispose()


async def test_a_sqlite_upgrade_waits_for_another_writer(tmp_path: Path) -> None:
    """A new SQLite file is switched to WAL while another process holds its write lock (its
    own upgrade): SQLite refuses that at once rather than waiting, so the upgrade must wait
    for the lock itself (a CI run once lost one of six concurrent upgraders to this)."""
    path = tmp_path / "ruang.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE unrelated (x INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO unrelated VALUES (1)")
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        upgrading = asyncio.create_task(migrations.upgrade(engine))
        await asyncio.sleep(0.5)
        assert not upgrading.done(), "it waits while the other writer holds the lock"
        other.execute("COMMIT")
        assert await asyncio.wait_for(upgrading, 30) == migrations.head()
        async with engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        assert mode == "wal"
    finally:
        other.close()
        await engine.dispose()


def _ruang(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("RUANG_")} | env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


async def test_cli_db_current_and_upgrade(db_url: str, tmp_path: Path) -> None:
    env = {"RUANG_DATA_DIR": str(tmp_path / "data"), "RUANG_DATABASE_URL": db_url}
    if db_url.startswith("sqlite"):  # "current" only looks (engine-independent: once is enough)
        before = await asyncio.to_thread(_ruang, env, "db", "current")
        assert before.returncode == 0, before.stderr
        assert before.stdout.startswith("none"), before.stdout
    up = await asyncio.to_thread(_ruang, env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"{migrations.head()} (head)"
    after = await asyncio.to_thread(_ruang, env, "db", "current")
    assert after.stdout.strip() == f"{migrations.head()} (head)"


@pytest.mark.slow
async def test_unreachable_or_refusing_postgresql_is_a_clear_error(
    postgres: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    closed = free_port()
    wrong_password = postgres.url(postgres_url.rsplit("/", 1)[1], password="wrong-password-123")
    cases = {
        wrong_password: "refused user 'ruang' (wrong password or no such role)",
        f"postgresql+asyncpg://ruang:secret-pw-456@127.0.0.1:{closed}/ruang": (
            f"cannot reach PostgreSQL at 127.0.0.1:{closed}: "
        ),
        postgres.url("no_such_db"): "has no database 'no_such_db'",
    }
    for url, expected in cases.items():  # the real failures, in process
        engine = make_engine(url)
        try:
            with pytest.raises(Exception) as caught:
                await migrations.upgrade(engine)
        finally:
            await engine.dispose()
        message = connect_failure(caught.value, url)
        assert message is not None and expected in message, (url, message)
        assert "wrong-password-123" not in message and "secret-pw-456" not in message
    # And what the operator sees at start: one line, exit 1, no traceback, no password.
    env = {
        "RUANG_DATA_DIR": str(tmp_path / "data"),
        "RUANG_DATABASE_URL": wrong_password.replace("postgresql+asyncpg://", "postgresql://"),
        "RUANG_PLAIN_HTTP": "true",
        "RUANG_HOST": "127.0.0.1",
        "RUANG_PORT": str(free_port()),
    }
    result = await asyncio.to_thread(_ruang, env, "serve")
    assert result.returncode == 1, result.stderr
    line = f"ruang: cannot open the database: PostgreSQL at 127.0.0.1:{postgres.port} refused"
    assert line in result.stderr
    assert "Traceback" not in result.stderr
    assert "wrong-password-123" not in result.stderr
