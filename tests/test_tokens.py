"""Resume tokens: self-contained, HMAC-SHA256, refused with a distinct error for each cause."""

from __future__ import annotations

import base64
import json

import pytest

from signaling import tokens
from signaling.messages import MAX_TOKEN, Role
from signaling.tokens import (
    ExpiredToken,
    MalformedToken,
    ResumeClaims,
    StaleGeneration,
    TamperedToken,
    TokenError,
    WrongRoom,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NOW = 1_700_000_000.0
ROOM = "IZ9nS_zuLSo8SfMya5LuBg"
CLAIMS = ResumeClaims(ROOM, "k3PqX0aZ9cQe", Role.CLIENT, True, 4, int(NOW) + 80)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_round_trip() -> None:
    token = tokens.issue(KEY, CLAIMS)
    assert tokens.decode(KEY, token, now=NOW) == CLAIMS
    got = tokens.verify(KEY, token, now=NOW, room_id=ROOM, role=Role.CLIENT, generation=4)
    assert got == CLAIMS
    assert len(token) <= MAX_TOKEN
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_counselor_and_not_admitted_round_trip() -> None:
    claims = ResumeClaims(ROOM, "counselor", Role.COUNSELOR, False, 0, int(NOW) + 1)
    assert tokens.decode(KEY, tokens.issue(KEY, claims), now=NOW) == claims


def test_payload_is_what_the_docstring_says() -> None:
    body = tokens.issue(KEY, CLAIMS).split(".")[0]
    payload = base64.urlsafe_b64decode(body + "==")
    assert json.loads(payload) == [1, ROOM, "k3PqX0aZ9cQe", "k", 1, 4, int(NOW) + 80]


def test_tampered_tokens_are_refused() -> None:
    token = tokens.issue(KEY, CLAIMS)
    body, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    # Promote a waiting client to admitted, keeping the old MAC.
    payload[4] = 0 if payload[4] else 1
    forged = _b64(json.dumps(payload, separators=(",", ":")).encode()) + "." + mac
    with pytest.raises(TamperedToken):
        tokens.decode(KEY, forged, now=NOW)
    # Flip one bit of the MAC.
    raw_mac = bytearray(base64.urlsafe_b64decode(mac + "=="))
    raw_mac[0] ^= 1
    with pytest.raises(TamperedToken):
        tokens.decode(KEY, body + "." + _b64(bytes(raw_mac)), now=NOW)
    # Another server secret.
    with pytest.raises(TamperedToken):
        tokens.decode(OTHER_KEY, token, now=NOW)
    # A MAC cut short.
    with pytest.raises(TamperedToken):
        tokens.decode(KEY, body + "." + mac[:20], now=NOW)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "!!!.???", "a=.b", "." * 2, "x" * 600])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises((MalformedToken, TamperedToken)) as info:
        tokens.decode(KEY, token, now=NOW)
    assert info.value.reason == "invalid"


def test_authentic_but_unreadable_payload_is_malformed() -> None:
    payload = b'["not", "a", "token"]'
    token = _b64(payload) + "." + _b64(tokens._mac(KEY, payload))
    with pytest.raises(MalformedToken):
        tokens.decode(KEY, token, now=NOW)


def test_expiry_boundary() -> None:
    token = tokens.issue(KEY, CLAIMS)
    tokens.decode(KEY, token, now=CLAIMS.expires - 0.5)
    with pytest.raises(ExpiredToken) as info:
        tokens.decode(KEY, token, now=CLAIMS.expires)
    assert info.value.reason == "expired"


def test_wrong_room_role_and_generation() -> None:
    token = tokens.issue(KEY, CLAIMS)
    with pytest.raises(WrongRoom):
        tokens.verify(KEY, token, now=NOW, room_id="x" * 22, role=Role.CLIENT, generation=4)
    with pytest.raises(WrongRoom):
        tokens.verify(KEY, token, now=NOW, room_id=ROOM, role=Role.COUNSELOR, generation=4)
    with pytest.raises(StaleGeneration) as info:
        tokens.verify(KEY, token, now=NOW, room_id=ROOM, role=Role.CLIENT, generation=5)
    assert info.value.reason == "revoked"


def test_each_cause_has_its_own_class() -> None:
    classes = [MalformedToken, TamperedToken, WrongRoom, ExpiredToken, StaleGeneration]
    assert len(set(classes)) == len(classes)
    assert all(issubclass(c, TokenError) for c in classes)
    assert tokens.RevokedToken not in classes


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        tokens.issue(b"short", CLAIMS)
    with pytest.raises(ValueError):
        tokens.decode(b"short", "a.b", now=NOW)
