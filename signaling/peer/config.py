"""What one ``ruang join`` run is asked to do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from signaling.peer.link import Link

Level = Literal["video", "low-video", "audio", "text"]
LEVELS: tuple[Level, ...] = ("text", "audio", "low-video", "video")  # lowest first


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server (call credentials come from the server's ``POST /api/turn``)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class PeerConfig:
    link: Link
    counselor: bool = False
    name: str = ""
    text_only: bool = False
    say: str = ""
    seconds: float | None = None  # counted from "connected"
    insecure: bool = False  # skip TLS verification (development certificates)
    email: str = ""
    password: str = field(default="", repr=False)
    ice_servers: tuple[IceServer, ...] = ()  # static ones; the server's TURN ones are added
    relay_only: bool = False  # iceTransportPolicy "relay": TURN relay candidates only
    fetch_turn: bool = True  # ask the server for call credentials (POST /api/turn)
    connect_timeout: float = 30.0  # from admission to "connected" (exit code 5)
    stall_timeout: float = 10.0  # a commit round that makes no progress is restarted
    chat_resend: float = 2.0  # seconds between re-sends of an unacknowledged chat message
