"""Protocol v1 messages: typed, immutable, with exactly one ``parse`` and one ``dump``.

Every message is a JSON object with a ``type``. ``parse`` accepts the messages of both directions
(the server and the Python peer share it) and raises a ``ProtocolError`` subclass with a stable
``code`` for anything else. Fields are checked strictly: no missing, extra or wrongly typed field,
no over-long string. Envelope boxes are opaque base64url strings: nothing here looks inside.

``relay`` is the hot path, so ``parse`` and ``dump`` take a short cut for it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

PROTOCOL_VERSION = 1
COUNSELOR_ID = "counselor"  # the counselor's participant id, in every room, always
MAX_ID = 64  # participant ids, room ids and epochs
MAX_TOKEN = 512
MAX_BOX = 1 << 20  # a sanity bound; the frame cap (64 KiB by default) is the real one
MAX_TEXT = 200  # server-written error messages
MAX_PEERS = 64

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_.-]+")
_id_ok = _ID_RE.fullmatch
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64_ok(text: str) -> bool:
    """Non-empty base64url (no padding). About 3x faster than a regex on a 60 KB box."""
    return bool(text) and text.isascii() and not text.encode("ascii").translate(None, _B64_ALPHABET)


_encode = json.encoder.encode_basestring


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity, -Infinity: Python accepts them


_loads = json.JSONDecoder(parse_constant=_not_json).decode  # json.loads without those


class Role(enum.StrEnum):
    COUNSELOR = "counselor"
    CLIENT = "client"


class PeerState(enum.StrEnum):
    WAITING = "waiting"
    ADMITTED = "admitted"
    GONE = "gone"


class GoneReason(enum.StrEnum):
    LEFT = "left"
    EXPIRED = "expired"
    DECLINED = "declined"
    REMOVED = "removed"
    ENDED = "ended"


# --- errors -------------------------------------------------------------------------------------


class ProtocolError(ValueError):
    """A frame that is not a valid v1 message. ``code`` is stable; the text names no payload."""

    code: ClassVar[str] = "protocol_error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MalformedJson(ProtocolError):
    code = "bad_json"


class UnknownType(ProtocolError):
    code = "unknown_type"


class MissingField(ProtocolError):
    code = "missing_field"


class ExtraField(ProtocolError):
    code = "extra_field"


class WrongType(ProtocolError):
    code = "wrong_type"


class BadValue(ProtocolError):
    code = "bad_value"


class TooLong(ProtocolError):
    code = "too_long"


# --- field checks -------------------------------------------------------------------------------

Check = Callable[[str, Any], Any]


def _string(pattern: re.Pattern[str] | None, max_len: int) -> Check:
    def check(key: str, value: Any) -> str:
        if type(value) is not str:
            raise WrongType(f"{key} must be a string", key)
        if len(value) > max_len:
            raise TooLong(f"{key} is longer than {max_len} characters", key)
        if pattern is not None and not pattern.fullmatch(value):
            raise BadValue(f"{key} has characters or a length it may not have", key)
        return value

    return check


def _integer(low: int, high: int) -> Check:
    def check(key: str, value: Any) -> int:
        if type(value) is not int:
            raise WrongType(f"{key} must be an integer", key)
        if not low <= value <= high:
            raise BadValue(f"{key} must be between {low} and {high}", key)
        return value

    return check


def _boolean(key: str, value: Any) -> bool:
    if type(value) is not bool:
        raise WrongType(f"{key} must be true or false", key)
    return value


def _choice(kind: type[enum.StrEnum]) -> Check:
    def check(key: str, value: Any) -> enum.StrEnum:
        if type(value) is not str:
            raise WrongType(f"{key} must be a string", key)
        try:
            return kind(value)
        except ValueError:
            raise BadValue(f"{key} must be one of {', '.join(kind)}", key) from None

    return check


_ID = _string(_ID_RE, MAX_ID)


_BOX_TEXT = _string(None, MAX_BOX)


def _box(key: str, value: Any) -> str:
    text: str = _BOX_TEXT(key, value)
    if not _b64_ok(text):
        raise BadValue(f"{key} must be non-empty base64url", key)
    return text


_BOX = _box
_TOKEN = _string(_TOKEN_RE, MAX_TOKEN)
_TEXT = _string(None, MAX_TEXT)
_CODE = _string(re.compile(r"[a-z_]{1,40}"), 40)
_TYPE_NAME = _string(re.compile(r"[a-z_]{1,20}"), 20)
_VERSION = _integer(0, 1_000_000)
_ROLE = _choice(Role)
_STATE = _choice(PeerState)
_REASON = _choice(GoneReason)


def _m(check: Check, key: str | None = None) -> dict[str, Any]:
    """Field metadata: how to check the value, and its JSON key when not the attribute name."""
    return {"check": check, "key": key}


# --- messages: peer -> server -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """One entry of a roster (not a message by itself)."""

    id: str = field(metadata=_m(_ID))
    role: Role = field(metadata=_m(_ROLE))
    state: PeerState = field(metadata=_m(_STATE))
    connected: bool = field(metadata=_m(_boolean))


@dataclass(frozen=True, slots=True)
class Join:
    type: ClassVar[str] = "join"
    v: int = field(metadata=_m(_VERSION))
    room: str = field(metadata=_m(_ID))
    role: Role = field(metadata=_m(_ROLE))
    resume: str | None = field(default=None, metadata=_m(_TOKEN))


@dataclass(frozen=True, slots=True)
class Relay:
    """An envelope from a peer. ``box`` is opaque ciphertext (base64url)."""

    type: ClassVar[str] = "relay"
    to: str = field(metadata=_m(_ID))
    epoch: str = field(metadata=_m(_ID))
    box: str = field(metadata=_m(_BOX))


@dataclass(frozen=True, slots=True)
class Admit:
    type: ClassVar[str] = "admit"
    id: str = field(metadata=_m(_ID))


@dataclass(frozen=True, slots=True)
class Decline:
    type: ClassVar[str] = "decline"
    id: str = field(metadata=_m(_ID))


@dataclass(frozen=True, slots=True)
class Remove:
    type: ClassVar[str] = "remove"
    id: str = field(metadata=_m(_ID))


@dataclass(frozen=True, slots=True)
class End:
    type: ClassVar[str] = "end"


@dataclass(frozen=True, slots=True)
class Leave:
    type: ClassVar[str] = "leave"


@dataclass(frozen=True, slots=True)
class Ping:
    type: ClassVar[str] = "ping"


# --- messages: server -> peer -------------------------------------------------------------------


def _objects(cls: type, most: int) -> Check:
    """A list of at most ``most`` JSON objects, each read as ``cls`` (no ``type`` key)."""

    def check(key: str, value: Any) -> tuple[Any, ...]:
        if type(value) is not list:
            raise WrongType(f"{key} must be a list", key)
        if len(value) > most:
            raise TooLong(f"{key} has more than {most} entries", key)
        out = []
        for item in value:
            if type(item) is not dict:
                raise WrongType(f"{key} entries must be objects", key)
            out.append(_build(cls, item, expect_type=False))
        return tuple(out)

    return check


_peers = _objects(PeerInfo, MAX_PEERS)


@dataclass(frozen=True, slots=True)
class Joined:
    type: ClassVar[str] = "joined"
    v: int = field(metadata=_m(_VERSION))
    id: str = field(metadata=_m(_ID))
    role: Role = field(metadata=_m(_ROLE))
    state: PeerState = field(metadata=_m(_STATE))
    resumed: bool = field(metadata=_m(_boolean))
    resume: str = field(metadata=_m(_TOKEN))
    resume_seconds: int = field(metadata=_m(_integer(1, 86_400)))
    max_frame: int = field(metadata=_m(_integer(1, 1 << 30)))
    peers: tuple[PeerInfo, ...] = field(metadata=_m(_peers))
    resume_error: str | None = field(default=None, metadata=_m(_CODE))


@dataclass(frozen=True, slots=True)
class Admitted:
    type: ClassVar[str] = "admitted"
    peers: tuple[PeerInfo, ...] = field(metadata=_m(_peers))


@dataclass(frozen=True, slots=True)
class Peer:
    type: ClassVar[str] = "peer"
    id: str = field(metadata=_m(_ID))
    role: Role = field(metadata=_m(_ROLE))
    state: PeerState = field(metadata=_m(_STATE))
    connected: bool = field(metadata=_m(_boolean))
    reason: GoneReason | None = field(default=None, metadata=_m(_REASON))


@dataclass(frozen=True, slots=True)
class Relayed:
    """An envelope as the server forwards it, with the server-stamped sender id."""

    type: ClassVar[str] = "relay"
    sender: str = field(metadata=_m(_ID, "from"))
    epoch: str = field(metadata=_m(_ID))
    box: str = field(metadata=_m(_BOX))


@dataclass(frozen=True, slots=True)
class Token:
    type: ClassVar[str] = "token"
    resume: str = field(metadata=_m(_TOKEN))


MAX_ICE_SERVERS = 8
MAX_ICE_URLS = 8
_ICE_URL = _string(re.compile(r"(stuns?|turns?):[\x21-\x7e]{1,500}"), 512)
_ICE_SECRET = _string(None, 256)


def _ice_urls(key: str, value: Any) -> tuple[str, ...]:
    if type(value) is not list:
        raise WrongType(f"{key} must be a list", key)
    if not 0 < len(value) <= MAX_ICE_URLS:
        raise BadValue(f"{key} must have 1 to {MAX_ICE_URLS} entries", key)
    return tuple(_ICE_URL(key, url) for url in value)


@dataclass(frozen=True, slots=True)
class IceServerInfo:
    """One ``RTCIceServer`` of a ``call_servers`` message (not a message by itself)."""

    urls: tuple[str, ...] = field(metadata=_m(_ice_urls))
    username: str | None = field(default=None, metadata=_m(_ICE_SECRET))
    credential: str | None = field(default=None, metadata=_m(_ICE_SECRET))


_ice_servers = _objects(IceServerInfo, MAX_ICE_SERVERS)


@dataclass(frozen=True, slots=True)
class CallServers:
    """The ICE servers for the next peer connections, pushed by the server (the same body as
    ``POST /api/turn`` answers): to the counselor when it joins, to a client when it is admitted
    and when it joins as an admitted client. ``ttl``/``expires`` only with a TURN credential."""

    type: ClassVar[str] = "call_servers"
    ice_servers: tuple[IceServerInfo, ...] = field(metadata=_m(_ice_servers, "iceServers"))
    ttl: int | None = field(default=None, metadata=_m(_integer(1, 7 * 86_400)))
    expires: int | None = field(default=None, metadata=_m(_integer(0, 1 << 40)))


@dataclass(frozen=True, slots=True)
class Error:
    type: ClassVar[str] = "error"
    code: str = field(metadata=_m(_CODE))
    message: str = field(metadata=_m(_TEXT))
    ref: str | None = field(default=None, metadata=_m(_TYPE_NAME))


@dataclass(frozen=True, slots=True)
class Pong:
    type: ClassVar[str] = "pong"


PeerMessage = Join | Relay | Admit | Decline | Remove | End | Leave | Ping
ServerMessage = Joined | Admitted | Peer | Relayed | Token | CallServers | Error | Pong
Message = PeerMessage | ServerMessage
PEER_MESSAGES: tuple[type[PeerMessage], ...] = (
    Join,
    Relay,
    Admit,
    Decline,
    Remove,
    End,
    Leave,
    Ping,
)
SERVER_MESSAGES: tuple[type[ServerMessage], ...] = (
    Joined,
    Admitted,
    Peer,
    Relayed,
    Token,
    CallServers,
    Error,
    Pong,
)

# (json key, attribute, check, required) per class: read-only tables built once at import.
_Spec = tuple[tuple[str, str, Check, bool], ...]


def _spec(cls: type) -> _Spec:
    return tuple(
        (f.metadata["key"] or f.name, f.name, f.metadata["check"], f.default is MISSING)
        for f in dataclasses.fields(cls)
    )


_SPECS: Mapping[type, _Spec] = MappingProxyType(
    {c: _spec(c) for c in (PeerInfo, IceServerInfo, *PEER_MESSAGES, *SERVER_MESSAGES)}
)
_BY_TYPE: Mapping[str, type] = MappingProxyType(
    {c.type: c for c in (*PEER_MESSAGES, *SERVER_MESSAGES) if c is not Relayed}
)


def _build(cls: type[Any], obj: dict[str, Any], *, expect_type: bool = True) -> Any:
    spec = _SPECS[cls]
    kwargs: dict[str, Any] = {}
    for key, attr, check, required in spec:
        if key in obj:
            kwargs[attr] = check(key, obj[key])
        elif required:
            raise MissingField(f"{key} is missing", key)
    # Every key of obj is "type" (for messages), a known field, or one too many.
    if len(kwargs) + (1 if expect_type else 0) != len(obj):
        raise ExtraField("the message has a field its type does not have")
    return cls(**kwargs)


# A relay frame as browsers (JSON.stringify of {type, to, epoch, box}) and the Python peer
# (``dump``) write it: matched whole, it is a valid ``relay`` without a JSON parse (the ids and the
# box are checked by the pattern itself). Any other spelling takes the general path below.
_RELAY_FRAME = re.compile(
    r'\{"type":"relay","to":"([A-Za-z0-9_-]{1,64})","epoch":"([A-Za-z0-9_-]{1,64})",'
    r'"box":"([A-Za-z0-9_-]+)"\}'
).fullmatch


def parse(text: str) -> Message:
    """One message from one text frame, or a ``ProtocolError``."""
    frame = _RELAY_FRAME(text)
    if frame is not None and frame.end(3) - frame.start(3) <= MAX_BOX:
        return Relay(*frame.groups())
    try:
        obj = _loads(text)
    except (ValueError, RecursionError):
        raise MalformedJson("not valid JSON") from None
    if type(obj) is not dict:
        raise MalformedJson("a message is a JSON object")
    kind = obj.get("type")
    if kind == "relay" and len(obj) == 4:  # the hot path: skip the generic machinery
        epoch = obj.get("epoch")
        box = obj.get("box")
        if (
            type(epoch) is str
            and type(box) is str
            and len(epoch) <= MAX_ID
            and len(box) <= MAX_BOX
            and _id_ok(epoch)
            and _b64_ok(box)
        ):
            to = obj.get("to")
            if type(to) is str and len(to) <= MAX_ID and _id_ok(to):
                return Relay(to, epoch, box)
            sender = obj.get("from")
            if type(sender) is str and len(sender) <= MAX_ID and _id_ok(sender):
                return Relayed(sender, epoch, box)
    if type(kind) is not str:
        raise (
            MissingField("type is missing", "type")
            if kind is None
            else WrongType("type must be a string", "type")
        )
    if kind == "relay":
        cls: type = Relayed if "from" in obj and "to" not in obj else Relay
    else:
        found = _BY_TYPE.get(kind)
        if found is None:
            raise UnknownType("unknown message type")
        cls = found
    result: Message = _build(cls, obj)
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, PeerInfo | IceServerInfo):
        out = {}
        for key, attr, _check, required in _SPECS[type(value)]:
            item = getattr(value, attr)
            if item is not None or required:
                out[key] = _plain(item)
        return out
    return value


def dump(msg: Message) -> str:
    """The compact JSON text of a message (no whitespace, fields in a fixed order)."""
    if type(msg) is Relayed:
        return _relayed_escaped(msg.sender, msg.epoch, msg.box)
    out: dict[str, Any] = {"type": msg.type}
    for key, attr, _check, required in _SPECS[type(msg)]:
        value = getattr(msg, attr)
        if value is None and not required:
            continue
        out[key] = _plain(value)
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def relayed_text(sender: str, epoch: str, box: str) -> str:
    """``dump(Relayed(sender, epoch, box))`` without building the object, for the relay hot
    path: the fields must be as ``parse`` lets a ``relay`` through (ids and base64url, nothing
    JSON escapes), so they go in as they are. ``dump`` escapes, whatever it is given."""
    return '{"type":"relay","from":"' + sender + '","epoch":"' + epoch + '","box":"' + box + '"}'


def _relayed_escaped(sender: str, epoch: str, box: str) -> str:
    return (
        '{"type":"relay","from":'
        + _encode(sender)
        + ',"epoch":'
        + _encode(epoch)
        + ',"box":'
        + _encode(box)
        + "}"
    )
