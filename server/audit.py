"""The audit trail: metadata only (event, when, which counselor/room, from which IP).

Never chat, SDP, names typed by clients, room labels or keys. Purged after ``RUANG_AUDIT_DAYS``.
"""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.db import audit, utcnow


class AuditEvent(enum.StrEnum):
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGIN_THROTTLED = "login_throttled"
    LOGOUT = "logout"
    COUNSELOR_ADDED = "counselor_added"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name
    COUNSELOR_DISABLED = "counselor_disabled"
    ROOM_CREATED = "room_created"
    ROOM_RENAMED = "room_renamed"
    ROOM_CLOSED = "room_closed"
    ROOM_NEW_LINK = "room_new_link"
    CLIENT_ADMITTED = "client_admitted"
    CLIENT_DECLINED = "client_declined"
    CLIENT_REMOVED = "client_removed"
    SESSION_ENDED = "session_ended"


async def record(
    conn: AsyncConnection | AsyncEngine,
    event: AuditEvent,
    *,
    counselor_id: int | None = None,
    room_pk: int | None = None,
    ip: str | None = None,
) -> None:
    stmt = audit.insert().values(
        at=utcnow(), event=event.value, counselor_id=counselor_id, room_pk=room_pk, ip=ip
    )
    if isinstance(conn, AsyncEngine):
        async with conn.begin() as c:
            await c.execute(stmt)
    else:
        await conn.execute(stmt)


async def purge(engine: AsyncEngine, days: int) -> int:
    cutoff = utcnow() - dt.timedelta(days=days)
    async with engine.begin() as conn:
        result = await conn.execute(audit.delete().where(audit.c.at < cutoff))
    return int(result.rowcount or 0)


async def recent(engine: AsyncEngine, limit: int = 100) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit).order_by(audit.c.id.desc()).limit(limit))).all()
    return [dict(r._mapping) for r in rows]
