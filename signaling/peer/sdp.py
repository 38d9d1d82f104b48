"""The DTLS fingerprint rules for SDP (ARCHITECTURE.md, "Safety code", step 3).

Every SDP sent or accepted carries exactly one fingerprint per m-section, ``sha-256``, equal to
the one revealed in the commit round. aiortc writes sha-256, sha-384 and sha-512 lines (and
Chrome keeps only the last one it parses), so ``strip_extra_fingerprints`` deletes all but the
sha-256 lines before anything is sent. A fingerprint at session level counts for every m-section
that has none of its own; having both is refused as ambiguous.
"""

from __future__ import annotations

from signaling.peer.errors import SecurityError

_PREFIX = "a=fingerprint:"


class FingerprintMismatch(SecurityError):
    """An SDP whose fingerprints are not exactly the revealed sha-256 one."""


def _lines(sdp: str) -> list[str]:
    return sdp.replace("\r\n", "\n").split("\n")


def _normalise(line: str) -> str:
    """``a=fingerprint:SHA-256 ab:cd`` -> ``sha-256 AB:CD`` (algorithm lower, hex upper)."""
    parts = line[len(_PREFIX) :].strip().split()
    if len(parts) != 2:
        raise FingerprintMismatch("an SDP fingerprint line is malformed")
    return f"{parts[0].lower()} {parts[1].upper()}"


def strip_extra_fingerprints(sdp: str) -> str:
    """The SDP without its non-sha-256 fingerprint lines (CRLF line ends kept)."""
    kept = [
        line
        for line in _lines(sdp)
        if not line.startswith(_PREFIX)
        or line[len(_PREFIX) :].strip().lower().startswith("sha-256 ")
    ]
    return "\r\n".join(kept)


def fingerprints_by_section(sdp: str) -> tuple[list[str], list[list[str]]]:
    """(session-level fingerprints, one list per m-section), normalised."""
    session: list[str] = []
    media: list[list[str]] = []
    for line in _lines(sdp):
        if line.startswith("m="):
            media.append([])
        elif line.startswith(_PREFIX):
            (media[-1] if media else session).append(_normalise(line))
    return session, media


def check_fingerprints(sdp: str, expected: str) -> None:
    """Raise ``FingerprintMismatch`` unless every m-section's one fingerprint is ``expected``."""
    session, media = fingerprints_by_section(sdp)
    if not media:
        raise FingerprintMismatch("the SDP has no media section")
    if session and any(media):
        raise FingerprintMismatch("the SDP has fingerprints at session and media level")
    for own in media:
        effective = own or session
        if len(effective) != 1:
            raise FingerprintMismatch("an m-section does not have exactly one fingerprint")
        if effective[0] != expected:
            raise FingerprintMismatch("the SDP's DTLS fingerprint is not the revealed one")
