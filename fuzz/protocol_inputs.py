"""The checks every fuzz input goes through, shared by the atheris targets and the hypothesis
tests: each input is either accepted (a typed result that survives a round trip) or refused with
one of the documented error classes, never anything else."""

from __future__ import annotations

import io
import json
from typing import Any

from fuzz.common import check_code, resume_errors
from signaling import crypto, tokens
from signaling.e2e import CommitRound, SecureChannel
from signaling.messages import (
    MAX_TOKEN,
    PEER_MESSAGES,
    SERVER_MESSAGES,
    BadValue,
    Error,
    ExtraField,
    MalformedJson,
    Message,
    MissingField,
    ProtocolError,
    Relay,
    Role,
    TooLong,
    UnknownType,
    WrongType,
    dump,
    parse,
)
from signaling.peer.chat import from_datachannel
from signaling.peer.errors import InnerMessageError
from signaling.peer.events import EventLog
from signaling.peer.inner import Chat, parse_inner, peer_name

PROTOCOL_ERRORS = (
    MalformedJson,
    UnknownType,
    MissingField,
    ExtraField,
    WrongType,
    BadValue,
    TooLong,
)
MESSAGE_CLASSES = (*PEER_MESSAGES, *SERVER_MESSAGES)

TOKEN_KEY = b"fuzz-token-key-fuzz-token-key-32"
ROOM_ID = "RoomFuzzAAAAAAAAAAAAAA"
ROOM_KEY = bytes(range(32))
SIGNAL_KEY = crypto.derive_signal_key(ROOM_KEY, ROOM_ID)
FINGERPRINT = "sha-256 " + ":".join(["AB"] * 32)


def check_frame(text: str) -> Message | None:
    """``parse`` either gives a message that round-trips, or a documented ``ProtocolError``, and
    the server's answer to it (``error``) is itself a valid message that quotes nothing."""
    try:
        msg = parse(text)
    except ProtocolError as exc:
        # The fast paths (relay) and the general path agree: leading whitespace skips the former.
        try:
            parse(" " + text)
        except ProtocolError as other:
            assert type(other) is type(exc), (type(other), type(exc))
        else:
            raise AssertionError("a frame refused only without leading whitespace")
        assert type(exc) in PROTOCOL_ERRORS, type(exc)
        check_code(exc.code)
        answer = dump(Error(exc.code, str(exc), "relay"))
        assert parse(answer) == Error(exc.code, str(exc), "relay")
        assert exc.field is None or len(exc.field) <= 20, "an error names a field of its own"
        return None
    assert isinstance(msg, MESSAGE_CLASSES), type(msg)
    assert parse(" " + text) == msg, "the fast and the general path disagree"
    again = dump(msg)
    assert parse(again) == msg, "parse(dump(m)) != m"
    assert dump(parse(again)) == again
    if type(msg) is Relay:
        assert json.loads(again) == {
            "type": "relay",
            "to": msg.to,
            "epoch": msg.epoch,
            "box": msg.box,
        }
    return msg


def check_token(text: str, *, now: float = 1_700_000_000.0) -> tokens.ResumeClaims | None:
    """A resume token from the wire: claims, or a ``TokenError`` with a documented reason."""
    try:
        claims = tokens.decode(TOKEN_KEY, text, now=now)
        tokens.check_target(claims, room_id=ROOM_ID, role=Role.CLIENT)
        tokens.check_generation(claims, 0)
    except tokens.TokenError as exc:
        assert exc.reason in resume_errors(), exc.reason
        return None
    return claims


def check_signed_payload(payload: bytes) -> tokens.ResumeClaims | None:
    """An authentic token (the MAC is right) with any payload: the shape checks after the MAC
    must refuse with ``TokenError`` too, never crash the join."""
    text = tokens._b64(payload) + "." + tokens._b64(tokens._mac(TOKEN_KEY, payload))
    if len(text) > MAX_TOKEN:
        text = text[: MAX_TOKEN + 1]
    return check_token(text, now=0.0)


def _emit_chat(text: str) -> None:
    """``ruang join`` prints chat texts on stdout as JSON lines: any text must come out as one
    valid UTF-8 line that reads back as the same text."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
    EventLog(stream).emit("chat", **{"from": "client", "text": text})
    stream.flush()
    line = raw.getvalue().decode("utf-8")
    assert line.count("\n") == 1 and line.endswith("\n")
    assert json.loads(line)["text"] == text


def check_body(msg: dict[str, Any]) -> None:
    """What the Python peer does with an opened envelope's body (``Call.on_envelope``)."""
    kind = msg.get("type")
    if kind == "hello":
        name = peer_name(msg)
        assert name is None or 0 < len(name) <= 64
        return
    commit = CommitRound("counselor", FINGERPRINT, nonce=b"n" * 32)
    try:
        if kind == "commit":
            commit.on_commit(msg)
        elif kind == "reveal":
            commit.on_reveal(msg)
        else:
            inner = parse_inner(msg)
            if isinstance(inner, Chat):
                _emit_chat(inner.text)
    except (InnerMessageError, crypto.CryptoError):
        pass


def check_datachannel(text: str) -> None:
    try:
        inner = from_datachannel(text)
    except InnerMessageError:
        return
    if isinstance(inner, Chat):
        _emit_chat(inner.text)


def channels() -> tuple[SecureChannel, SecureChannel]:
    """A counselor and a client channel whose hellos were exchanged (so binds can be checked)."""
    counselor = SecureChannel(ROOM_ID, ROOM_KEY, "counselor")
    client = SecureChannel(ROOM_ID, ROOM_KEY, "k3PqX0aZ9cQe")
    hello_c = counselor.new_hello([])
    hello_k = client.new_hello([])
    client.open("counselor", *counselor.seal("k3PqX0aZ9cQe", hello_c))
    counselor.open("k3PqX0aZ9cQe", *client.seal("counselor", hello_k))
    return counselor, client


def check_envelope(channel: SecureChannel, sender: str, epoch: str, box: str) -> None:
    """An envelope from the server: opened and handled, or refused with a ``CryptoError``."""
    try:
        msg = channel.open(sender, epoch, box)
    except crypto.CryptoError:
        return
    assert isinstance(msg, dict) and type(msg["seq"]) is int and isinstance(msg["type"], str)
    check_body(msg)


def seal_plaintext(channel: SecureChannel, sender: str, epoch: str, plaintext: bytes) -> str:
    """A box for ``channel`` holding any plaintext, as a peer with the room key could make."""
    aad = crypto.envelope_aad(ROOM_ID, sender, epoch, channel.my_id)
    return crypto.seal(SIGNAL_KEY, aad, plaintext)


def check_b64u(text: str) -> None:
    try:
        raw = crypto.b64u_decode(text)
    except crypto.EncodingError:
        return
    assert crypto.b64u_encode(raw) == text


def check_crypto_text(text: str) -> None:
    """The parsers of untrusted text in ``signaling.crypto``."""
    check_b64u(text)
    try:
        crypto.parse_fingerprint(text)
    except crypto.FingerprintError:
        pass
    try:
        crypto.parse_room_key(text)
    except crypto.EncodingError:
        pass
    assert crypto.is_room_id(text) in (True, False)
    assert crypto.verify_reveal(b"c" * 32, text, b"n" * 32) is False
