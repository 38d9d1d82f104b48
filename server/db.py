"""Storage: SQLAlchemy Core (async). SQLite in the data dir by default, PostgreSQL by URL.

Only accounts, rooms and a metadata audit trail live here: never chat, SDP, names typed by
clients or room keys.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = sa.MetaData()

counselors = sa.Table(
    "counselors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    # Bumped on password change and disable: every session cookie issued before dies.
    sa.Column("session_epoch", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

rooms = sa.Table(
    "rooms",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    # The public room id (16 CSPRNG bytes, base64url). "New link" replaces it.
    sa.Column("public_id", sa.String(32), nullable=False, unique=True),
    sa.Column(
        "counselor_id",
        sa.Integer,
        sa.ForeignKey("counselors.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("label", sa.String(80), nullable=False, default=""),
    # Bumped on remove, decline, end session and new link: kills older resume tokens.
    sa.Column("generation", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("counselor_id", sa.Integer, nullable=True),
    sa.Column("room_pk", sa.Integer, nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


DEFAULT_POOL_SIZE = 10
CONNECT_TIMEOUT_SECONDS = 10.0


def make_engine(url: str, pool_size: int = DEFAULT_POOL_SIZE) -> AsyncEngine:
    """An async engine for a ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` URL."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(conn: object, _record: object) -> None:
            cursor = conn.cursor()  # type: ignore[attr-defined]
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
            except Exception as exc:
                # Switching a new database to WAL needs it to itself: while another connection
                # writes (a second process's migrations) SQLite refuses at once, without waiting
                # out the busy timeout. The mode is kept in the file: ``ensure_wal`` (run first
                # by every upgrade) sets it with a bounded wait, and this connection sees it.
                if not is_sqlite_locked(exc):
                    raise
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    # PostgreSQL (asyncpg): a bounded pool per process, connections checked before use and
    # recycled (a restarted database or a proxy's idle cut costs one retry, not an error), and a
    # connect timeout so an unreachable server is a clear start-up error, not a long hang.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=30,
        pool_recycle=1800,
        pool_pre_ping=True,
        connect_args={
            "timeout": CONNECT_TIMEOUT_SECONDS,
            "server_settings": {"application_name": "ruang", "timezone": "UTC"},
        },
    )


def is_sqlite_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" (SQLITE_BUSY), however the driver wraps it."""
    return "database is locked" in str(exc)


SQLITE_WAL_WAIT_SECONDS = 30.0
_WAL_RETRY_SECONDS = 0.02


async def ensure_wal(engine: AsyncEngine) -> None:
    """Put a SQLite database in WAL mode (kept in the file), waiting up to
    ``SQLITE_WAL_WAIT_SECONDS`` while another connection writes; nothing for PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return
    deadline = time.monotonic() + SQLITE_WAL_WAIT_SECONDS
    while True:
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            return
        except sa.exc.OperationalError as exc:
            if not is_sqlite_locked(exc) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(_WAL_RETRY_SECONDS)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 20:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [getattr(item, "orig", None), item.__cause__, item.__context__]
    return seen


def connect_failure(exc: BaseException, url: str) -> str | None:
    """A plain sentence for "the database cannot be reached or refused us", else None.

    Names the server and user, never the password."""
    if url.startswith("sqlite"):
        return None
    parsed = sa.engine.make_url(url)
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    for item in _chain(exc):
        name = type(item).__name__
        if name in {"InvalidPasswordError", "InvalidAuthorizationSpecificationError"}:
            return (
                f"PostgreSQL at {where} refused user {parsed.username!r} "
                "(wrong password or no such role)"
            )
        if name == "InvalidCatalogNameError":
            return f"PostgreSQL at {where} has no database {parsed.database!r}"
        if isinstance(item, TimeoutError):
            return f"PostgreSQL at {where} did not answer within {CONNECT_TIMEOUT_SECONDS:g} s"
        if isinstance(item, OSError):
            reason = item.strerror or str(item) or type(item).__name__
            return f"cannot reach PostgreSQL at {where}: {reason}"
    return None


async def create_schema(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration (kept under this name for callers)."""
    from server.migrations import upgrade

    await upgrade(engine)
