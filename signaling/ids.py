"""Room ids and room keys (protocol v1): CSPRNG bytes, base64url without padding."""

from __future__ import annotations

import base64
import re
import secrets

ROOM_ID_BYTES = 16
ROOM_KEY_BYTES = 32
_ROOM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
_ROOM_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def _b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_room_id() -> str:
    """16 random bytes: 22 characters."""
    return _b64u(secrets.token_bytes(ROOM_ID_BYTES))


def new_room_key() -> str:
    """32 random bytes: 43 characters (the link's whole fragment)."""
    return _b64u(secrets.token_bytes(ROOM_KEY_BYTES))


def _canonical(text: str, pattern: re.Pattern[str], size: int) -> bool:
    if not pattern.match(text):
        return False
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return len(raw) == size and _b64u(raw) == text


def is_room_id(text: str) -> bool:
    return _canonical(text, _ROOM_ID_RE, ROOM_ID_BYTES)


def is_room_key(text: str) -> bool:
    return _canonical(text, _ROOM_KEY_RE, ROOM_KEY_BYTES)
