"""The Python peer's pure parts: links, SDP fingerprint rules, in-envelope messages, chat
bookkeeping, events. (aiortc objects are made here, but no ICE runs: no offer is applied.)"""

from __future__ import annotations

import io
import json

import pytest
from aiortc import RTCPeerConnection

from signaling.crypto import new_room_id, new_room_key, parse_fingerprint, parse_room_key
from signaling.e2e import SecureChannel
from signaling.peer.chat import ChatBook, from_datachannel, to_wire
from signaling.peer.errors import InnerMessageError, LinkError
from signaling.peer.events import EventLog
from signaling.peer.hellos import HelloExchange
from signaling.peer.inner import (
    Ack,
    Bye,
    Candidate,
    Chat,
    Description,
    Mode,
    Rebuild,
    parse_inner,
    peer_name,
)
from signaling.peer.link import parse_link
from signaling.peer.media import SyntheticVideoTrack, ToneAudioTrack, report_due
from signaling.peer.rtc import local_fingerprint, rtc_configuration
from signaling.peer.sdp import (
    FingerprintMismatch,
    check_fingerprints,
    fingerprints_by_section,
    strip_extra_fingerprints,
)

ROOM = new_room_id()
KEY = new_room_key()


def test_a_link_gives_origin_room_and_key() -> None:
    link = parse_link(f"https://Ruang.example.org:8443/r/{ROOM}?lang=en#{KEY}")
    assert link.origin == "https://ruang.example.org:8443"
    assert link.room_id == ROOM
    assert len(link.key) == 32
    assert link.ws_url == "wss://ruang.example.org:8443/ws"
    assert KEY not in repr(link)
    assert parse_link(f"http://[::1]/r/{ROOM}#{KEY}").ws_url == "ws://[::1]/ws"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ruang.example.org/r/x#y",
        f"ftp://host/r/{ROOM}#{KEY}",
        f"https://host/r/{ROOM}",
        f"https://host/r/{ROOM}#",
        f"https://host/r/{ROOM}#{KEY[:-1]}",
        f"https://host/r/{ROOM}x#{KEY}",
        f"https://host/rooms/{ROOM}#{KEY}",
        f"https://host/r/{ROOM}/extra#{KEY}",
        f"https://host:99999/r/{ROOM}#{KEY}",
    ],
)
def test_bad_links_are_usage_errors(text: str) -> None:
    with pytest.raises(LinkError) as info:
        parse_link(text)
    assert info.value.exit_code == 2
    assert KEY not in str(info.value)


async def _aiortc_offer() -> tuple[str, str]:
    pc = RTCPeerConnection(rtc_configuration(()))
    try:
        pc.addTrack(SyntheticVideoTrack())
        pc.addTrack(ToneAudioTrack())
        pc.createDataChannel("chat")
        fingerprint = local_fingerprint(pc)
        offer = await pc.createOffer()
        return offer.sdp, fingerprint
    finally:
        await pc.close()


async def test_aiortc_sdp_keeps_exactly_the_committed_sha256_fingerprint() -> None:
    sdp, fingerprint = await _aiortc_offer()
    parse_fingerprint(fingerprint)
    _, before = fingerprints_by_section(sdp)
    assert len(before) == 3 and all(len(fps) == 3 for fps in before)  # sha-256, 384, 512
    with pytest.raises(FingerprintMismatch):
        check_fingerprints(sdp, fingerprint)
    stripped = strip_extra_fingerprints(sdp)
    check_fingerprints(stripped, fingerprint)
    assert "\r\n" in stripped and "\n\n" not in stripped.replace("\r\n", "\n")
    assert stripped.count("a=fingerprint:") == 3
    other = "sha-256 " + ":".join(["AB"] * 32)
    with pytest.raises(FingerprintMismatch):
        check_fingerprints(stripped, other)


def _sdp(session: list[str], *sections: list[str]) -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", *session]
    for extra in sections:
        lines += ["m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", *extra]
    return "\r\n".join(lines) + "\r\n"


FP = "sha-256 " + ":".join(f"{i:02X}" for i in range(32))
LINE = "a=fingerprint:" + FP


def test_the_fingerprint_rule() -> None:
    check_fingerprints(_sdp([], [LINE], [LINE]), FP)
    check_fingerprints(_sdp([LINE], [], []), FP)  # session level, inherited by each section
    check_fingerprints(_sdp([], [LINE.lower().replace("sha-256", "SHA-256")]), FP)
    refused = [
        _sdp([], [LINE], []),  # a section without one
        _sdp([], [LINE, LINE]),  # two in one section
        _sdp([LINE], [LINE]),  # session and media level
        _sdp([], [LINE, "a=fingerprint:sha-512 AA:BB"]),
        _sdp([], ["a=fingerprint:sha-1 " + FP[8:]]),
        _sdp([], ["a=fingerprint:" + FP[:-2] + "FF"]),
        _sdp([], ["a=fingerprint:garbage"]),
        _sdp([LINE]),  # no media at all
    ]
    for sdp in refused:
        with pytest.raises(FingerprintMismatch):
            check_fingerprints(sdp, FP)


def test_no_ice_server_unless_configured() -> None:
    # aiortc falls back to a public STUN server when iceServers is None.
    assert rtc_configuration(()).iceServers == []


def test_inner_messages_parse_strictly() -> None:
    assert parse_inner({"type": "offer", "round": "r1", "sdp": "v=0"}) == Description(
        "offer", "r1", "v=0"
    )
    assert parse_inner(
        {"type": "candidate", "round": "r1", "candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}
    ) == Candidate("r1", "", "0", 0)
    assert parse_inner({"type": "rebuild", "round": "r1"}) == Rebuild("r1")
    assert parse_inner({"type": "chat", "id": "c1", "text": "hai", "later": 1}) == Chat("c1", "hai")
    assert parse_inner({"type": "ack", "id": "c1"}) == Ack("c1")
    assert parse_inner({"type": "mode", "level": "low-video"}) == Mode("low-video")
    assert parse_inner({"type": "bye"}) == Bye("left")
    bad = [
        {"type": "offer", "round": "r 1", "sdp": "v=0"},
        {"type": "answer", "round": "r1", "sdp": 5},
        {"type": "candidate", "round": "r1", "candidate": "", "sdpMid": 1},
        {"type": "candidate", "round": "r1", "candidate": "", "sdpMLineIndex": True},
        {"type": "chat", "id": "", "text": "x"},
        {"type": "chat", "id": "c1", "text": "x" * 4001},
        {"type": "mode", "level": "4k"},
        {"type": "bye", "reason": "whatever"},
        {"type": "profile", "name": "x"},
        {"type": "ack"},
    ]
    for msg in bad:
        with pytest.raises(InnerMessageError):
            parse_inner(msg)
    assert peer_name({"name": "Ani"}) == "Ani"
    assert peer_name({"name": "x" * 65}) is None and peer_name({}) is None


def test_chat_is_resent_until_acknowledged_and_shown_once() -> None:
    sender, receiver = ChatBook(), ChatBook()
    chat = sender.new("halo")
    assert sender.due(0.0, 2.0) == [chat]
    sender.mark_sent(chat.id, 0.0)
    assert sender.due(1.0, 2.0) == []
    assert sender.due(2.5, 2.0) == [chat]
    assert receiver.on_chat(chat) is True
    assert receiver.on_chat(chat) is False  # a second copy (re-send, or the other path)
    assert sender.on_ack(Ack(chat.id)) is True
    assert sender.on_ack(Ack(chat.id)) is False
    assert sender.pending == 0 and sender.due(10.0, 2.0) == []
    assert from_datachannel(json.dumps(to_wire(chat))) == chat
    assert from_datachannel(json.dumps(to_wire(Ack(chat.id)))) == Ack(chat.id)
    for text in ("nope", "[]", '{"type": "offer", "round": "r", "sdp": ""}'):
        with pytest.raises(InnerMessageError):
            from_datachannel(text)


def test_frame_counts_are_reported_at_milestones() -> None:
    assert [n for n in range(1, 451) if report_due(n)] == [1, 30, 100, 200, 300, 400]


def test_events_are_json_lines_with_time() -> None:
    out = io.StringIO()
    log = EventLog(out)
    log.emit("waiting", reason="knocked")
    log.emit("chat", **{"from": "counselor", "text": "é"})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["waiting", "chat"]
    assert lines[1] == {"t": lines[1]["t"], "event": "chat", "from": "counselor", "text": "é"}
    assert 0 <= lines[0]["t"] <= lines[1]["t"]


class _Side:
    def __init__(self, my_id: str, peer_id: str) -> None:
        self.id = my_id
        self.hellos = HelloExchange(SecureChannel(ROOM, parse_room_key(KEY), my_id), [])
        self.hellos.set_peer(peer_id)
        self.inbox: list[tuple[str, str]] = []
        self.pairs: list[tuple[str, str]] = []

    def send(self, other: _Side, body: dict[str, object] | None) -> None:
        if body is not None:
            other.inbox.append(self.hellos.channel.seal(other.id, body))

    def receive_all(self, other: _Side) -> None:
        while self.inbox:
            epoch, box = self.inbox.pop(0)
            msg = self.hellos.channel.open(other.id, epoch, box)
            assert msg["type"] == "hello"
            self.send(other, self.hellos.on_hello())
            pair = self.hellos.new_pair()
            if pair is not None:
                self.pairs.append(pair)


def _run(a: _Side, b: _Side, rounds: int = 10) -> None:
    for _ in range(rounds):
        b.receive_all(a)
        a.receive_all(b)


def _agree(a: _Side, b: _Side) -> None:
    assert a.pairs and b.pairs
    assert a.pairs[-1] == tuple(reversed(b.pairs[-1]))
    assert not a.inbox and not b.inbox  # no ping-pong


def test_hellos_settle_on_one_pair_whoever_starts() -> None:
    a, b = _Side("counselor", "client1AAAAA"), _Side("client1AAAAA", "counselor")
    a.send(b, a.hellos.fresh())
    _run(a, b)
    _agree(a, b)
    assert len(a.pairs) == len(b.pairs) == 1

    # Both sides greet at once (admission seen on both sides).
    a.send(b, a.hellos.fresh())
    b.send(a, b.hellos.fresh())
    _run(a, b)
    _agree(a, b)

    # A burst of fresh hellos from one side settles on its last nonce.
    a.send(b, a.hellos.fresh())
    a.send(b, a.hellos.fresh())
    _run(a, b)
    _agree(a, b)
    assert a.pairs[-1][0] == a.hellos.channel.hello_nonce

    # A resume: only the side that stayed says a fresh hello; the other answers, keeping its
    # nonce, and both settle on the new pair.
    before = b.hellos.channel.hello_nonce
    a.send(b, a.hellos.fresh())
    _run(a, b)
    _agree(a, b)
    assert b.hellos.channel.hello_nonce == before


def test_a_due_hello_is_made_fresh_when_their_hello_arrives_first() -> None:
    a, b = _Side("counselor", "client1AAAAA"), _Side("client1AAAAA", "counselor")
    a.send(b, a.hellos.fresh())
    _run(a, b)
    b.hellos.due = True  # e.g. admission seen, the fresh hello not sent yet
    a.send(b, a.hellos.fresh())
    _run(a, b)
    _agree(a, b)
    assert not b.hellos.due
