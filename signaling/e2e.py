"""The v1 secure channel between this peer and the others in one room (pure: no I/O, no aiohttp).

Every peer-to-peer message travels as an envelope ``(sender epoch, box)``; the server adds the
sender id it stamped. ``box`` seals UTF-8 JSON of one object (see ``signaling.crypto`` for the
bytes)::

    {"seq": <int>, "type": <str>, ...body, "bind": [<sender hello nonce>, <receiver hello nonce>]}

* ``seq`` strictly increases per (sender, sender epoch, recipient), from 1, up to 2**53 - 1.
  The receiver drops anything not above the last seq it accepted for (sender, epoch); a jump
  between two accepted envelopes is counted in ``gap_count`` (numbers only, never content).
* ``hello`` bodies are ``{"type": "hello", "epoch": <sender epoch>, "nonce": <32 bytes b64u>,
  "caps": [<str>, ...]}`` (extra fields allowed, e.g. a name) and carry no ``bind``. A valid
  hello records the sender's epoch and nonce; from then on envelopes of the sender's older epochs
  are refused. Make a new hello when the other side becomes present; answer its hello by sealing
  the current hello again (same nonce), so two peers never ping-pong new nonces.
* Every other message carries ``bind`` (base64url nonces): it is accepted only if it equals
  (the sender's latest hello nonce, my current hello nonce) and the envelope comes from the
  epoch of that hello. Making a new hello therefore invalidates everything sealed for an earlier
  connection, so a server cannot replay it into a new one.

``CommitRound`` runs the committed-SAS exchange: ``commit`` = {"type": "commit", "role": <role>,
"commit": b64u(SHA-256(fingerprint || nonce))}, then ``reveal`` = {"type": "reveal",
"fingerprint": <canonical>, "nonce": <b64u>}, sent only after holding the other's commit.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeGuard

from signaling.crypto import (
    NONCE_BYTES,
    CryptoError,
    EncodingError,
    EnvelopeError,
    FingerprintError,
    SafetyCode,
    b64u_decode,
    b64u_encode,
    commitment,
    derive_signal_key,
    envelope_aad,
    open_box,
    parse_fingerprint,
    safety_code,
    seal,
    verify_reveal,
)

__all__ = [
    "EPOCH_BYTES",
    "BindError",
    "CommitRound",
    "CommitmentError",
    "CryptoError",
    "EnvelopeError",
    "PeerHello",
    "ReflectionError",
    "ReplayError",
    "Role",
    "SecureChannel",
    "StaleEpochError",
]

EPOCH_BYTES: Final = 16
_RETIRED_EPOCHS_MAX: Final = 1024
_SEQ_MAX: Final = 2**53 - 1  # the largest integer JavaScript represents exactly
_RESERVED_KEYS: Final = frozenset({"seq", "bind"})

Role = Literal["counselor", "client"]


class ReplayError(CryptoError):
    """An envelope whose seq is not above the last accepted for its (sender, epoch)."""


class StaleEpochError(ReplayError):
    """An envelope from an epoch the sender has since replaced with a newer hello."""


class ReflectionError(CryptoError):
    """An envelope that claims to come from this peer, or one addressed to itself."""


class BindError(CryptoError):
    """An envelope not bound to both peers' current hello nonces (or sent before any hello)."""


class CommitmentError(CryptoError):
    """A commit/reveal message out of order, malformed, or not matching the commitment."""


@dataclass(frozen=True, slots=True)
class PeerHello:
    """What the other side's latest valid hello said."""

    epoch: str
    nonce: str
    caps: tuple[str, ...]


def _is_b64u_of(text: object, size: int) -> TypeGuard[str]:
    if not isinstance(text, str):
        return False
    try:
        return len(b64u_decode(text)) == size
    except EncodingError:
        return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-JSON constant {name}")


def _decode_plaintext(plaintext: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(plaintext.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise EnvelopeError("envelope plaintext is not UTF-8 JSON") from None
    if not isinstance(msg, dict):
        raise EnvelopeError("envelope plaintext is not a JSON object")
    seq, kind = msg.get("seq"), msg.get("type")
    if type(seq) is not int or not 1 <= seq <= _SEQ_MAX or not isinstance(kind, str):
        raise EnvelopeError("envelope plaintext lacks a valid seq or type")
    return msg


class SecureChannel:
    """Seals and opens this peer's envelopes in one room, with replay and binding rules."""

    def __init__(self, room_id: str, room_key: bytes, my_id: str, epoch: str | None = None) -> None:
        if epoch is None:
            epoch = b64u_encode(secrets.token_bytes(EPOCH_BYTES))
        elif not _is_b64u_of(epoch, EPOCH_BYTES):
            raise EncodingError("epoch must be 16 bytes base64url")
        envelope_aad(room_id, my_id, epoch, my_id)  # validates the fields early
        self.room_id: Final = room_id
        self.my_id: Final = my_id
        self.epoch: Final = epoch
        self._key = derive_signal_key(room_key, room_id)
        self._my_nonce: str | None = None
        self._send_seq: dict[str, int] = {}
        self._recv_seq: dict[tuple[str, str], int] = {}
        self._peers: dict[str, PeerHello] = {}
        self._retired: dict[str, dict[str, None]] = {}
        self._gaps = 0

    @property
    def hello_nonce(self) -> str | None:
        """My current hello nonce (base64url), or None before ``new_hello``."""
        return self._my_nonce

    @property
    def gap_count(self) -> int:
        """How many envelopes were skipped (seq jumps) across all senders; no content kept."""
        return self._gaps

    def peer_hello(self, peer_id: str) -> PeerHello | None:
        """The latest valid hello from ``peer_id``, if any."""
        return self._peers.get(peer_id)

    def new_hello(self, capabilities: list[str], *, nonce: bytes | None = None) -> dict[str, Any]:
        """A hello body with a fresh 32-byte nonce, which becomes my current hello nonce.

        ``nonce`` is for test vectors only.
        """
        if not all(isinstance(cap, str) for cap in capabilities):
            raise EncodingError("capabilities must be strings")
        raw = secrets.token_bytes(NONCE_BYTES) if nonce is None else nonce
        if len(raw) != NONCE_BYTES:
            raise EncodingError("hello nonce must be 32 bytes")
        self._my_nonce = b64u_encode(raw)
        return {
            "type": "hello",
            "epoch": self.epoch,
            "nonce": self._my_nonce,
            "caps": list(capabilities),
        }

    def seal(self, to_id: str, msg: dict[str, Any]) -> tuple[str, str]:
        """(my epoch, box) for ``msg`` addressed to ``to_id``; adds seq (and bind)."""
        if to_id == self.my_id:
            raise ReflectionError("cannot address an envelope to myself")
        kind = msg.get("type")
        if not isinstance(kind, str) or _RESERVED_KEYS & msg.keys():
            raise EncodingError("message needs a string type and no seq or bind")
        body: dict[str, Any] = {"seq": self._send_seq.get(to_id, 0) + 1, "type": kind}
        if kind == "hello":
            if msg.get("epoch") != self.epoch or msg.get("nonce") != self._my_nonce:
                raise EncodingError("hello must come from new_hello()")
        else:
            peer = self._peers.get(to_id)
            if self._my_nonce is None or peer is None:
                raise BindError("no hello exchanged with the recipient yet")
        body.update((k, v) for k, v in msg.items() if k != "type")
        if kind != "hello":
            body["bind"] = [self._my_nonce, self._peers[to_id].nonce]
        try:
            plaintext = json.dumps(
                body, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError):
            raise EncodingError("message is not JSON-serialisable") from None
        aad = envelope_aad(self.room_id, self.my_id, self.epoch, to_id)
        box = seal(self._key, aad, plaintext)
        self._send_seq[to_id] = body["seq"]
        return self.epoch, box

    def open(self, from_id: str, epoch: str, box: str) -> dict[str, Any]:
        """The message in an envelope from ``from_id``, after every check; raises otherwise."""
        if from_id == self.my_id:
            raise ReflectionError("envelope claims to come from myself")
        if not _is_b64u_of(epoch, EPOCH_BYTES):
            raise EnvelopeError("malformed sender epoch")
        try:
            aad = envelope_aad(self.room_id, from_id, epoch, self.my_id)
        except EncodingError:
            raise EnvelopeError("malformed sender id") from None
        msg = _decode_plaintext(open_box(self._key, aad, box))
        if epoch in self._retired.get(from_id, {}):
            raise StaleEpochError("envelope from a replaced epoch")
        last = self._recv_seq.get((from_id, epoch), 0)
        seq: int = msg["seq"]
        if seq <= last:
            raise ReplayError("envelope replayed or reordered")
        if msg["type"] == "hello":
            self._accept_hello(from_id, epoch, msg)
        else:
            self._check_bind(from_id, epoch, msg)
        if last:
            self._gaps += seq - last - 1
        self._recv_seq[(from_id, epoch)] = seq
        return msg

    def _accept_hello(self, from_id: str, epoch: str, msg: dict[str, Any]) -> None:
        caps = msg.get("caps")
        if (
            msg.get("epoch") != epoch
            or not _is_b64u_of(msg.get("nonce"), NONCE_BYTES)
            or not isinstance(caps, list)
            or not all(isinstance(cap, str) for cap in caps)
            or "bind" in msg
        ):
            raise EnvelopeError("malformed hello")
        previous = self._peers.get(from_id)
        if previous is not None and previous.epoch != epoch:
            retired = self._retired.setdefault(from_id, {})
            retired[previous.epoch] = None
            self._recv_seq.pop((from_id, previous.epoch), None)
            while len(retired) > _RETIRED_EPOCHS_MAX:
                del retired[next(iter(retired))]
        self._peers[from_id] = PeerHello(epoch=epoch, nonce=msg["nonce"], caps=tuple(caps))

    def _check_bind(self, from_id: str, epoch: str, msg: dict[str, Any]) -> None:
        peer = self._peers.get(from_id)
        if peer is None or self._my_nonce is None:
            raise BindError("envelope before the hello exchange")
        if peer.epoch != epoch:
            raise BindError("envelope from an epoch without a hello")
        if msg.get("bind") != [peer.nonce, self._my_nonce]:
            raise BindError("envelope bound to another connection")


class CommitRound:
    """One commit/reveal round for the committed safety code (fresh nonce per round)."""

    def __init__(self, role: Role, my_fingerprint: str, *, nonce: bytes | None = None) -> None:
        if role not in ("counselor", "client"):
            raise ValueError("role must be 'counselor' or 'client'")
        parse_fingerprint(my_fingerprint)
        self.role: Final[Role] = role
        self.my_fingerprint: Final = my_fingerprint
        self._nonce = secrets.token_bytes(NONCE_BYTES) if nonce is None else nonce
        if len(self._nonce) != NONCE_BYTES:
            raise EncodingError("commit nonce must be 32 bytes")
        self._committed = False
        self._peer_commit: bytes | None = None
        self._peer_fp: str | None = None
        self._peer_nonce: bytes | None = None

    @property
    def verified(self) -> bool:
        """True once the other side's reveal matched its commitment."""
        return self._peer_fp is not None

    @property
    def peer_fingerprint(self) -> str | None:
        """The other side's verified fingerprint (None until verified)."""
        return self._peer_fp

    def commit_msg(self) -> dict[str, Any]:
        self._committed = True
        digest = commitment(self.my_fingerprint, self._nonce)
        return {"type": "commit", "role": self.role, "commit": b64u_encode(digest)}

    def on_commit(self, msg: dict[str, Any]) -> None:
        if msg.get("type") != "commit" or msg.get("role") not in ("counselor", "client"):
            raise CommitmentError("malformed commit")
        if msg["role"] == self.role:
            raise CommitmentError("both sides claim the same role")
        digest_text = msg.get("commit")
        if not _is_b64u_of(digest_text, 32):
            raise CommitmentError("malformed commit")
        digest = b64u_decode(digest_text)
        if self._peer_commit is not None and self._peer_commit != digest:
            raise CommitmentError("a second, different commit in one round")
        self._peer_commit = digest

    def reveal_msg(self) -> dict[str, Any]:
        if not self._committed or self._peer_commit is None:
            raise CommitmentError("reveal only after both commits")
        return {
            "type": "reveal",
            "fingerprint": self.my_fingerprint,
            "nonce": b64u_encode(self._nonce),
        }

    def on_reveal(self, msg: dict[str, Any]) -> None:
        if self._peer_commit is None:
            raise CommitmentError("reveal before commit")
        if msg.get("type") != "reveal":
            raise CommitmentError("malformed reveal")
        fingerprint, nonce_text = msg.get("fingerprint"), msg.get("nonce")
        if not isinstance(fingerprint, str) or not _is_b64u_of(nonce_text, NONCE_BYTES):
            raise CommitmentError("malformed reveal")
        try:
            parse_fingerprint(fingerprint)
        except FingerprintError:
            raise CommitmentError("malformed reveal") from None
        nonce = b64u_decode(nonce_text)
        if not verify_reveal(self._peer_commit, fingerprint, nonce):
            raise CommitmentError("reveal does not match the commitment")
        if fingerprint == self.my_fingerprint or nonce == self._nonce:
            raise CommitmentError("the other side revealed my own values")
        self._peer_fp, self._peer_nonce = fingerprint, nonce

    def safety_code(self, room_key: bytes) -> SafetyCode:
        if self._peer_fp is None or self._peer_nonce is None:
            raise CommitmentError("safety code before a verified reveal")
        mine, theirs = (self.my_fingerprint, self._nonce), (self._peer_fp, self._peer_nonce)
        counselor, client = (mine, theirs) if self.role == "counselor" else (theirs, mine)
        return safety_code(room_key, counselor[0], client[0], counselor[1], client[1])
