"""Ruang protocol v1 cryptography: the primitives (stdlib + ``cryptography`` only, no I/O).

The browser (WebCrypto) must reproduce every byte below; ``tests/vectors/v1.json`` pins them.

Encodings
    base64url: RFC 4648 section 5 alphabet, never padded. Decoding is strict: only
    ``A-Z a-z 0-9 - _``, never ``=``, length mod 4 != 1, and the unused trailing bits of the
    last character must be zero (so every byte string has exactly one encoding).
    Room id: 16 CSPRNG bytes (22 characters). Room key: 32 CSPRNG bytes (43 characters).

Signaling key
    ``HKDF-SHA256(ikm=room_key, salt=utf8(room_id), info=b"ruang/v1/signal", L=32)``.

Envelope AAD (``envelope_aad``), byte for byte::

    b"ruang/v1/env" 0x00                           13 bytes
    then for each field, in this order: room_id, sender_id, sender_epoch, recipient_id:
        u16 big-endian length of utf8(field)       2 bytes
        utf8(field)                                1..65535 bytes

    Fields must be non-empty, well-formed Unicode (no lone surrogates: JS must check, since
    TextEncoder would silently replace them) and at most 65535 UTF-8 bytes each.

Envelope box (``seal``/``open_box``)
    ``base64url(iv || AES-256-GCM(signal_key, iv, plaintext, aad))``: a 12-byte random IV, then
    the ciphertext and the 16-byte tag. A box shorter than 28 bytes is malformed.

DTLS fingerprint, canonical form
    ``"sha-256 "`` + the 32 digest bytes as two uppercase hex digits each, joined by ``":"``
    (exactly 103 ASCII characters). Nothing else is accepted.

Commitment
    ``SHA-256(ascii(canonical fingerprint) || nonce)`` with a 32-byte nonce.

Safety code (SAS)
    ``okm = HKDF-SHA256(ikm=room_key, salt=utf8(fp_counselor) || utf8(fp_client) ||
    nonce_counselor || nonce_client, info=b"ruang/v1/sas", L=8)``; the salt is unambiguous because
    every part has a fixed length (103, 103, 32, 32 bytes). Digits: big-endian uint32 of
    ``okm[0:4]`` mod 1_000_000, zero-padded to six. Words: ``SAS_WORDS[okm[i]]`` for i in 4..7.
    Inputs are ordered by role (counselor first), never by who offered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "AAD_PREFIX",
    "IV_BYTES",
    "NONCE_BYTES",
    "ROOM_ID_BYTES",
    "ROOM_KEY_BYTES",
    "SAS_INFO",
    "SAS_WORDS",
    "SIGNAL_INFO",
    "TAG_BYTES",
    "CryptoError",
    "EncodingError",
    "EnvelopeError",
    "FingerprintError",
    "SafetyCode",
    "b64u_decode",
    "b64u_encode",
    "canonical_fingerprint",
    "commitment",
    "derive_signal_key",
    "envelope_aad",
    "is_room_id",
    "new_room_id",
    "new_room_key",
    "open_box",
    "parse_fingerprint",
    "parse_room_key",
    "safety_code",
    "seal",
    "verify_reveal",
]

ROOM_ID_BYTES: Final = 16
ROOM_KEY_BYTES: Final = 32
SIGNAL_KEY_BYTES: Final = 32
IV_BYTES: Final = 12
TAG_BYTES: Final = 16
NONCE_BYTES: Final = 32
DIGEST_BYTES: Final = 32
SIGNAL_INFO: Final = b"ruang/v1/signal"
SAS_INFO: Final = b"ruang/v1/sas"
AAD_PREFIX: Final = b"ruang/v1/env\x00"
_AAD_FIELD_MAX: Final = 0xFFFF

_B64U_RE: Final = re.compile(r"[A-Za-z0-9_-]*")
_FINGERPRINT_RE: Final = re.compile(r"sha-256 [0-9A-F]{2}(?::[0-9A-F]{2}){31}")

# 256 distinct words, 3 to 7 lowercase ASCII letters, spelled the same in Indonesian and English
# (international loanwords), sorted; index = byte value. Pinned in tests/vectors/v1.json.
# fmt: off
SAS_WORDS: Final[tuple[str, ...]] = (
    "admiral", "agar", "agenda", "aikido", "album", "alto", "analog", "anime", "arena", "argon",
    "aria", "aroma", "atlas", "atom", "aurora", "avatar", "bandana", "banjo", "bank", "barista",
    "basket", "batik", "begonia", "bento", "beta", "bison", "bistro", "bit", "blender", "blog",
    "bolero", "bonsai", "bonus", "boron", "bravo", "burger", "burrito", "bus", "chef", "corgi",
    "dahlia", "data", "delta", "depot", "detail", "diagram", "diesel", "digital", "dingo",
    "domino", "drum", "duet", "durian", "editor", "emoji", "epsilon", "fiesta", "film", "filter",
    "flora", "format", "formula", "forum", "futsal", "gala", "gamelan", "gamma", "gas", "gazebo",
    "gelato", "global", "golf", "gondola", "gong", "gram", "granola", "guru", "haiku", "halo",
    "hamster", "helium", "horizon", "hotel", "hummus", "husky", "iguana", "ikebana", "impala",
    "indigo", "jaguar", "jet", "judo", "jumbo", "kaftan", "karate", "kayak", "kebab", "kendo",
    "kilo", "kimchi", "kiwi", "koala", "koi", "komodo", "lambda", "laptop", "laser", "latte",
    "lava", "lemur", "level", "liter", "lobster", "logo", "lotus", "maestro", "magenta", "magma",
    "magnet", "manual", "marimba", "marlin", "masala", "matcha", "melon", "mentor", "menu",
    "metal", "mineral", "mint", "miso", "mochi", "model", "motif", "motor", "mug", "mural",
    "museum", "mustard", "nano", "natural", "nebula", "neon", "neutron", "ninja", "novel", "oasis",
    "ohm", "okapi", "omega", "opal", "opera", "orbit", "orca", "oregano", "origami", "pagoda",
    "panda", "panini", "paprika", "parade", "pasta", "pergola", "pesto", "petunia", "piano",
    "pilot", "pizza", "planet", "plaza", "plum", "podium", "polo", "popcorn", "portal", "poster",
    "premium", "program", "promo", "proton", "pulsar", "puma", "radar", "radio", "ramen", "rap",
    "ravioli", "remix", "rendang", "risotto", "robot", "roti", "royal", "safari", "salad", "salsa",
    "samba", "samosa", "samurai", "sandal", "sauna", "sedan", "sensor", "sepia", "sigma", "sitar",
    "ski", "snorkel", "sofa", "solar", "sonata", "soprano", "spa", "spiral", "status", "stereo",
    "studio", "sultan", "sumo", "super", "sushi", "tandem", "tango", "tapir", "tempo", "tempura",
    "tenor", "tiara", "titan", "ton", "total", "trio", "tripod", "tulip", "tuna", "tundra",
    "turbo", "tutor", "udon", "ultra", "urban", "video", "villa", "violet", "visa", "volt",
    "walrus", "wasabi", "watt", "wombat", "yak", "yeti", "yoga", "yogurt", "yoyo", "zebra",
)
# fmt: on


class CryptoError(Exception):
    """Base class of every v1 cryptography error. Messages never contain plaintext or keys."""


class EncodingError(CryptoError):
    """Malformed input: not canonical base64url, wrong length, bad UTF-8, bad AAD field."""


class EnvelopeError(CryptoError):
    """An envelope that cannot be opened: malformed, truncated, tampered, wrong key or AAD."""


class FingerprintError(CryptoError):
    """A DTLS fingerprint not in the canonical ``sha-256 AB:CD:...`` form."""


@dataclass(frozen=True, slots=True)
class SafetyCode:
    """The committed short authentication string shown on both screens."""

    digits: str
    words: tuple[str, str, str, str]


def b64u_encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Strict base64url decoding; raises ``EncodingError`` for anything non-canonical."""
    if not isinstance(text, str) or len(text) % 4 == 1 or not _B64U_RE.fullmatch(text):
        raise EncodingError("not canonical base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64u_encode(raw) != text:
        raise EncodingError("not canonical base64url (trailing bits)")
    return raw


def _decode_sized(text: str, size: int, what: str) -> bytes:
    raw = b64u_decode(text)
    if len(raw) != size:
        raise EncodingError(f"{what} must be {size} bytes")
    return raw


def _require_len(data: bytes, size: int, what: str) -> None:
    if not isinstance(data, bytes | bytearray) or len(data) != size:
        raise EncodingError(f"{what} must be {size} bytes")


def new_room_id() -> str:
    """16 CSPRNG bytes, base64url: 22 characters."""
    return b64u_encode(secrets.token_bytes(ROOM_ID_BYTES))


def new_room_key() -> str:
    """32 CSPRNG bytes, base64url: 43 characters (the link's whole fragment)."""
    return b64u_encode(secrets.token_bytes(ROOM_KEY_BYTES))


def is_room_id(text: object) -> bool:
    """True for a canonical 22-character base64url encoding of 16 bytes."""
    if not isinstance(text, str) or len(text) != 22:
        return False
    try:
        return len(b64u_decode(text)) == ROOM_ID_BYTES
    except EncodingError:
        return False


def parse_room_key(text: str) -> bytes:
    """The 32 key bytes from a link fragment (43 characters); raises ``EncodingError``."""
    if not isinstance(text, str) or len(text) != 43:
        raise EncodingError("room key must be 43 base64url characters")
    return _decode_sized(text, ROOM_KEY_BYTES, "room key")


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _utf8(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise EncodingError(f"{what} must be a string")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodingError(f"{what} is not well-formed Unicode") from None


def derive_signal_key(room_key: bytes, room_id: str) -> bytes:
    """HKDF-SHA256(ikm=room_key, salt=utf8(room_id), info="ruang/v1/signal") -> 32 bytes."""
    _require_len(room_key, ROOM_KEY_BYTES, "room key")
    if not is_room_id(room_id):
        raise EncodingError("room id must be 22 base64url characters")
    return _hkdf(bytes(room_key), _utf8(room_id, "room id"), SIGNAL_INFO, SIGNAL_KEY_BYTES)


def envelope_aad(room_id: str, sender_id: str, sender_epoch: str, recipient_id: str) -> bytes:
    """The canonical AAD (layout in the module docstring)."""
    out = bytearray(AAD_PREFIX)
    fields = (
        ("room id", room_id),
        ("sender id", sender_id),
        ("sender epoch", sender_epoch),
        ("recipient id", recipient_id),
    )
    for what, value in fields:
        raw = _utf8(value, what)
        if not 0 < len(raw) <= _AAD_FIELD_MAX:
            raise EncodingError(f"{what} must be 1..{_AAD_FIELD_MAX} UTF-8 bytes")
        out += len(raw).to_bytes(2, "big") + raw
    return bytes(out)


def seal(signal_key: bytes, aad: bytes, plaintext: bytes, iv: bytes | None = None) -> str:
    """base64url(iv || AES-256-GCM ciphertext || tag). ``iv`` is random unless given (tests)."""
    _require_len(signal_key, SIGNAL_KEY_BYTES, "signal key")
    if iv is None:
        iv = secrets.token_bytes(IV_BYTES)
    _require_len(iv, IV_BYTES, "iv")
    sealed = AESGCM(bytes(signal_key)).encrypt(bytes(iv), bytes(plaintext), bytes(aad))
    return b64u_encode(bytes(iv) + sealed)


def open_box(signal_key: bytes, aad: bytes, box: str) -> bytes:
    """The plaintext of ``box``; raises ``EnvelopeError`` on any failure."""
    _require_len(signal_key, SIGNAL_KEY_BYTES, "signal key")
    try:
        raw = b64u_decode(box)
    except EncodingError:
        raise EnvelopeError("envelope is not canonical base64url") from None
    if len(raw) < IV_BYTES + TAG_BYTES:
        raise EnvelopeError("envelope too short")
    try:
        return AESGCM(bytes(signal_key)).decrypt(raw[:IV_BYTES], raw[IV_BYTES:], bytes(aad))
    except InvalidTag:
        raise EnvelopeError("envelope authentication failed") from None


def canonical_fingerprint(sha256_digest: bytes) -> str:
    """``"sha-256 AB:CD:..."`` for a 32-byte SHA-256 certificate digest."""
    if not isinstance(sha256_digest, bytes | bytearray) or len(sha256_digest) != DIGEST_BYTES:
        raise FingerprintError("a sha-256 digest is 32 bytes")
    return "sha-256 " + ":".join(f"{b:02X}" for b in sha256_digest)


def parse_fingerprint(text: str) -> bytes:
    """The 32 digest bytes of a canonical fingerprint; anything else raises ``FingerprintError``."""
    if not isinstance(text, str) or not _FINGERPRINT_RE.fullmatch(text):
        raise FingerprintError("fingerprint is not canonical 'sha-256 AB:CD:...'")
    return bytes.fromhex(text[len("sha-256 ") :].replace(":", ""))


def commitment(fingerprint: str, nonce: bytes) -> bytes:
    """SHA-256(ascii(canonical fingerprint) || 32-byte nonce)."""
    parse_fingerprint(fingerprint)
    _require_len(nonce, NONCE_BYTES, "nonce")
    return hashlib.sha256(fingerprint.encode("ascii") + bytes(nonce)).digest()


def verify_reveal(commit: bytes, fingerprint: str, nonce: bytes) -> bool:
    """Whether (fingerprint, nonce) opens ``commit``; constant-time, False on malformed input."""
    try:
        expected = commitment(fingerprint, nonce)
    except CryptoError:
        return False
    if not isinstance(commit, bytes | bytearray):
        return False
    return hmac.compare_digest(expected, bytes(commit))


def safety_code(
    room_key: bytes,
    fp_counselor: str,
    fp_client: str,
    nonce_counselor: bytes,
    nonce_client: bytes,
) -> SafetyCode:
    """The committed SAS (see the module docstring). Arguments are ordered by role."""
    _require_len(room_key, ROOM_KEY_BYTES, "room key")
    parse_fingerprint(fp_counselor)
    parse_fingerprint(fp_client)
    _require_len(nonce_counselor, NONCE_BYTES, "counselor nonce")
    _require_len(nonce_client, NONCE_BYTES, "client nonce")
    salt = (
        fp_counselor.encode("ascii")
        + fp_client.encode("ascii")
        + bytes(nonce_counselor)
        + bytes(nonce_client)
    )
    okm = _hkdf(bytes(room_key), salt, SAS_INFO, 8)
    digits = f"{int.from_bytes(okm[:4], 'big') % 1_000_000:06d}"
    words = (SAS_WORDS[okm[4]], SAS_WORDS[okm[5]], SAS_WORDS[okm[6]], SAS_WORDS[okm[7]])
    return SafetyCode(digits=digits, words=words)
