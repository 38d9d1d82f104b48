"""Named errors of the Python peer, each with the exit code ``ruang join`` ends with."""

from __future__ import annotations

import enum
from typing import ClassVar


class ExitCode(enum.IntEnum):
    """``ruang join`` exit codes (ARCHITECTURE.md, "Contracts other programs rely on")."""

    OK = 0
    FAILED = 1
    USAGE = 2
    DECLINED = 3
    ROOM_UNAVAILABLE = 4
    NO_CONNECTION = 5


class PeerError(Exception):
    """Base of every error the peer raises on purpose. Messages carry no plaintext or keys."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED


class UsageError(PeerError):
    """Bad command-line input, e.g. a link without a valid key."""

    exit_code = ExitCode.USAGE


class LinkError(UsageError):
    """A room link that is not ``https://HOST/r/<room id>#<key>``."""


class LoginError(PeerError):
    """The counselor could not log in (wrong credentials, throttled, unexpected page)."""


class SignalingError(PeerError):
    """The signaling connection failed or ended in a way the peer cannot continue from."""


class RoomUnavailable(SignalingError):
    """Unknown or closed room (close code 4003)."""

    exit_code = ExitCode.ROOM_UNAVAILABLE


class Declined(SignalingError):
    """The counselor declined this client (close code 4005)."""

    exit_code = ExitCode.DECLINED


class NoConnection(PeerError):
    """No media (or relay) connection within the allowed time."""

    exit_code = ExitCode.NO_CONNECTION


class SecurityError(PeerError):
    """Evidence of interception: an SDP fingerprint or a reveal that does not match."""


class InnerMessageError(PeerError):
    """A message inside an envelope that is malformed (it is dropped, the call goes on)."""
