"""The call between this peer and the other, inside the envelopes: hellos, commit rounds, SDP,
chat and modes (docs/protocol.md, section 12, is the reference). The signaling connection
(``session``) feeds it envelopes and peer-connection events and tells it when the other side
becomes present or the call begins (admission); it answers with envelopes and JSON-line events.

In short: a newly settled hello pair (``hellos``) in the call makes the counselor start a commit
round unless its peer connection is connected to the same peer instance (at admission, holding
the client's hello, it starts the round right behind its own fresh hello); a ``commit`` with an
unknown round id is joined (a pending counselor round wins over a client's); reveals follow
commits; the counselor offers once the client's reveal is verified; every SDP must carry exactly
the revealed fingerprint, or the call ends (``SecurityError``). With ``text-only`` on either
side there is no peer connection: chat goes through the relay.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from signaling.crypto import CryptoError
from signaling.e2e import CommitmentError, Role, SecureChannel
from signaling.peer.chat import ChatBook, from_datachannel, to_wire
from signaling.peer.config import LEVELS, IceServer, Level, PeerConfig
from signaling.peer.errors import InnerMessageError, NoConnection, SecurityError
from signaling.peer.events import EventLog
from signaling.peer.hellos import HelloExchange
from signaling.peer.inner import (
    CAP_TEXT_ONLY,
    Ack,
    Bye,
    Candidate,
    Chat,
    Description,
    Mode,
    Rebuild,
    new_id,
    parse_inner,
    peer_name,
)
from signaling.peer.media import FrameCounter
from signaling.peer.quality import QualityMonitor
from signaling.peer.rtc import CallRound, RtcError, RtcEvent
from signaling.peer.turn import IceCredentials

log = logging.getLogger("ruang.peer.call")

SAY_CHANNEL_WAIT = 2.0
SendRelay = Callable[[str, str, str], Awaitable[bool]]  # (to, epoch, box) -> sent


class Call:
    """Everything end to end with one other participant (the counselor, or the one client)."""

    def __init__(
        self,
        config: PeerConfig,
        role: Role,
        events: EventLog,
        send: SendRelay,
        notify: Callable[[RtcEvent], None],
        ice: IceCredentials | None = None,
    ) -> None:
        self.config = config
        self.ice = ice  # the server's TURN credentials (None: only config.ice_servers)
        self._notify = notify
        self.role: Role = role
        self.events = events
        self._send_relay = send
        self._hellos: HelloExchange | None = None
        self.peer_id: str | None = None
        self.peer_name: str | None = None  # shown nowhere but kept for the UI's sake
        self.in_call = False
        self.round: CallRound | None = None
        self.connected = False  # right now
        self.ever_connected = False
        self.connected_at: float | None = None
        self._deadline: float | None = None
        self._last_stall_action = 0.0
        self.chat = ChatBook()
        self.rejected: collections.Counter[str] = collections.Counter()
        self._gaps = 0
        self._peer_level: Level | None = None
        self._level: Level | None = None
        self._own_reported: Level | None = None
        # My own level: the quality ladder over my RTCP figures (signaling/peer/quality.py).
        self.quality = QualityMonitor("text" if config.text_only else "video")
        self.bye: str | None = None  # the other side's goodbye reason, once received
        self._say_at: float | None = None  # when --say goes out at the latest
        self._counters = {
            kind: FrameCounter(kind, self._report_frames) for kind in ("video", "audio")
        }
        self._consumers: set[asyncio.Task[None]] = set()
        self._spare: CallRound | None = None  # the next round's peer connection, made ahead
        self._settled_in_call = False  # a hello pair has settled since the call began
        self._round_with_hello = False  # the counselor's next fresh hello starts the round

    # --- identity and presence -----------------------------------------------------------------

    @property
    def own_level(self) -> Level:
        return self.quality.level

    async def new_identity(self, room_id: str, my_id: str) -> None:
        """A fresh participant id or epoch (a first join, or after a refused resume): the
        other side will see a new epoch and drop its peer connection, so drop ours."""
        await self._drop_round()
        self._settled_in_call = False
        channel = SecureChannel(room_id, self.config.link.key, my_id)
        # aiortc has neither rollback nor ICE restart: no "rollback", no "ice-restart".
        caps = [CAP_TEXT_ONLY] if self.config.text_only else []
        name = self.config.name if self.role == "client" else ""
        self._hellos = HelloExchange(channel, caps, name)
        if self.peer_id is not None:
            self._hellos.set_peer(self.peer_id)

    def set_peer(self, peer_id: str) -> None:
        self.peer_id = peer_id
        if self._hellos is not None:
            self._hellos.set_peer(peer_id)

    def peer_present(self) -> None:
        """The other side (re)appeared: a fresh hello is due."""
        if self._hellos is not None:
            self._hellos.due = True

    def begin(self) -> None:
        """The call begins (the client was admitted): the connection clock starts, and the
        counselor makes a fresh hello. The client keeps the hello it knocked with (a fresh one
        only if it has none): the pair's new half is then the counselor's own, so the first
        pair the counselor settles is the one the client settles too, and its round can start
        at once (docs/protocol.md, section 12, "Hellos")."""
        self.in_call = True
        self._settled_in_call = False
        self._round_with_hello = self.role == "counselor"
        now = time.monotonic()
        self._deadline = now + self.config.connect_timeout
        self._last_stall_action = now
        if self.role == "counselor" or self._hellos is None or not self._hellos.has_hello:
            self.peer_present()

    async def flush_hello(self) -> None:
        """Send the fresh hello that is due, once per burst of triggers (presence and
        admission usually arrive together: one new nonce, not two)."""
        if self._hellos is not None and self._hellos.due:
            await self._fresh_hello()

    # --- hellos ---------------------------------------------------------------------------------

    async def _fresh_hello(self) -> None:
        if self._hellos is None or self.peer_id is None:
            return
        log.debug("hello sent (fresh)")
        await self._seal(self._hellos.fresh())
        await self._after_fresh_hello()

    async def _after_fresh_hello(self) -> None:
        """The counselor's first fresh hello of a call (admission): when it holds the client's
        hello, the pair is already known (an admitted client keeps the hello it knocked with),
        so the round starts now, right behind the hello, instead of one relay round trip later
        when the client's answer settles the same pair. The client gets the hello first (the
        relay keeps the order), so it holds the pair the commit is bound to."""
        if not self._round_with_hello:
            return
        self._round_with_hello = False
        if self._hellos is None or self.peer_id is None or not self._round_needed():
            return
        if self._hellos.channel.peer_hello(self.peer_id) is None:
            return  # their hello has not come yet: the round starts when the pair settles
        await self._start_round()

    async def _seal(self, body: dict[str, Any]) -> bool:
        if self._hellos is None or self.peer_id is None:
            return False
        try:
            epoch, box = self._hellos.channel.seal(self.peer_id, body)
        except CryptoError as exc:
            log.debug("not sent (%s): %s", body.get("type"), type(exc).__name__)
            return False
        return await self._send_relay(self.peer_id, epoch, box)

    async def _on_hello(self, msg: dict[str, Any]) -> None:
        assert self._hellos is not None and self.peer_id is not None
        hello = self._hellos.channel.peer_hello(self.peer_id)
        assert hello is not None
        if self.role == "counselor":
            self.peer_name = peer_name(msg)
        if self.round is not None and self.round.peer_epoch != hello.epoch:
            log.info("the other side is a new instance: closing the old peer connection")
            await self._drop_round()
        mine = self._hellos.channel.hello_nonce
        answer = self._hellos.on_hello()
        if answer is not None:
            await self._seal(answer)
            if self._hellos.channel.hello_nonce != mine:  # the answer was a fresh hello
                await self._after_fresh_hello()
        pair = self._hellos.new_pair()
        if pair is not None and self.in_call:
            await self._on_new_pair(pair)

    def _peer_caps(self) -> tuple[str, ...]:
        if self._hellos is None or self.peer_id is None:
            return ()
        hello = self._hellos.channel.peer_hello(self.peer_id)
        return hello.caps if hello is not None else ()

    def _text_only(self) -> bool:
        return self.config.text_only or CAP_TEXT_ONLY in self._peer_caps()

    async def _on_new_pair(self, pair: tuple[str, str]) -> None:
        log.info("hello exchange settled")
        self._settled_in_call = True
        self._last_stall_action = time.monotonic()
        if self._text_only():
            await self._drop_round()
            if not self.connected:
                await self._on_connected("server-relay")
        elif self.role == "counselor" and self._round_needed():
            r = self.round
            if r is None or r.closed or r.pair != pair:  # not the round started with my hello
                await self._start_round()
        await self._flush_chat(force=True)

    def _round_needed(self) -> bool:
        r = self.round
        return self.in_call and not self._text_only() and (r is None or r.closed or not r.connected)

    # --- rounds ---------------------------------------------------------------------------------

    async def _new_round(self, round_id: str, started_by_me: bool) -> CallRound:
        assert self._hellos is not None and self.peer_id is not None
        hello = self._hellos.channel.peer_hello(self.peer_id)
        assert hello is not None
        servers = self.config.ice_servers if self.ice is None else await self.ice.servers()
        if self.config.relay_only and not any(
            u.startswith(("turn:", "turns:")) for s in servers for u in s.urls
        ):
            raise NoConnection("--relay-only, but the server offered no TURN relay")
        r, self._spare = self._spare, None
        if r is not None and r.ice_servers != servers:  # credentials came or changed since
            await r.close()
            r = None
        if r is None:
            r = self._make_round(servers)
        r.adopt(round_id, hello.epoch, started_by_me=started_by_me)
        if self._level is not None and self._level != "video":
            r.set_level(self._level)
        return r

    def _make_round(self, servers: tuple[IceServer, ...]) -> CallRound:
        return CallRound(
            "spare",
            self.role,
            peer_epoch="",
            started_by_me=False,
            ice_servers=servers,
            notify=self._notify,
            relay_only=self.config.relay_only,
        )

    def prepare(self) -> None:
        """When nothing else is waiting: make the next round's peer connection ahead (its
        certificate, tracks and data channel), off the call-setup path. Each peer connection
        still serves one round only, so each round still commits to a fresh certificate. The
        counselor makes it while it waits for a client (and again once its hello of a call is
        out, if that one was used); the client once admitted (the counselor's hello and commit
        are on their way). Never while connected, or before the call's credentials are in
        (pushed at joining and admission, or fetched): a peer connection made with others would
        be thrown away."""
        r = self.round
        hellos = self._hellos
        if (
            self._spare is not None
            or self.connected
            or self.bye is not None
            or self._text_only()
            or (r is not None and not r.closed)
            or hellos is None
        ):
            return
        if self.in_call:
            if not hellos.has_hello or hellos.due:
                return
        elif self.role != "counselor":
            return  # a waiting client: no call, and no credentials before the admission
        if self.ice is not None and not (self.ice.ready and self.ice.fresh):
            return
        servers = self.config.ice_servers if self.ice is None else self.ice.current()
        self._spare = self._make_round(servers)
        log.debug("peer connection made ahead")

    async def _drop_round(self) -> None:
        r, self.round = self.round, None
        if r is None:
            return
        await r.close()
        if self.connected:
            self.connected = False
            self._deadline = time.monotonic() + self.config.connect_timeout

    async def _start_round(self) -> None:
        await self._drop_round()
        r = self.round = await self._new_round(new_id(), started_by_me=True)
        log.info("commit round started")
        assert self._hellos is not None and self.peer_id is not None
        theirs = self._hellos.channel.peer_hello(self.peer_id)
        mine = self._hellos.channel.hello_nonce
        r.pair = None if theirs is None or mine is None else (mine, theirs.nonce)
        await self._seal({**r.commit.commit_msg(), "round": r.id})
        # While the commit and reveals travel: the offer (and its candidates) is made now and
        # sent only once both reveals are verified (_on_reveal).
        with contextlib.suppress(RtcError):  # make_offer tries again, and rebuilds if it must
            await r.prepare_offer()

    async def _on_commit(self, msg: dict[str, Any]) -> None:
        rid = msg.get("round")
        if not isinstance(rid, str) or not 0 < len(rid) <= 64:
            raise InnerMessageError("commit without a round")
        if not self.in_call or self._text_only():
            log.info("ignored a commit outside a media call")
            return
        r = self.round
        if r is None or r.closed or r.id != rid:
            if (
                self.role == "counselor"
                and r is not None
                and not r.closed
                and r.started_by_me
                and not r.connected
            ):
                log.info("ignored the client's round: mine is pending")
                return
            await self._drop_round()
            r = self.round = await self._new_round(rid, started_by_me=False)
            log.info("joined a commit round")
            r.commit.on_commit(msg)
            await self._seal({**r.commit.commit_msg(), "round": rid})
        else:
            r.commit.on_commit(msg)
        r.progress_at = time.monotonic()
        if not r.revealed:
            r.revealed = True
            await self._seal({**r.commit.reveal_msg(), "round": rid})
            if self.role == "client":  # while the reveal and the offer travel
                await r.gather_ahead()

    async def _on_reveal(self, msg: dict[str, Any]) -> None:
        r = self.round
        if r is None or r.closed or msg.get("round") != r.id:
            log.info("ignored a reveal of another round")
            return
        try:
            r.commit.on_reveal(msg)
        except CommitmentError as exc:
            if r.revealed:  # we hold their commit: a reveal that fails it is an attack
                raise SecurityError(
                    "the other side's reveal does not match its commitment (possible "
                    "interception); the call was not connected"
                ) from exc
            raise
        r.progress_at = time.monotonic()
        code = r.commit.safety_code(self.config.link.key)
        self.events.emit("safety_code", code=code.digits, words=list(code.words))
        if self.role == "counselor":
            try:
                sdp = await r.make_offer()
            except RtcError as exc:
                log.warning("%s: rebuilding the peer connection", exc)
                await self._path_failed(r)
                return
            await self._seal({"type": "offer", "round": r.id, "sdp": sdp})
            log.debug("offer sent")

    async def _on_description(self, d: Description) -> None:
        r = self.round
        if r is None or r.closed or r.id != d.round or not r.commit.verified:
            log.info("ignored an %s of another round", d.kind)
            return
        r.progress_at = time.monotonic()
        try:
            if d.kind == "offer":
                if r.pc.signalingState != "stable" or (r.offered and not r.remote_set):
                    log.info("ignored an offer in a state that cannot take it")
                    return
                sdp = await r.accept_offer(d.sdp)  # FingerprintMismatch is a SecurityError
                await self._seal({"type": "answer", "round": r.id, "sdp": sdp})
                log.debug("answer sent")
            elif r.offered and not r.remote_set:
                await r.accept_answer(d.sdp)
                log.debug("answer applied")
        except RtcError as exc:  # not a security failure: a description aiortc cannot use
            log.warning("%s: rebuilding the peer connection", exc)
            await self._path_failed(r)

    async def _on_rebuild(self, rb: Rebuild) -> None:
        r = self.round
        if r is not None and r.connected and rb.round not in (r.id, "none"):
            return  # about an older connection
        log.info("the other side asked for a new peer connection")
        await self._drop_round()
        if self.role == "counselor" and self.in_call and not self._text_only():
            await self._start_round()

    # --- envelopes ------------------------------------------------------------------------------

    async def on_envelope(self, sender: str, epoch: str, box: str) -> None:
        if self._hellos is None:
            return
        channel = self._hellos.channel
        try:
            msg = channel.open(sender, epoch, box)
        except CryptoError as exc:
            kind = type(exc).__name__
            self.rejected[kind] += 1
            log.warning(
                "rejected an envelope (%s); %d rejected so far", kind, sum(self.rejected.values())
            )
            return
        if channel.gap_count != self._gaps:
            log.info("envelopes were skipped (%d so far)", channel.gap_count)
            self._gaps = channel.gap_count
        if sender != self.peer_id:
            log.debug("ignored an envelope from another participant")
            return
        kind = msg["type"]
        try:
            if kind == "hello":
                await self._on_hello(msg)
            elif kind == "commit":
                await self._on_commit(msg)
            elif kind == "reveal":
                await self._on_reveal(msg)
            else:
                await self._on_inner(parse_inner(msg))
        except (InnerMessageError, CommitmentError) as exc:
            self.rejected[type(exc).__name__] += 1
            log.warning("rejected a %s message (%s)", kind, type(exc).__name__)

    async def _on_inner(self, msg: Any) -> None:
        if isinstance(msg, Description):
            await self._on_description(msg)
        elif isinstance(msg, Candidate):
            r = self.round
            if r is not None and not r.closed and r.id == msg.round:
                await r.add_candidate(msg)
        elif isinstance(msg, Rebuild):
            await self._on_rebuild(msg)
        elif isinstance(msg, Chat | Ack):
            await self._on_chat_message(msg)
        elif isinstance(msg, Mode):
            self._peer_level = msg.level
            self._apply_level()
        elif isinstance(msg, Bye):
            log.info("the other side said goodbye (%s)", msg.reason)
            self.bye = msg.reason
            await self._drop_round()

    # --- peer connection events -----------------------------------------------------------------

    async def on_rtc(self, ev: RtcEvent) -> None:
        r = self.round
        if r is None or r.closed or ev.round_id != r.id:
            return
        if ev.kind == "state":
            log.info("peer connection %s", ev.state)
            if ev.state == "connected" and not r.connected:
                r.connected = True
                await self._on_connected(r.path())
            elif ev.state == "failed":
                await self._path_failed(r)
            elif ev.state == "closed":  # the other side closed it (DTLS close_notify)
                await self._drop_round()
        elif ev.kind == "track" and ev.track is not None:
            counter = self._counters.get(ev.track.kind)
            if counter is not None:
                task = asyncio.create_task(counter.consume(ev.track))
                self._consumers.add(task)
                task.add_done_callback(self._consumers.discard)
        elif ev.kind == "channel-open":
            await self._maybe_say()
            await self._flush_chat(force=True)
        elif ev.kind == "channel-message":
            try:
                await self._on_chat_message(from_datachannel(ev.text))
            except InnerMessageError:
                log.warning("rejected a data channel message")

    async def _path_failed(self, r: CallRound) -> None:
        log.warning("the peer connection failed: rebuilding it")
        await self._seal({"type": "rebuild", "round": r.id})
        await self._drop_round()
        if self.role == "counselor":
            await self._start_round()

    async def _on_connected(self, path: str) -> None:
        self.connected = True
        self._deadline = None
        self.events.emit("connected", path=path)
        await self._announce()
        self._apply_level()
        if not self.ever_connected:
            self.ever_connected = True
            self.connected_at = time.monotonic()
            if self.config.say:
                # Prefer the data channel: it opens just after "connected"; the relay is the
                # fallback (and the only path in text-only calls).
                wait = 0.0 if self._text_only() else SAY_CHANNEL_WAIT
                self._say_at = time.monotonic() + wait
                await self._maybe_say()

    async def _maybe_say(self) -> None:
        if self._say_at is None:
            return
        r = self.round
        if time.monotonic() >= self._say_at or (r is not None and r.channel_open):
            self._say_at = None
            self.chat.new(self.config.say)
            await self._flush_chat(force=True)

    async def _announce(self) -> None:
        await self._seal({"type": "mode", "level": self.own_level, "reason": self.quality.reason})

    def _apply_level(self) -> None:
        own = self.own_level
        theirs = self._peer_level or own
        level = min(own, theirs, key=LEVELS.index)
        if self._text_only():
            level = "text"
        changed = level != self._level
        if (changed or own != self._own_reported) and (self.connected or self._text_only()):
            self._level = level
            self._own_reported = own
            self.events.emit("mode", level=level, own=own)
            if changed and self.round is not None and not self.round.closed:
                self.round.set_level(level)

    def _report_frames(self, kind: str, frames: int) -> None:
        self.events.emit("media", kind=kind, frames=frames)

    # --- chat -----------------------------------------------------------------------------------

    async def _send_chat_message(self, msg: Chat | Ack) -> bool:
        wire = to_wire(msg)
        r = self.round
        if r is not None and not r.closed and r.send_on_channel(json.dumps(wire)):
            return True
        return await self._seal(wire)

    async def _on_chat_message(self, msg: Chat | Ack) -> None:
        if isinstance(msg, Ack):
            self.chat.on_ack(msg)
            return
        if self.chat.on_chat(msg):
            self.events.emit("chat", **{"from": self._peer_role(), "text": msg.text})
        await self._send_chat_message(Ack(msg.id))

    def _peer_role(self) -> str:
        return "client" if self.role == "counselor" else "counselor"

    async def _flush_chat(self, *, force: bool) -> None:
        now = time.monotonic()
        interval = 0.0 if force else self.config.chat_resend
        for chat in self.chat.due(now, interval):
            if await self._send_chat_message(chat):
                self.chat.mark_sent(chat.id, now)

    # --- time -----------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Timers: the connection deadline, stalled rounds, chat re-sends."""
        now = time.monotonic()
        if self.in_call and self._deadline is not None and now >= self._deadline:
            raise NoConnection(f"no connection within {self.config.connect_timeout:g} s")
        await self._maybe_say()
        await self._flush_chat(force=False)
        r = self.round
        if self.connected and r is not None and not r.closed and not self._text_only():
            if await self.quality.tick(r.pc, self._level or "video"):  # my level changed
                await self._announce()
                self._apply_level()
        if not self.in_call or self.connected or self.bye is not None or self._text_only():
            return
        if now - self._last_stall_action < self.config.stall_timeout:
            return
        r = self.round
        since = r.progress_at if r is not None else self._last_stall_action
        if r is not None and now - since < self.config.stall_timeout:
            return
        if self._hellos is None or self._hellos.pair is None:
            return
        self._last_stall_action = now
        if self.role == "counselor":
            log.info("the commit round stalled: new hello")
            if r is not None:
                r.progress_at = now
            await self._fresh_hello()  # its answer settles a new pair: a new round
        else:
            log.info("no connection yet: asking for a new peer connection")
            await self._seal({"type": "rebuild", "round": r.id if r is not None else "none"})

    # --- the end --------------------------------------------------------------------------------

    async def goodbye(self, reason: str) -> None:
        """Tell the other side we are going (best effort)."""
        if self.peer_id is not None and self._hellos is not None and self._hellos.pair:
            await self._seal({"type": "bye", "reason": reason})

    async def close(self) -> None:
        await self._drop_round()
        spare, self._spare = self._spare, None
        if spare is not None:
            await spare.close()
        for task in list(self._consumers):
            task.cancel()
        for task in list(self._consumers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
