"""Storage: SQLAlchemy Core (async). SQLite in the data dir by default, PostgreSQL by URL.

Only accounts, rooms and a metadata audit trail live here: never chat, SDP, names typed by
clients or room keys.
"""

from __future__ import annotations

import datetime as dt

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


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(conn: object, _record: object) -> None:
            cursor = conn.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True)


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
