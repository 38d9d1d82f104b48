"""The storage layer behaves the same on SQLite and PostgreSQL: email case, concurrent writers,
counters bumped at once, time zones and the audit purge (real engines, in process)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server import accounts, audit, migrations, rooms_store
from server.db import audit as audit_table
from server.db import make_engine, utcnow
from tests.postgres_support import DATABASES
from tests.support import PASSWORD


@pytest.fixture(params=DATABASES)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'ruang.db'}"
    made = make_engine(url)
    await migrations.upgrade(made)
    try:
        yield made
    finally:
        await made.dispose()


async def test_email_is_unique_whatever_its_case(engine: AsyncEngine) -> None:
    made = await accounts.add_counselor(engine, "Ana@Example.ORG", PASSWORD)
    assert made.email == "ana@example.org"
    with pytest.raises(accounts.DuplicateCounselor):
        await accounts.add_counselor(engine, "ana@example.org", PASSWORD)
    found = await accounts.authenticate(engine, "ANA@example.org", PASSWORD)
    assert found is not None and found.id == made.id and found.active is True


async def test_the_same_email_added_at_once_makes_one_account(engine: AsyncEngine) -> None:
    results = await asyncio.wait_for(
        asyncio.gather(
            *(accounts.add_counselor(engine, "budi@example.org", PASSWORD) for _ in range(6)),
            return_exceptions=True,
        ),
        timeout=60,
    )
    made = [r for r in results if isinstance(r, accounts.Counselor)]
    assert len(made) == 1, results
    assert all(isinstance(r, accounts.DuplicateCounselor) for r in results if r not in made)
    assert [c.email for c in await accounts.list_counselors(engine)] == ["budi@example.org"]


async def test_session_epoch_and_generation_bumps_are_atomic(engine: AsyncEngine) -> None:
    counselor = await accounts.add_counselor(engine, "citra@example.org", PASSWORD)
    changed = await asyncio.wait_for(
        asyncio.gather(
            *(accounts.set_password(engine, "citra@example.org", PASSWORD) for _ in range(5))
        ),
        timeout=60,
    )
    assert sorted(c.session_epoch for c in changed) == [1, 2, 3, 4, 5]
    disabled = await accounts.disable_counselor(engine, "citra@example.org")
    assert disabled.session_epoch == 6 and disabled.active is False
    assert await accounts.authenticate(engine, "citra@example.org", PASSWORD) is None
    with pytest.raises(accounts.UnknownCounselor):
        await accounts.disable_counselor(engine, "nobody@example.org")

    room = await rooms_store.create_room(engine, counselor.id, "R.", max_rooms=5)
    bumped = await asyncio.wait_for(
        asyncio.gather(*(rooms_store.bump_generation(engine, room.pk) for _ in range(20))),
        timeout=60,
    )
    assert sorted(bumped) == list(range(1, 21))


async def test_times_come_back_as_the_same_utc_instant(engine: AsyncEngine) -> None:
    counselor = await accounts.add_counselor(engine, "dewi@example.org", PASSWORD)
    made = await rooms_store.create_room(engine, counselor.id, "Ü label", max_rooms=5)
    [listed] = await rooms_store.list_rooms(engine, counselor.id)
    assert listed.created_at == made.created_at
    assert listed.created_at.utcoffset() == dt.timedelta(0)
    assert listed.as_json() == made.as_json()
    assert listed.label == "Ü label"
    renamed = await rooms_store.rename_room(engine, counselor.id, made.id, "x" * 80)
    relinked = await rooms_store.new_link(engine, counselor.id, made.id)
    assert relinked.id != made.id and relinked.generation == 1
    assert await rooms_store.get_open_room(engine, made.id) is None
    reopened = await rooms_store.get_open_room(engine, relinked.id)
    assert reopened is not None and reopened.label == renamed.label
    closed = await rooms_store.close_room(engine, counselor.id, relinked.id)
    assert closed.closed and await rooms_store.get_open_room(engine, relinked.id) is None
    assert closed.generation == 2


async def test_audit_purge_removes_only_old_entries(engine: AsyncEngine) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        for days in (40, 31, 29, 0):
            await conn.execute(
                audit_table.insert().values(
                    at=now - dt.timedelta(days=days), event="login", counselor_id=days
                )
            )
    await audit.record(engine, audit.AuditEvent.LOGOUT, counselor_id=1, ip="198.51.100.7")
    assert await audit.purge(engine, 30) == 2
    async with engine.connect() as conn:
        kept = (
            await conn.execute(sa.select(audit_table.c.counselor_id).order_by(audit_table.c.id))
        ).all()
    assert [r[0] for r in kept] == [29, 0, 1]
    assert await audit.purge(engine, 30) == 0
