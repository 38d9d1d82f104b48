"""Chat with message ids: acknowledged end to end, re-sent until acknowledged, de-duplicated.

The same ``chat``/``ack`` bodies travel on the data channel (as JSON text, no seq or bind:
DTLS protects them) or, when the data channel is not open, inside envelopes through the
server. Either path may deliver a message twice; the receiver shows it once and acknowledges
every copy.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from signaling.peer.errors import InnerMessageError
from signaling.peer.inner import Ack, Chat, new_id, parse_inner

MAX_SEEN: Final = 2000
MAX_OUTBOX: Final = 200


class ChatFull(InnerMessageError):
    """Too many messages are waiting for an acknowledgement."""


@dataclass(slots=True)
class _Pending:
    text: str
    last_sent: float | None = None


class ChatBook:
    """Outgoing messages awaiting their ack, and the ids already seen."""

    def __init__(self) -> None:
        self._outbox: dict[str, _Pending] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()

    @property
    def pending(self) -> int:
        return len(self._outbox)

    def new(self, text: str) -> Chat:
        if len(self._outbox) >= MAX_OUTBOX:
            raise ChatFull("too many unacknowledged chat messages")
        chat = Chat(new_id(), text)
        self._outbox[chat.id] = _Pending(text)
        return chat

    def due(self, now: float, interval: float) -> list[Chat]:
        """Messages never sent, or last sent at least ``interval`` seconds ago."""
        return [
            Chat(cid, p.text)
            for cid, p in self._outbox.items()
            if p.last_sent is None or now - p.last_sent >= interval
        ]

    def mark_sent(self, chat_id: str, now: float) -> None:
        pending = self._outbox.get(chat_id)
        if pending is not None:
            pending.last_sent = now

    def on_ack(self, ack: Ack) -> bool:
        """True if this ack settled a pending message."""
        return self._outbox.pop(ack.id, None) is not None

    def on_chat(self, chat: Chat) -> bool:
        """True the first time this id is seen (show it); the caller acks every copy."""
        if chat.id in self._seen:
            self._seen.move_to_end(chat.id)
            return False
        self._seen[chat.id] = None
        while len(self._seen) > MAX_SEEN:
            self._seen.popitem(last=False)
        return True


def to_wire(msg: Chat | Ack) -> dict[str, Any]:
    if isinstance(msg, Chat):
        return {"type": "chat", "id": msg.id, "text": msg.text}
    return {"type": "ack", "id": msg.id}


def from_datachannel(text: str) -> Chat | Ack:
    """A chat or ack received on the data channel; raises ``InnerMessageError``."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise InnerMessageError("data channel message is not JSON") from None
    if not isinstance(obj, dict) or obj.get("type") not in ("chat", "ack"):
        raise InnerMessageError("data channel message is not chat or ack")
    msg = parse_inner(obj)
    assert isinstance(msg, Chat | Ack)
    return msg
