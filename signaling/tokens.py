"""Self-contained resume tokens, MAC'd with HMAC-SHA256 under a key the server derives from its
secret (``derive_key(secret, "ruang/resume")``), so they survive a restart and work on any
process sharing the secret.

Format: ``base64url(payload) "." base64url(mac)``, where payload is the compact JSON array
``[1, room, participant, role, admitted, generation, expires]`` (role ``"c"`` or ``"k"``,
admitted 0 or 1, expires in whole Unix seconds) and
``mac = HMAC-SHA256(key, "ruang/resume/v1" || 0x00 || payload)``.
The MAC is checked (in constant time) before anything in the payload is read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from signaling.messages import MAX_TOKEN, Role

TOKEN_VERSION = 1
_DOMAIN = b"ruang/resume/v1\x00"
_ROLE_CODE: Mapping[Role, str] = MappingProxyType({Role.COUNSELOR: "c", Role.CLIENT: "k"})
_CODE_ROLE: Mapping[str, Role] = MappingProxyType({v: k for k, v in _ROLE_CODE.items()})
MIN_KEY = 32


class TokenError(Exception):
    """A resume token was refused. ``reason`` is what the peer is told."""

    reason: ClassVar[str] = "invalid"


class MalformedToken(TokenError):
    """Not a token of this format at all."""


class TamperedToken(TokenError):
    """The MAC does not match: forged, altered, or made with another secret."""


class WrongRoom(TokenError):
    """A valid token for another room (or role)."""


class ExpiredToken(TokenError):
    reason = "expired"


class StaleGeneration(TokenError):
    """The room's generation moved on (remove, decline, end session, new link) since issue."""

    reason = "revoked"


class RevokedToken(TokenError):
    """The participant left or was removed (the hub remembers it for the token's lifetime)."""

    reason = "revoked"


@dataclass(frozen=True, slots=True)
class ResumeClaims:
    room: str
    participant: str
    role: Role
    admitted: bool
    generation: int
    expires: int  # Unix seconds


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + payload, hashlib.sha256).digest()


def _check_key(key: bytes) -> None:
    if len(key) < MIN_KEY:
        raise ValueError(f"a resume token key has at least {MIN_KEY} bytes")


def issue(key: bytes, claims: ResumeClaims) -> str:
    _check_key(key)
    payload = json.dumps(
        [
            TOKEN_VERSION,
            claims.room,
            claims.participant,
            _ROLE_CODE[claims.role],
            1 if claims.admitted else 0,
            claims.generation,
            claims.expires,
        ],
        separators=(",", ":"),
    ).encode()
    token = _b64(payload) + "." + _b64(_mac(key, payload))
    if len(token) > MAX_TOKEN:
        raise ValueError("resume token too long (room or participant id too long)")
    return token


def decode(key: bytes, token: str, *, now: float) -> ResumeClaims:
    """Check the MAC and the expiry; raise a ``TokenError`` subclass otherwise."""
    _check_key(key)
    if len(token) > MAX_TOKEN or token.count(".") != 1:
        raise MalformedToken("not a resume token")
    body, tag = token.split(".")
    try:
        payload = _unb64(body)
        mac = _unb64(tag)
    except (binascii.Error, ValueError):
        raise MalformedToken("not a resume token") from None
    if not hmac.compare_digest(mac, _mac(key, payload)):
        raise TamperedToken("the token's MAC does not match")
    # Authentic from here on: a shape error is our own bug or another version.
    try:
        version, room, participant, role, admitted, generation, expires = json.loads(payload)
        if type(room) is not str or type(participant) is not str:
            raise TypeError("room and participant are strings")
        room.encode(), participant.encode()  # well-formed Unicode, else UnicodeEncodeError
        claims = ResumeClaims(
            room=room,
            participant=participant,
            role=_CODE_ROLE[role],
            admitted=admitted == 1,
            generation=int(generation),
            expires=int(expires),
        )
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
        raise MalformedToken("unreadable resume token") from None
    if version != TOKEN_VERSION:
        raise MalformedToken("unsupported resume token version")
    if claims.expires <= math.floor(now):
        raise ExpiredToken("the resume token has expired")
    return claims


def check_target(claims: ResumeClaims, *, room_id: str, role: Role) -> None:
    if not hmac.compare_digest(claims.room.encode(), room_id.encode()) or claims.role is not role:
        raise WrongRoom("the resume token is for another room or role")


def check_generation(claims: ResumeClaims, generation: int) -> None:
    if claims.generation != generation:
        raise StaleGeneration("the room's generation has moved on")


def verify(
    key: bytes, token: str, *, now: float, room_id: str, role: Role, generation: int
) -> ResumeClaims:
    """``decode`` plus the checks against the room, role and generation the peer rejoins."""
    claims = decode(key, token, now=now)
    check_target(claims, room_id=room_id, role=role)
    check_generation(claims, generation)
    return claims
