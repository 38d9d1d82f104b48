"""The hello rules (docs/protocol.md, section 12, "Hellos"), without I/O.

``HelloExchange`` says which hello to send and when the pair (my nonce, their nonce) has newly
settled; ``SecureChannel`` (``signaling.e2e``) seals, opens and binds.
"""

from __future__ import annotations

from typing import Any

from signaling.e2e import SecureChannel


class HelloExchange:
    """Fresh hellos, answers (once per nonce) and settled pairs, for one other participant."""

    def __init__(self, channel: SecureChannel, caps: list[str], name: str = "") -> None:
        self.channel = channel
        self._caps = caps
        self._name = name
        self.peer_id: str | None = None
        self.due = False  # a fresh hello is wanted
        self._body: dict[str, Any] | None = None
        self._settled = False
        self._answered: set[str] = set()
        self._pair: tuple[str, str] | None = None

    def set_peer(self, peer_id: str) -> None:
        if peer_id != self.peer_id:
            self.peer_id = peer_id
            self._answered.clear()
            self._pair = None

    def fresh(self) -> dict[str, Any]:
        """A hello with a new nonce; the pair is unsettled until they send one after it."""
        self.due = False
        body = self.channel.new_hello(self._caps)
        if self._name:
            body["name"] = self._name
        self._body = body
        self._settled = False
        return body

    def on_hello(self) -> dict[str, Any] | None:
        """After ``channel.open`` accepted a hello from the peer: the hello to answer with
        (a fresh one if none was made or one is due, else the current one if their nonce is
        new to us), or None."""
        assert self.peer_id is not None
        hello = self.channel.peer_hello(self.peer_id)
        assert hello is not None
        if self._body is None or self.due:
            self._answered.add(hello.nonce)
            return self.fresh()
        self._settled = True
        if hello.nonce in self._answered:
            return None
        self._answered.add(hello.nonce)
        return self._body

    def new_pair(self) -> tuple[str, str] | None:
        """The settled pair, the first time it is asked for after it settled; else None."""
        if not self._settled or self.peer_id is None:
            return None
        hello = self.channel.peer_hello(self.peer_id)
        mine = self.channel.hello_nonce
        if hello is None or mine is None or (mine, hello.nonce) == self._pair:
            return None
        self._pair = (mine, hello.nonce)
        return self._pair

    @property
    def has_hello(self) -> bool:
        """Whether I have made a hello for this peer (a fresh one is not merely due)."""
        return self._body is not None

    @property
    def pair(self) -> tuple[str, str] | None:
        """The last settled pair (None before the first)."""
        return self._pair
