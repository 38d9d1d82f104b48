"""Rooms in the database: owned by a counselor, with a public id that "New link" replaces."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.audit import AuditEvent, record
from server.db import as_utc, rooms, utcnow
from signaling.crypto import new_room_id

MAX_LABEL = 80


class RoomError(Exception):
    """A room operation was refused."""


class RoomNotFound(RoomError):
    """No open room with that id belongs to this counselor."""


class TooManyRooms(RoomError):
    pass


class BadLabel(RoomError):
    pass


@dataclass(frozen=True)
class Room:
    pk: int
    id: str
    counselor_id: int
    label: str
    generation: int
    created_at: dt.datetime
    closed: bool

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "label": self.label,
            "created_at": self.created_at.isoformat(),
            "closed": self.closed,
        }


def clean_label(label: str) -> str:
    label = " ".join(label.split())
    if len(label) > MAX_LABEL:
        raise BadLabel(f"a label has at most {MAX_LABEL} characters")
    if any(ord(ch) < 32 for ch in label):
        raise BadLabel("a label cannot contain control characters")
    return label


def _room(row: sa.Row[tuple[object, ...]]) -> Room:
    m = row._mapping
    return Room(
        pk=int(m["pk"]),
        id=str(m["public_id"]),
        counselor_id=int(m["counselor_id"]),
        label=str(m["label"]),
        generation=int(m["generation"]),
        created_at=as_utc(m["created_at"]),
        closed=m["closed_at"] is not None,
    )


async def create_room(
    engine: AsyncEngine, counselor_id: int, label: str, max_rooms: int, ip: str | None = None
) -> Room:
    label = clean_label(label)
    async with engine.begin() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(rooms)
            .where(rooms.c.counselor_id == counselor_id, rooms.c.closed_at.is_(None))
        )
        if (count or 0) >= max_rooms:
            raise TooManyRooms(f"at most {max_rooms} open rooms per counselor")
        now = utcnow()
        public_id = new_room_id()
        pk = await conn.scalar(
            rooms.insert()
            .values(
                public_id=public_id,
                counselor_id=counselor_id,
                label=label,
                generation=0,
                created_at=now,
                closed_at=None,
            )
            .returning(rooms.c.pk)
        )
        assert pk is not None
        await record(conn, AuditEvent.ROOM_CREATED, counselor_id=counselor_id, room_pk=pk, ip=ip)
    return Room(pk, public_id, counselor_id, label, 0, now, False)


async def list_rooms(engine: AsyncEngine, counselor_id: int) -> list[Room]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(rooms)
                .where(rooms.c.counselor_id == counselor_id, rooms.c.closed_at.is_(None))
                .order_by(rooms.c.created_at.desc(), rooms.c.pk.desc())
            )
        ).all()
    return [_room(r) for r in rows]


async def get_open_room(engine: AsyncEngine, public_id: str) -> Room | None:
    """The open room with this public id, or None for unknown and closed alike."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(rooms).where(rooms.c.public_id == public_id, rooms.c.closed_at.is_(None))
            )
        ).first()
    return _room(row) if row else None


async def _owned(engine: AsyncEngine, counselor_id: int, public_id: str) -> Room:
    room = await get_open_room(engine, public_id)
    if room is None or room.counselor_id != counselor_id:
        raise RoomNotFound("no such room")
    return room


async def rename_room(
    engine: AsyncEngine, counselor_id: int, public_id: str, label: str, ip: str | None = None
) -> Room:
    label = clean_label(label)
    room = await _owned(engine, counselor_id, public_id)
    async with engine.begin() as conn:
        await conn.execute(rooms.update().where(rooms.c.pk == room.pk).values(label=label))
        await record(
            conn, AuditEvent.ROOM_RENAMED, counselor_id=counselor_id, room_pk=room.pk, ip=ip
        )
    return Room(room.pk, room.id, counselor_id, label, room.generation, room.created_at, False)


async def close_room(
    engine: AsyncEngine, counselor_id: int, public_id: str, ip: str | None = None
) -> Room:
    room = await _owned(engine, counselor_id, public_id)
    async with engine.begin() as conn:
        await conn.execute(
            rooms.update()
            .where(rooms.c.pk == room.pk)
            .values(closed_at=utcnow(), generation=rooms.c.generation + 1)
        )
        await record(
            conn, AuditEvent.ROOM_CLOSED, counselor_id=counselor_id, room_pk=room.pk, ip=ip
        )
    return Room(
        room.pk, room.id, counselor_id, room.label, room.generation + 1, room.created_at, True
    )


async def new_link(
    engine: AsyncEngine, counselor_id: int, public_id: str, ip: str | None = None
) -> Room:
    """Give the room a new public id (the browser makes a new key): the old link stops working."""
    room = await _owned(engine, counselor_id, public_id)
    fresh = new_room_id()
    async with engine.begin() as conn:
        await conn.execute(
            rooms.update()
            .where(rooms.c.pk == room.pk)
            .values(public_id=fresh, generation=rooms.c.generation + 1)
        )
        await record(
            conn, AuditEvent.ROOM_NEW_LINK, counselor_id=counselor_id, room_pk=room.pk, ip=ip
        )
    return Room(
        room.pk, fresh, counselor_id, room.label, room.generation + 1, room.created_at, False
    )


async def bump_generation(engine: AsyncEngine, room_pk: int) -> int:
    async with engine.begin() as conn:
        value = await conn.scalar(
            rooms.update()
            .where(rooms.c.pk == room_pk)
            .values(generation=rooms.c.generation + 1)
            .returning(rooms.c.generation)
        )
    return int(value or 0)
