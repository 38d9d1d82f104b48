"""The messages inside the envelopes (protocol v1), after ``hello``.

``SecureChannel`` adds ``seq`` and ``bind`` to every message and checks them; what is here is
the body. Unknown extra fields are ignored (newer peers may add some); a known field with a
wrong type or value makes the whole message invalid (``InnerMessageError``: dropped, logged
without content).

=========  ==========================================================  =========================
type       fields                                                      meaning
=========  ==========================================================  =========================
hello      epoch, nonce, caps: [str], name?: str (client, <= 64)       see ``signaling.e2e``
commit     role, commit, round                                         a commit round starts
reveal     fingerprint, nonce, round                                   after holding the commit
offer      round, sdp                                                  after both reveals
answer     round, sdp
candidate  round, candidate: str ("" = end), sdpMid: str|null,         trickle ICE (browsers)
           sdpMLineIndex: int|null
rebuild    round                                                       my peer connection of
                                                                       that round is closed
chat       id, text (<= 4000)                                          also on the data channel
ack        id                                                          also on the data channel
mode       level: video | low-video | audio | text                     the sender's own level
           reason?: network | manual                                   (and why)
bye        reason?: left | ended | security                            the sender is going
=========  ==========================================================  =========================

``round`` and chat ``id`` are 1 to 64 base64url characters chosen by their sender.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any, Final, get_args

from signaling.crypto import b64u_encode
from signaling.peer.config import Level
from signaling.peer.errors import InnerMessageError

MAX_SDP: Final = 40_000
MAX_CHAT: Final = 4000
MAX_NAME: Final = 64
MAX_CANDIDATE: Final = 1000
CAP_ICE_RESTART: Final = "ice-restart"
CAP_ROLLBACK: Final = "rollback"
CAP_TEXT_ONLY: Final = "text-only"
BYE_REASONS: Final = frozenset({"left", "ended", "security"})
MODE_REASONS: Final = frozenset({"network", "manual"})
_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_id() -> str:
    """A fresh round or chat id: 12 random bytes, base64url (16 characters)."""
    return b64u_encode(secrets.token_bytes(12))


@dataclass(frozen=True, slots=True)
class Description:
    """``offer`` or ``answer``."""

    kind: str
    round: str
    sdp: str


@dataclass(frozen=True, slots=True)
class Candidate:
    round: str
    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True, slots=True)
class Rebuild:
    round: str


@dataclass(frozen=True, slots=True)
class Chat:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class Ack:
    id: str


@dataclass(frozen=True, slots=True)
class Mode:
    level: Level
    reason: str | None = None  # "network" or "manual" (why the sender is at that level)


@dataclass(frozen=True, slots=True)
class Bye:
    reason: str


Inner = Description | Candidate | Rebuild | Chat | Ack | Mode | Bye


def _str(msg: dict[str, Any], key: str, max_len: int) -> str:
    value = msg.get(key)
    if type(value) is not str or len(value) > max_len:
        raise InnerMessageError(f"{msg.get('type')}.{key} is not a string of <= {max_len}")
    return value


def _ident(msg: dict[str, Any], key: str) -> str:
    value = msg.get(key)
    if type(value) is not str or not _ID_RE.fullmatch(value):
        raise InnerMessageError(f"{msg.get('type')}.{key} is not an id")
    return value


def parse_inner(msg: dict[str, Any]) -> Inner:
    """The typed body of an opened envelope that is not hello, commit or reveal."""
    kind = msg.get("type")
    if kind in ("offer", "answer"):
        return Description(str(kind), _ident(msg, "round"), _str(msg, "sdp", MAX_SDP))
    if kind == "candidate":
        mid = msg.get("sdpMid")
        index = msg.get("sdpMLineIndex")
        if mid is not None and (type(mid) is not str or len(mid) > 64):
            raise InnerMessageError("candidate.sdpMid is malformed")
        if index is not None and (type(index) is not int or not 0 <= index < 64):
            raise InnerMessageError("candidate.sdpMLineIndex is malformed")
        return Candidate(_ident(msg, "round"), _str(msg, "candidate", MAX_CANDIDATE), mid, index)
    if kind == "rebuild":
        return Rebuild(_ident(msg, "round"))
    if kind == "chat":
        return Chat(_ident(msg, "id"), _str(msg, "text", MAX_CHAT))
    if kind == "ack":
        return Ack(_ident(msg, "id"))
    if kind == "mode":
        level = msg.get("level")
        reason = msg.get("reason")
        if reason is not None and (type(reason) is not str or reason not in MODE_REASONS):
            raise InnerMessageError("mode.reason is not a reason")
        for known in get_args(Level):
            if level == known:
                return Mode(known, reason)
        raise InnerMessageError("mode.level is not a level")
    if kind == "bye":
        reason = msg.get("reason", "left")
        if type(reason) is not str or reason not in BYE_REASONS:  # a list is not hashable
            raise InnerMessageError("bye.reason is not a reason")
        return Bye(str(reason))
    raise InnerMessageError("unknown message type")


def peer_name(hello: dict[str, Any]) -> str | None:
    """The display name in a client's hello, if well-formed."""
    name = hello.get("name")
    if type(name) is str and 0 < len(name) <= MAX_NAME:
        return name
    return None
