"""Close codes and the named errors of the signaling core (docs/protocol.md is the reference).

Errors come in two kinds:

- ``Refused``: the request is refused but the connection lives on; the WebSocket handler
  answers with a non-fatal ``error`` message carrying the stable ``code``.
- ``Fatal``: the connection ends; only the WebSocket handler maps each class to its close code.

The core closes *other* participants' sockets itself (a declined client, a replaced counselor)
through ``Sink.close`` with a ``CloseCode``: those codes are part of the protocol, so they live
here beside the errors.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class CloseCode(enum.IntEnum):
    """WebSocket close codes. One per fatal cause; 4000-4999 are ours."""

    NORMAL = 1000  # after the peer's own ``leave``
    GOING_AWAY = 1001  # the server is shutting down (resume elsewhere or later)
    INTERNAL_ERROR = 1011  # a bug on the server (resume allowed)
    PROTOCOL_ERROR = 4000  # first message not a valid join, binary frame, bad handshake
    UNSUPPORTED_VERSION = 4001  # join.v is not a version this server speaks
    BAD_ORIGIN = 4002  # Origin header missing or not allowed
    UNKNOWN_ROOM = 4003  # unknown or closed room (identical answers), or the link was replaced
    NOT_AUTHORISED = 4004  # counselor role without a valid counselor session
    DECLINED = 4005  # the counselor declined this waiting client
    REMOVED = 4006  # the counselor removed this admitted client
    SESSION_ENDED = 4007  # the counselor ended the session
    REPLACED = 4008  # a newer socket took over this participant or the counselor's place
    RATE_LIMITED = 4009  # the per-connection token bucket ran dry
    TOO_MANY_CONNECTIONS = 4010  # the per-IP connection cap is reached
    FRAME_TOO_BIG = 4011  # a frame over the frame cap
    TOO_SLOW = 4012  # the send queue overflowed: the peer does not read
    WAITING_ROOM_FULL = 4013  # too many clients already waiting in this room
    JOIN_TIMEOUT = 4014  # no join within the handshake timeout


# Close codes after which the server keeps the participant's slot for the resume window.
RESUMABLE: frozenset[int] = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.INTERNAL_ERROR,
        CloseCode.PROTOCOL_ERROR,
        CloseCode.RATE_LIMITED,
        CloseCode.FRAME_TOO_BIG,
        CloseCode.TOO_SLOW,
        1006,  # abnormal closure: the network went away
    }
)


class SignalingError(Exception):
    """Base of every error the signaling core raises on purpose."""

    code: ClassVar[str] = "error"


class Refused(SignalingError):
    """Non-fatal: answered with an ``error`` message, the connection stays open."""


class UnknownPeer(Refused):
    """No participant with that id that you may address (unknown, gone or not allowed)."""

    code = "unknown_peer"


class Forbidden(Refused):
    """Your role may not do that (e.g. a client sending ``admit``)."""

    code = "forbidden"


class BadState(Refused):
    """The target is not in a state the action applies to (e.g. admitting an admitted client)."""

    code = "bad_state"


class RoomFull(Refused):
    """Admitting one more client would exceed the room's capacity."""

    code = "room_full"


class HoldFull(Refused):
    """The recipient is away (or absent) and its hold queue is full: the envelope was dropped."""

    code = "hold_full"


class Unavailable(Refused):
    """Several processes: the shared store (Redis) did not answer; the message was not
    relayed. The server closes with GOING_AWAY if the outage lasts."""

    code = "unavailable"


class Departed(Refused):
    """This connection no longer holds a place in the room (it left, or was replaced, declined,
    removed or ended); the socket is closing."""

    code = "departed"


class Unexpected(Refused):
    """A well-formed message that is not valid from a peer at this point (e.g. a second join)."""

    code = "unexpected"


class Fatal(SignalingError):
    """The connection ends; the WebSocket handler picks the close code from the class."""


class UnsupportedVersion(Fatal):
    code = "unsupported_version"


class UnknownRoom(Fatal):
    code = "unknown_room"


class NotAuthorised(Fatal):
    code = "not_authorised"


class WaitingRoomFull(Fatal):
    code = "waiting_room_full"


class HubClosed(Fatal):
    """The hub is shutting down and accepts no more joins."""

    code = "going_away"
