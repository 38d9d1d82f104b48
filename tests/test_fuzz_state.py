"""Fuzzing the room state machine: the hub under random and malformed operations, and random
frame sequences over a real WebSocket to a real server.

``HubFuzz`` extends the room-isolation machine (tests/test_room_isolation.py: nothing crosses
rooms, envelopes reach exactly their addressee, no admission without the counselor) with
operations that must be refused (a client acting as counselor, anything on a departed
connection, relays to oneself or across rooms, forged or foreign resume tokens, closed rooms) and
checks after every step that capacity and waiting limits hold, every participant is in a
documented state, the dashboard's waiting counts are right, and every refusal carries a code
docs/protocol.md lists. ``RUANG_FUZZ_EXAMPLES`` raises the number of examples.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiohttp import WSMsgType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from fuzz.common import check_code, close_codes, resume_errors
from server.ws import FATAL_CLOSE
from signaling.errors import (
    CloseCode,
    Departed,
    Fatal,
    Forbidden,
    Refused,
    RoomFull,
    SignalingError,
    UnknownPeer,
)
from signaling.limits import RoomLimits
from signaling.messages import (
    COUNSELOR_ID,
    Admit,
    Decline,
    End,
    Joined,
    Leave,
    PeerState,
    Ping,
    ProtocolError,
    Relay,
    Remove,
    Role,
    parse,
)
from signaling.tokens import ResumeClaims, issue
from tests.signaling_support import KEY, make_hub
from tests.support import ServerProcess
from tests.test_fuzz_protocol import mutated_frames
from tests.test_room_isolation import EPOCH, ROOMS, RoomIsolation, Sent, Sock
from tests.test_ws import EPOCH as WS_EPOCH
from tests.test_ws import Session, connect, counselor, join, new_room

EXAMPLES = int(os.environ.get("RUANG_FUZZ_EXAMPLES", "0"))
T = TypeVar("T")


class HubFuzz(RoomIsolation):
    def __init__(self) -> None:
        super().__init__()
        # Tighter bounds than the isolation machine's, so that random walks reach them.
        self.hub = make_hub(
            self.gens,
            limits=RoomLimits(
                capacity=1, max_waiting=2, waiting_held=2, resume_held=3, resume_seconds=60
            ),
            clock=self.clock,
            wall=self.wall,
        )
        self.reported: dict[str, int] = {}
        self.hub.add_waiting_observer(self._waiting_changed)

    def _waiting_changed(self, room_id: str, count: int) -> None:
        assert room_id in ROOMS and count >= 0
        assert self.reported.get(room_id, 0) != count, "a waiting count reported unchanged"
        self.reported[room_id] = count

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Every hub call of both machines: a refusal must be a documented, named error."""
        try:
            return super().run(coro)
        except SignalingError as exc:
            if isinstance(exc, Refused):
                check_code(exc.code)
            else:
                assert isinstance(exc, Fatal), type(exc)
                assert int(FATAL_CLOSE[type(exc)]) in close_codes()
            raise

    # --- malformed operations -------------------------------------------------------------------

    def _targets(self, s: Sock) -> list[str]:
        return [COUNSELOR_ID, "nobody", s.pid or "x"] + [x.pid for x in self.socks if x.pid]

    @precondition(lambda self: any(s.conn for s in self.socks))
    @rule(
        i=st.integers(0, 10_000),
        j=st.integers(0, 10_000),
        op=st.sampled_from(["admit", "decline", "remove", "end_session", "relay", "leave"]),
    )
    def any_operation_from_anyone(self, i: int, j: int, op: str) -> None:
        """Anyone (a client, a departed connection) tries anything on anyone."""
        socks = [s for s in self.socks if s.conn]
        s = socks[i % len(socks)]
        targets = self._targets(s)
        target = targets[j % len(targets)]
        assert s.conn is not None
        if op == "relay":
            self.boxes += 1
            box = f"b{self.boxes}"
            self.sent[box] = Sent(s.room, s.pid, target)
            call: Coroutine[Any, Any, None] = self.hub.relay(s.conn, Relay(target, EPOCH, box))
        elif op in ("end_session", "leave"):
            call = getattr(self.hub, op)(s.conn)
        else:
            call = getattr(self.hub, op)(s.conn, target)
        try:
            self.run(call)
        except Refused as exc:
            refused: Refused | None = exc
        else:
            refused = None
        if not s.open:
            assert isinstance(refused, Departed), "a departed connection acted"
            return
        if op == "leave":
            assert refused is None and s.sink.code == CloseCode.NORMAL
            s.open = False
            self.run(self.hub.disconnect(s.conn))
            return
        if op not in ("relay", "leave") and s.role is Role.CLIENT:
            assert isinstance(refused, Forbidden), "a client acted as the counselor"
        if op == "relay" and refused is None:
            socks_of_target = [x for x in self.socks if x.pid == target and x.room == s.room]
            receiver = socks_of_target[-1] if socks_of_target else None
            assert target != s.pid, "an envelope to oneself was accepted"
            if s.role is Role.CLIENT and target != COUNSELOR_ID:
                assert s.state is PeerState.ADMITTED, "a waiting client reached another client"
                assert receiver is not None and receiver.state is PeerState.ADMITTED
        if op == "relay" and target != COUNSELOR_ID and target not in self._pids(s.room):
            assert isinstance(refused, UnknownPeer), "an envelope left its room"
        if op == "admit" and refused is None:
            self.admitted.add((s.room, target))

    def _pids(self, room: str) -> set[str]:
        return {s.pid for s in self.socks if s.room == room and s.pid}

    @rule(
        room=st.sampled_from(ROOMS),
        role=st.sampled_from(list(Role)),
        how=st.sampled_from(["garbage", "forged", "other-room", "other-role", "swapped"]),
        text=st.text(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", max_size=80
        ),
    )
    def resume_with_a_bad_token(self, room: str, role: Role, how: str, text: str) -> None:
        """A token that must not resume anything: the join goes on as a fresh one and says why."""
        wall = int(self.wall.now)
        other = ROOMS[(ROOMS.index(room) + 1) % len(ROOMS)]
        victims = [s for s in self.socks if s.room == room and s.pid]
        pid = victims[0].pid if victims else "k3PqX0aZ9cQe"
        if how == "garbage":
            token = text or "x"
        elif how == "forged":  # the right shape under another key
            claims = ResumeClaims(room, pid, role, True, 0, wall + 60)
            token = issue(b"f" * 32, claims)
        elif how == "other-room":
            token = issue(KEY, ResumeClaims(other, pid, role, True, 0, wall + 60))
        elif how == "other-role":
            flip = Role.CLIENT if role is Role.COUNSELOR else Role.COUNSELOR
            token = issue(KEY, ResumeClaims(room, pid, flip, True, 0, wall + 60))
        else:  # a real token with its parts swapped
            body, _, tag = (victims[0].token if victims and victims[0].token else "a.b").partition(
                "."
            )
            token = tag + "." + body
        before = len(self.socks)
        self._join(room, role, token)
        if len(self.socks) == before:
            return  # the waiting room was full
        s = self.socks[-1]
        joined = parse(s.sink.frames[0])
        assert isinstance(joined, Joined)
        assert not joined.resumed, "a bad token resumed a slot"
        assert joined.resume_error in resume_errors()

    @rule(room=st.sampled_from(ROOMS))
    def knock_until_the_waiting_room_is_full(self, room: str) -> None:
        for _ in range(self.hub.limits.max_waiting + 1):
            self._join(room, Role.CLIENT, None)  # the last ones get WaitingRoomFull

    @precondition(lambda self: bool(self._open(Role.COUNSELOR)))
    @rule(i=st.integers(0, 10_000))
    def counselor_admits_everyone_waiting(self, i: int) -> None:
        counselors = self._open(Role.COUNSELOR)
        c = counselors[i % len(counselors)]
        assert c.conn is not None
        for w in [s for s in self._open(Role.CLIENT) if s.room == c.room]:
            if w.state is not PeerState.WAITING:
                continue
            try:
                self.run(self.hub.admit(c.conn, w.pid))
            except RoomFull:
                room = self.hub._rooms[c.room]
                assert len(room.clients(PeerState.ADMITTED)) == self.hub.limits.capacity
            else:
                self.admitted.add((c.room, w.pid))

    @rule(room=st.sampled_from(ROOMS))
    def close_room(self, room: str) -> None:
        """The room is closed (or gets a new link): every socket in it ends with 4003, and the
        storage bumps its generation (server.rooms_store), so no token of it works any more."""
        self.run(self.hub.close_room(room))
        self.gens.values[ROOMS.index(room) + 1] += 1
        for s in self.socks:
            if s.room == room and s.open:
                assert s.sink.code == CloseCode.UNKNOWN_ROOM

    # --- the bounds -----------------------------------------------------------------------------

    @invariant()
    def every_frame_is_allowed(self) -> None:
        super().every_frame_is_allowed()
        limits = self.hub.limits
        total = 0
        for room_id, room in self.hub._rooms.items():
            assert room_id in ROOMS and room.id == room_id
            total += len(room.participants)
            waiting = room.clients(PeerState.WAITING)
            assert len(room.clients(PeerState.ADMITTED)) <= limits.capacity, "over capacity"
            assert len(waiting) <= limits.max_waiting, "the waiting room overflowed"
            assert self.reported.get(room_id, 0) == len(waiting), "wrong waiting count"
            assert room.counselor is room.participants.get(COUNSELOR_ID)
            for pid, p in room.participants.items():
                assert p.id == pid
                assert p.state in (PeerState.WAITING, PeerState.ADMITTED), p.state
                assert (p.role is Role.COUNSELOR) == (pid == COUNSELOR_ID)
                if p.role is Role.COUNSELOR:
                    assert p.state is PeerState.ADMITTED
                if p.sink is not None:
                    owner = next(s for s in self.socks if s.sink is p.sink)
                    assert owner.open and owner.room == room_id and owner.pid == pid
                    assert p.sink.closed is None, "a closed socket still holds a slot"  # type: ignore[attr-defined]
        for room_id in ROOMS:
            if room_id not in self.hub._rooms:
                assert self.reported.get(room_id, 0) == 0
        assert self.hub.participant_count() == total
        assert self.hub.room_count() == len(self.hub._rooms)


HubFuzz.TestCase.settings = settings(
    max_examples=EXAMPLES or 60,
    stateful_step_count=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_hub_under_random_and_malformed_operations = HubFuzz.TestCase


# --- random frames over a real WebSocket --------------------------------------------------------

HELD = 3  # RUANG_WAITING_HELD for this server: the 4th envelope to an absent counselor is refused
ENDINGS = ("leave", "binary", "invalid-utf8", "too-big")


@dataclass
class Expect:
    """The documented answer to one frame from a waiting client in a room without counselor."""

    error: str | None = None  # the code of an ``error`` answer
    ref: str | None = None
    pong: bool = False
    close: int | None = None


def expected(text: str, held: int) -> Expect:
    if len(text.encode("utf-8")) > 65536:
        return Expect(close=CloseCode.FRAME_TOO_BIG)
    try:
        msg = parse(text)
    except ProtocolError as exc:
        return Expect(error=exc.code)
    if isinstance(msg, Ping):
        return Expect(pong=True)
    if isinstance(msg, Leave):
        return Expect(close=CloseCode.NORMAL)
    if type(msg) is Relay:
        if msg.to != COUNSELOR_ID:
            return Expect(error="unknown_peer", ref="relay")  # nobody else may be addressed
        return Expect() if held < HELD else Expect(error="hold_full", ref="relay")
    if isinstance(msg, Admit | Decline | Remove | End):
        return Expect(error="forbidden", ref=msg.type)
    return Expect(error="unexpected", ref=msg.type)  # a second join, a server-to-peer type


def frames() -> st.SearchStrategy[list[tuple[str, str]]]:
    ids = st.sampled_from([COUNSELOR_ID, "nobody", "NEIGHBOUR", "SELF"])
    peer_messages = st.one_of(
        st.just('{"type":"ping"}'),
        ids.map(
            lambda to: json.dumps({"type": "relay", "to": to, "epoch": WS_EPOCH, "box": "QUJD"})
        ),
        st.tuples(st.sampled_from(["admit", "decline", "remove"]), ids).map(
            lambda t: json.dumps({"type": t[0], "id": t[1]})
        ),
        st.just('{"type":"end"}'),
        st.just('{"type":"join","v":1,"room":"r","role":"client"}'),
        st.just('{"type":"pong"}'),
        st.just('{"type":"relay","from":"counselor","epoch":"e","box":"A"}'),
    )
    texts = st.one_of(
        peer_messages,
        mutated_frames(),
        st.text(st.characters(codec="utf-8"), max_size=100),
    ).map(lambda t: ("text", t))
    ending = st.sampled_from(ENDINGS).map(lambda e: (e, ""))
    return st.tuples(st.lists(texts, max_size=12), st.none() | ending).map(
        lambda t: t[0] + ([t[1]] if t[1] else [])
    )


async def _answer(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[dict[str, Any]], int | None]:
    """Everything up to our probe's pong (or the close): (messages, close code)."""
    out: list[dict[str, Any]] = []
    for _ in range(50):
        msg = await ws.receive(timeout=5)
        if msg.type is WSMsgType.TEXT:
            data = json.loads(msg.data)
            if data["type"] == "pong":
                return out, None
            if data["type"] != "token":  # refreshes come every resume_seconds / 3
                out.append(data)
            continue
        assert msg.type is WSMsgType.CLOSE, (msg.type, msg.data)
        return out, int(msg.data)
    raise AssertionError("no pong after 50 messages")


def test_random_frames_over_a_real_websocket(make_server: Callable[..., ServerProcess]) -> None:
    """Each frame gets the documented answer (an ``error`` with the code parse or the room rules
    give, a ``pong``, silence for an envelope held for the absent counselor, or the documented
    close), and the session in the neighbouring room keeps working after every sequence."""
    server = make_server(
        RUANG_WAITING_HELD=str(HELD),
        RUANG_MAX_WAITING="1000",
        RUANG_RESUME_SECONDS="3",  # the slots of sequences that ended with a resumable close
        RUANG_WS_BURST="1000",
        RUANG_WS_RATE="1000",
    )
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    stats = {"examples": 0, "frames": 0}
    seen: set[str | int] = set()  # error codes and close codes the sequences got
    try:

        async def setup() -> tuple[aiohttp.ClientSession, Session, str]:
            await server.start()
            stack.push_async_callback(server.stop)
            room = await stack.enter_async_context(counselor(server))
            anon = await stack.enter_async_context(server.client())
            return anon, await Session().open(room, anon), await new_room(room)

        anon, good, fuzz_room = loop.run_until_complete(setup())

        neighbour = good.kj["id"]

        async def one_sequence(actions: list[tuple[str, str]]) -> None:
            stats["examples"] += 1
            ws = await connect(anon, server)
            try:
                own = (await join(ws, fuzz_room, "client"))["id"]
                held = 0
                closed: int | None = None
                for kind, raw in actions:
                    stats["frames"] += 1
                    text = raw.replace('"NEIGHBOUR"', json.dumps(neighbour))
                    text = text.replace('"SELF"', json.dumps(own))
                    if kind == "text":
                        want = expected(text, held)
                        await ws.send_str(text)
                    elif kind == "leave":
                        want = Expect(close=CloseCode.NORMAL)
                        await ws.send_str('{"type":"leave"}')
                    elif kind == "binary":
                        want = Expect(close=CloseCode.PROTOCOL_ERROR)
                        await ws.send_bytes(b'{"type":"ping"}')
                    elif kind == "invalid-utf8":
                        want = Expect(close=CloseCode.PROTOCOL_ERROR)
                        await ws.send_frame(b'{"type":"ping","x":"\xff"}', WSMsgType.TEXT)
                    else:
                        want = Expect(close=CloseCode.FRAME_TOO_BIG)
                        await ws.send_str('{"type":"ping","x":"' + "A" * 70_000 + '"}')
                    if want.close is None:
                        await ws.send_str('{"type":"ping"}')  # the probe: its pong ends the answer
                    got, code = await _answer(ws)
                    if want.close is not None:
                        assert code == want.close and not got, (text[:80], got, code)
                        assert code in close_codes()
                        closed = code
                        break
                    assert code is None, (text[:80], code)
                    if want.pong:  # the frame was a ping: its pong came first, then the probe's
                        assert not got, got
                        got, code = await _answer(ws)
                        assert not got and code is None
                    elif want.error is None:
                        assert not got, (text[:80], got)
                        held += 1
                    else:
                        assert len(got) == 1 and got[0]["type"] == "error", (text[:80], got)
                        assert got[0]["code"] == want.error, (text[:80], got, want)
                        check_code(got[0]["code"])
                        seen.add(want.error)
                        assert got[0].get("ref") == want.ref, (text[:80], got, want)
                        assert set(got[0]) <= {"type", "code", "message", "ref"}
                if closed is None:
                    await ws.send_str('{"type":"leave"}')  # free the waiting slot at once
                    assert (await _answer(ws))[1] == CloseCode.NORMAL
                seen.add(closed or CloseCode.NORMAL)
            finally:
                await ws.close()
            await good.exchange(1)  # the neighbouring room's session never noticed any of it

        @settings(
            max_examples=EXAMPLES or 30,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(frames())
        def sequence(actions: list[tuple[str, str]]) -> None:
            loop.run_until_complete(asyncio.wait_for(one_sequence(actions), 60))

        sequence()
        assert stats["examples"] >= min(EXAMPLES or 30, 10), stats
        assert len(seen) >= 6, seen  # the sequences reached many different answers
    finally:
        try:
            loop.run_until_complete(stack.aclose())
        finally:
            loop.close()
