"""One peer connection per commit round (aiortc).

aiortc makes one DTLS certificate per ``RTCPeerConnection``, so a new round always means a new
peer connection: its fingerprint is committed, revealed, and then required in every SDP. aiortc
has neither rollback nor ICE restart; when a path fails the connection is closed and a new round
begins (``rebuild``). aiortc does not trickle: its candidates are inside its SDP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from signaling.crypto import parse_fingerprint
from signaling.e2e import CommitRound, Role
from signaling.peer.config import IceServer
from signaling.peer.errors import PeerError
from signaling.peer.inner import Candidate
from signaling.peer.media import SyntheticVideoTrack, ToneAudioTrack
from signaling.peer.sdp import check_fingerprints, strip_extra_fingerprints

log = logging.getLogger("ruang.peer.rtc")
CHAT_LABEL = "chat"


class RtcError(PeerError):
    """The local WebRTC stack did something this peer cannot use."""


@dataclass(frozen=True, slots=True)
class RtcEvent:
    """Something a round's peer connection reported (handled in the session's one queue)."""

    round_id: str
    kind: str  # "state", "track", "channel-open", "channel-message", "channel-close"
    state: str = ""
    text: str = ""
    track: MediaStreamTrack | None = None


def rtc_configuration(
    ice_servers: tuple[IceServer, ...], relay_only: bool = False
) -> RTCConfiguration:
    """Never None for iceServers: aiortc would then use a public STUN server. ``relay_only`` is
    ``iceTransportPolicy: "relay"``: only TURN relay candidates are gathered (aiortc >= 1.10;
    aiortc uses the first usable turn:/turns: URL)."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in ice_servers
        ],
        iceTransportPolicy=(
            RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        ),
    )


def local_fingerprint(pc: RTCPeerConnection) -> str:
    """The canonical sha-256 fingerprint of the connection's certificate (before any offer)."""
    transports = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    if not transports:
        raise RtcError("no transport yet: add a track or a data channel first")
    for fp in transports[0].getLocalParameters().fingerprints:
        if fp.algorithm.lower() == "sha-256":
            canonical = f"sha-256 {fp.value.upper()}"
            parse_fingerprint(canonical)
            return canonical
    raise RtcError("aiortc offered no sha-256 fingerprint")


class CallRound:
    """A commit round and the peer connection whose fingerprint it commits to."""

    def __init__(
        self,
        round_id: str,
        role: Role,
        *,
        peer_epoch: str,
        started_by_me: bool,
        ice_servers: tuple[IceServer, ...],
        notify: Callable[[RtcEvent], None],
        relay_only: bool = False,
    ) -> None:
        self.id = round_id
        self.role: Role = role
        self.peer_epoch = peer_epoch
        self.started_by_me = started_by_me
        self.started_at = time.monotonic()
        self.progress_at = self.started_at
        self.ice_servers = ice_servers
        self.relay_only = relay_only
        self.pair: tuple[str, str] | None = None  # (my hello nonce, theirs) it was started on
        self._notify = notify
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers, relay_only))
        self.video = SyntheticVideoTrack()
        self.audio = ToneAudioTrack()
        self.video_sender = self.pc.addTrack(self.video)
        self.audio_sender = self.pc.addTrack(self.audio)
        self.channel: RTCDataChannel | None = None
        if role == "counselor":  # the offerer makes the data channel
            self._attach_channel(self.pc.createDataChannel(CHAT_LABEL))
        self.fingerprint = local_fingerprint(self.pc)
        self.commit = CommitRound(role, self.fingerprint)
        self.revealed = False  # my reveal was sent
        self.offered = False
        self.remote_set = False
        self.connected = False
        self.closed = False
        self._wire()

    def adopt(self, round_id: str, peer_epoch: str, *, started_by_me: bool) -> None:
        """Give a peer connection made ahead (a spare, no signaling yet) its round."""
        self.id = round_id
        self.peer_epoch = peer_epoch
        self.started_by_me = started_by_me
        self.started_at = self.progress_at = time.monotonic()

    def _wire(self) -> None:
        pc = self.pc

        @pc.on("connectionstatechange")
        def _state() -> None:
            log.debug("connection state %s", pc.connectionState)  # "connected": DTLS is up
            self._notify(RtcEvent(self.id, "state", state=pc.connectionState))

        @pc.on("iceconnectionstatechange")
        def _ice_state() -> None:
            log.debug("ICE state %s", pc.iceConnectionState)

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            self._notify(RtcEvent(self.id, "track", track=track))

        @pc.on("datachannel")
        def _channel(channel: RTCDataChannel) -> None:
            if channel.label == CHAT_LABEL and self.channel is None:
                self._attach_channel(channel)

    def _attach_channel(self, channel: RTCDataChannel) -> None:
        self.channel = channel

        @channel.on("open")
        def _open() -> None:
            self._notify(RtcEvent(self.id, "channel-open"))

        @channel.on("message")
        def _message(data: Any) -> None:
            if isinstance(data, str):
                self._notify(RtcEvent(self.id, "channel-message", text=data))

        @channel.on("close")
        def _close() -> None:
            self._notify(RtcEvent(self.id, "channel-close"))

        if channel.readyState == "open":
            self._notify(RtcEvent(self.id, "channel-open"))

    @property
    def channel_open(self) -> bool:
        return self.channel is not None and self.channel.readyState == "open"

    def send_on_channel(self, text: str) -> bool:
        if self.channel is None or self.channel.readyState != "open":
            return False
        try:
            self.channel.send(text)
        except Exception:  # aiortc raises plain exceptions on a closing channel
            log.debug("data channel send failed")
            return False
        return True

    def _peer_fingerprint(self) -> str:
        fp = self.commit.peer_fingerprint
        if fp is None:
            raise RtcError("SDP before the commit round was verified")
        return fp

    async def _local_sdp(self) -> str:
        description = self.pc.localDescription
        if description is None:
            raise RtcError("no local description")
        sdp = strip_extra_fingerprints(description.sdp)
        check_fingerprints(sdp, self.fingerprint)  # what we send obeys our own rule
        return sdp

    async def prepare_offer(self) -> None:
        """Set the local offer (gathering the candidates) without sending anything: the
        counselor does this while the commit round is in flight; ``make_offer`` hands it out
        only once both reveals are verified."""
        if self.offered:
            return
        try:
            await self.pc.setLocalDescription(await self.pc.createOffer())
        except Exception as exc:  # aiortc's errors may quote SDP: keep only the type
            raise RtcError(f"could not make an offer ({type(exc).__name__})") from None
        self.offered = True

    async def gather_ahead(self) -> None:
        """Gather this side's candidates before the offer comes (the answerer's
        ``setLocalDescription`` then finds them ready). Binds local sockets; sends nothing."""
        gatherers = {t.sender.transport.transport.iceGatherer for t in self.pc.getTransceivers()}
        try:
            await asyncio.gather(*(g.gather() for g in gatherers))
        except Exception:  # the answer gathers again if it must
            log.debug("gathering ahead failed")

    async def make_offer(self) -> str:
        """The offer to send (made now unless prepared): call only once verified."""
        self._peer_fingerprint()  # raises unless the commit round is verified
        await self.prepare_offer()
        return await self._local_sdp()

    async def accept_offer(self, sdp: str) -> str:
        """Check the offer's fingerprint, then answer. Raises ``FingerprintMismatch``."""
        check_fingerprints(sdp, self._peer_fingerprint())
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            self.remote_set = True
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            raise RtcError(f"could not answer the offer ({type(exc).__name__})") from None
        return await self._local_sdp()

    async def accept_answer(self, sdp: str) -> None:
        check_fingerprints(sdp, self._peer_fingerprint())
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:
            raise RtcError(f"could not apply the answer ({type(exc).__name__})") from None
        self.remote_set = True

    async def add_candidate(self, msg: Candidate) -> None:
        if not self.remote_set:
            return
        if msg.candidate == "":
            await self.pc.addIceCandidate(None)
            return
        text = msg.candidate.removeprefix("candidate:")
        try:
            candidate = candidate_from_sdp(text)
        except (AssertionError, ValueError, IndexError):
            log.info("ignored a malformed ICE candidate")
            return
        candidate.sdpMid = msg.sdp_mid
        candidate.sdpMLineIndex = msg.sdp_mline_index
        if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
            candidate.sdpMLineIndex = 0
        try:
            await self.pc.addIceCandidate(candidate)
        except Exception:
            log.info("ignored an ICE candidate aiortc refused")

    def path(self) -> str:
        """``relayed`` if the selected candidate pair uses a TURN relay, else ``direct``."""
        transports = [t.receiver.transport for t in self.pc.getTransceivers()]
        if self.pc.sctp is not None:
            transports.append(self.pc.sctp.transport)
        for dtls in transports:
            connection = getattr(dtls.transport, "_connection", None)
            nominated = getattr(connection, "_nominated", None) or {}
            for pair in nominated.values():
                if "relay" in (pair.local_candidate.type, pair.remote_candidate.type):
                    return "relayed"
        return "direct"

    def set_level(self, level: str) -> None:
        """Apply a call mode: low-video shrinks the frames; audio and text stop tracks."""
        self.video.low = level == "low-video"
        video_on = level in ("video", "low-video")
        audio_on = level != "text"
        self.video_sender.replaceTrack(self.video if video_on else None)
        self.audio_sender.replaceTrack(self.audio if audio_on else None)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.pc.close()
        self.video.stop()
        self.audio.stop()
