"""Room links: ``https://HOST/r/<room id>[?query]#<room key>``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from signaling.crypto import CryptoError, is_room_id, parse_room_key
from signaling.peer.errors import LinkError


@dataclass(frozen=True, slots=True)
class Link:
    """The parts of a link the peer needs. ``key`` never leaves this process."""

    origin: str  # scheme://host[:port], sent as the WebSocket's Origin
    room_id: str
    key: bytes

    @property
    def ws_url(self) -> str:
        scheme = "wss" if self.origin.startswith("https://") else "ws"
        return scheme + self.origin[self.origin.index(":") :] + "/ws"

    def __repr__(self) -> str:  # never show the key
        return f"Link(origin={self.origin!r}, room_id=...)"


def parse_link(text: str) -> Link:
    """Parse and check a full room link; raises ``LinkError`` (a usage error)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise LinkError("the link is not a URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise LinkError("the link must start with https://")
    segments = parts.path.split("/")
    if len(segments) != 3 or segments[0] != "" or segments[1] != "r":
        raise LinkError("the link must look like https://HOST/r/<room id>#<key>")
    room_id = segments[2]
    if not is_room_id(room_id):
        raise LinkError("the link's room id is malformed")
    if not parts.fragment:
        raise LinkError("the link has no key (the part after #)")
    try:
        key = parse_room_key(parts.fragment)
    except CryptoError:
        raise LinkError("the link's key is malformed") from None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return Link(origin=origin, room_id=room_id, key=key)
