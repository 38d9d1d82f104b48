"""Counselor accounts: argon2id hashing (off the event loop) and the counselors table."""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db import counselors, utcnow

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024


class AccountError(ValueError):
    """An account operation was refused (the message is safe to show the operator)."""


class UnknownCounselor(AccountError):
    pass


class DuplicateCounselor(AccountError):
    pass


class WeakPassword(AccountError):
    pass


@dataclass(frozen=True)
class Counselor:
    id: int
    email: str
    active: bool
    session_epoch: int


_hasher = PasswordHasher()  # immutable configuration, safe to share


@functools.cache
def dummy_hash() -> str:
    """A real argon2id hash of a fixed password, so that verifying an unknown email costs the
    same time as a known one. Made once per process, on first use: not at import, which every
    CLI command would pay (``ruang serve`` makes it in the background at start)."""
    return _hasher.hash("ruang-dummy-password-for-timing")


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise AccountError("not a valid email address")
    return email


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise WeakPassword(f"password must have at most {MAX_PASSWORD} characters")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    def _verify() -> bool:
        try:
            return _hasher.verify(stored_hash or dummy_hash(), password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    if len(password) > MAX_PASSWORD:
        return False
    return await asyncio.to_thread(_verify)


def _row(row: Any) -> Counselor:
    return Counselor(id=row[0], email=row[1], active=bool(row[2]), session_epoch=row[3])


_COLUMNS = (counselors.c.id, counselors.c.email, counselors.c.active, counselors.c.session_epoch)


async def add_counselor(engine: AsyncEngine, email: str, password: str) -> Counselor:
    email = normalise_email(email)
    check_password_strength(password)
    password_hash = await hash_password(password)
    duplicate = DuplicateCounselor(f"a counselor with email {email} already exists")
    try:
        async with engine.begin() as conn:
            exists = await conn.scalar(
                sa.select(counselors.c.id).where(counselors.c.email == email)
            )
            if exists is not None:
                raise duplicate
            new_id = await conn.scalar(
                counselors.insert()
                .values(
                    email=email,
                    password_hash=password_hash,
                    active=True,
                    session_epoch=0,
                    created_at=utcnow(),
                )
                .returning(counselors.c.id)
            )
    except sa.exc.IntegrityError:  # the same email added at the same moment elsewhere
        raise duplicate from None
    assert new_id is not None
    return Counselor(id=int(new_id), email=email, active=True, session_epoch=0)


async def list_counselors(engine: AsyncEngine) -> list[Counselor]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(*_COLUMNS).order_by(counselors.c.email))).all()
    return [_row(r) for r in rows]


async def get_by_id(engine: AsyncEngine, counselor_id: int) -> Counselor | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(*_COLUMNS).where(counselors.c.id == counselor_id))
        ).first()
    return _row(row) if row else None


async def authenticate(engine: AsyncEngine, email: str, password: str) -> Counselor | None:
    """Return the active counselor for these credentials, else None (same cost either way)."""
    try:
        email = normalise_email(email)
    except AccountError:
        email = ""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(*_COLUMNS, counselors.c.password_hash).where(counselors.c.email == email)
            )
        ).first()
    stored = row[4] if row else None
    ok = await verify_password(stored, password)
    if not ok or row is None or not row[2]:
        return None
    return Counselor(id=row[0], email=row[1], active=True, session_epoch=row[3])


async def counselor_id_for_email(engine: AsyncEngine, email: str) -> int | None:
    try:
        email = normalise_email(email)
    except AccountError:
        return None
    async with engine.connect() as conn:
        value = await conn.scalar(sa.select(counselors.c.id).where(counselors.c.email == email))
    return int(value) if value is not None else None


async def set_password(engine: AsyncEngine, email: str, password: str) -> Counselor:
    email = normalise_email(email)
    check_password_strength(password)
    password_hash = await hash_password(password)
    async with engine.begin() as conn:
        # One statement: the epoch bump and the values returned are atomic on both engines.
        row = (
            await conn.execute(
                counselors.update()
                .where(counselors.c.email == email)
                .values(password_hash=password_hash, session_epoch=counselors.c.session_epoch + 1)
                .returning(*_COLUMNS)
            )
        ).first()
    if row is None:
        raise UnknownCounselor(f"no counselor with email {email}")
    return _row(row)


async def disable_counselor(engine: AsyncEngine, email: str) -> Counselor:
    email = normalise_email(email)
    async with engine.begin() as conn:
        # One statement: the epoch bump and the values returned are atomic on both engines.
        row = (
            await conn.execute(
                counselors.update()
                .where(counselors.c.email == email)
                .values(active=False, session_epoch=counselors.c.session_epoch + 1)
                .returning(*_COLUMNS)
            )
        ).first()
    if row is None:
        raise UnknownCounselor(f"no counselor with email {email}")
    return _row(row)
